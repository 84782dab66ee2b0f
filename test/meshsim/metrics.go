package meshsim

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// istioLabels are the labels of Istio's standard metrics
// (https://istio.io/latest/docs/reference/config/metrics/), in one fixed order.
var istioLabels = []string{
	"reporter",
	"source_workload", "source_workload_namespace", "source_app", "source_version",
	"source_canonical_service", "source_canonical_revision", "source_cluster", "source_principal",
	"destination_workload", "destination_workload_namespace", "destination_app", "destination_version",
	"destination_canonical_service", "destination_canonical_revision", "destination_cluster", "destination_principal",
	"destination_service", "destination_service_name", "destination_service_namespace",
	"request_protocol", "response_code", "grpc_response_status", "response_flags", "connection_security_policy",
	// Not Istio's defaults: what a Telemetry's tagOverrides add (docs/meshpolicy.md), set
	// with Options.Authorization only.
	"request_method", "request_path", "dry_run_result",
}

// istioDurationBuckets are Istio's default buckets for
// istio_request_duration_milliseconds, in milliseconds.
var istioDurationBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

type istioMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newIstioMetrics(reg prometheus.Registerer) *istioMetrics {
	m := &istioMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_requests_total",
			Help: "Total number of requests (simulated by meshsim).",
		}, istioLabels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "istio_request_duration_milliseconds",
			Help:    "Request duration in milliseconds (simulated by meshsim).",
			Buckets: istioDurationBuckets,
		}, istioLabels),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// peer is one side of a request as Istio's labels describe it.
type peer struct {
	Workload, Namespace, App, Version, CanonicalService, CanonicalRevision, Principal string
}

func unknownPeer() peer {
	return peer{"unknown", "unknown", "unknown", "unknown", "unknown", "unknown", "unknown"}
}

// workloadPeer labels a workload the way Istio's metadata exchange does, from its pod
// template's (or Pod's) labels and service account.
func workloadPeer(name, namespace string, l map[string]string, sa string) peer {
	first := func(def string, keys ...string) string {
		for _, k := range keys {
			if v := l[k]; v != "" {
				return v
			}
		}
		return def
	}
	if sa == "" {
		sa = "default"
	}
	return peer{
		Workload:          name,
		Namespace:         namespace,
		App:               first("unknown", "app", "app.kubernetes.io/name"),
		Version:           first("unknown", "version", "app.kubernetes.io/version"),
		CanonicalService:  first(name, "service.istio.io/canonical-name", "app.kubernetes.io/name", "app"),
		CanonicalRevision: first("latest", "service.istio.io/canonical-revision", "app.kubernetes.io/version", "version"),
		Principal:         "spiffe://cluster.local/ns/" + namespace + "/sa/" + sa,
	}
}

// observation is one outcome of a group of requests, as one reporter saw it.
type observation struct {
	Reporter    string // "source" or "destination"
	Source      peer
	Destination peer
	Service     serviceRef // zero when no Service was reached
	Code        int
	Flags       string
	// Plaintext: the request came without mTLS.
	Plaintext bool
	// DryRun is the destination's shadow RBAC result (shadowAllowed, shadowDenied), "" with
	// no dry-run policy; Method and Path are the request's when it is set.
	DryRun, Method, Path string
}

func (o observation) labels() []string {
	svc, svcName, svcNS := "unknown", "unknown", "unknown"
	if o.Service.Name != "" {
		svc, svcName, svcNS = o.Service.FQDN(), o.Service.Name, o.Service.Namespace
	}
	security, principal := "unknown", o.Source.Principal
	if o.Reporter == "destination" {
		security = "mutual_tls"
		if o.Plaintext {
			security, principal = "none", "unknown" // no peer certificate
		}
	}
	return []string{
		o.Reporter,
		o.Source.Workload, o.Source.Namespace, o.Source.App, o.Source.Version,
		o.Source.CanonicalService, o.Source.CanonicalRevision, "Kubernetes", principal,
		o.Destination.Workload, o.Destination.Namespace, o.Destination.App, o.Destination.Version,
		o.Destination.CanonicalService, o.Destination.CanonicalRevision, "Kubernetes", o.Destination.Principal,
		svc, svcName, svcNS,
		"http", strconv.Itoa(o.Code), "-", o.Flags, security,
		o.Method, o.Path, o.DryRun,
	}
}

// record counts n requests that each took the given latencies (len(latencies) == n).
func (m *istioMetrics) record(o observation, latencies []float64) {
	if len(latencies) == 0 {
		return
	}
	lv := o.labels()
	m.requests.WithLabelValues(lv...).Add(float64(len(latencies)))
	h := m.duration.WithLabelValues(lv...)
	for _, l := range latencies {
		h.Observe(l)
	}
}
