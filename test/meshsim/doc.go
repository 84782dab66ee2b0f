// Package meshsim stands in for Istio's data plane in canopy's tests, where Envoy cannot
// run: it reads the routing the operator wrote and emits the metrics Envoy would have.
//
// It watches VirtualServices, DestinationRules, Services and Deployments, and sends every
// VirtualService host a steady synthetic request stream (Options.RequestsPerSecond),
// split exactly as the HTTP routes say: the first matching route (URI, method, authority,
// headers and cookies, source namespace and labels, gateways), then its destinations by
// weight, a destination's Service to the Deployments its selector (and the subset's
// labels) pick, balanced by replicas; mirrors copy their percentage of a route's requests
// to their target, which reports them while the client never sees the answer. A share of
// the requests (Options.HeaderFraction) carries Options.Headers, so that A/B matches have
// something to match.
//
// Each request's outcome comes from the receiving Deployment's pod template annotations
// (AnnotationErrorRate, AnnotationErrorCode, AnnotationLatency): a bad revision is a
// Deployment edit. No request is really sent: counts are computed per tick,
// deterministically (proportions hold exactly over time, latencies walk the
// distribution's quantiles evenly), and exposed with Istio's names, labels and buckets
// (istio_requests_total, istio_request_duration_milliseconds) on /metrics at Addr, for a
// real Prometheus to scrape. Stats gives the same traffic per route, in Go.
//
// Not modelled: ports and stat prefixes in matches (every request is on the Service's
// port), query parameters (synthetic requests have none), delegation, fault injection,
// retries and timeouts. Only test code may import this package.
package meshsim
