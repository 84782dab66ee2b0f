package metrics

import (
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

// apiRequests counts the manager's requests to the API server by the verb and resource the
// API server itself would record them under (apiserver_request_total), so that an uncached
// read (get, list) is told apart from the watch that keeps a cache current: client-go's
// rest_client_requests_total has only the HTTP method, and a watch is a GET.
var apiRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "canopy_api_requests_total",
	Help: "Requests of the manager to the API server, by verb (get, list, watch, create, update, patch, apply, delete, deletecollection) and resource.",
}, []string{"verb", "resource", "subresource"})

// InstrumentRequests makes every client built from cfg count its requests in
// canopy_api_requests_total.
func InstrumentRequests(cfg *rest.Config) {
	MustRegister(apiRequests)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return countingTransport{rt} })
}

type countingTransport struct{ next http.RoundTripper }

func (t countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if verb, resource, sub, ok := classify(req); ok {
		apiRequests.WithLabelValues(verb, resource, sub).Inc()
	}
	return t.next.RoundTrip(req)
}

// classify names a request as the API server's request info does: /api/v1/… and
// /apis/<group>/<version>/…, optionally namespaces/<ns>/, then <resource>[/<name>[/<sub>]].
// Requests for no resource (discovery, /version, /healthz) are not counted.
func classify(req *http.Request) (verb, resource, subresource string, ok bool) {
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return "", "", "", false
	}
	watch := req.URL.Query().Get("watch") == "true" || req.URL.Query().Get("watch") == "1"
	if len(parts) > 0 && parts[0] == "watch" { // the deprecated /watch/ paths
		watch, parts = true, parts[1:]
	}
	// namespaces/<ns>/<resource>…, but namespaces/<ns> and namespaces/<ns>/status|finalize
	// are the Namespace itself.
	if len(parts) > 2 && parts[0] == "namespaces" && parts[2] != "status" && parts[2] != "finalize" {
		parts = parts[2:]
	}
	if len(parts) == 0 || parts[0] == "" {
		return "", "", "", false
	}
	resource = parts[0]
	named := len(parts) > 1
	if len(parts) > 2 {
		subresource = parts[2]
	}
	switch req.Method {
	case http.MethodGet:
		switch {
		case watch:
			verb = "watch"
		case named:
			verb = "get"
		default:
			verb = "list"
		}
	case http.MethodPost:
		verb = "create"
	case http.MethodPut:
		verb = "update"
	case http.MethodPatch:
		verb = "patch"
		if req.Header.Get("Content-Type") == string(types.ApplyPatchType) || req.Header.Get("Content-Type") == string(types.ApplyCBORPatchType) {
			verb = "apply"
		}
	case http.MethodDelete:
		verb = "delete"
		if !named {
			verb = "deletecollection"
		}
	default:
		verb = strings.ToLower(req.Method)
	}
	return verb, resource, subresource, true
}
