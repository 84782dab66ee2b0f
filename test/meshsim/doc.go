// Package meshsim stands in for Istio's data plane in canopy's tests, where Envoy cannot
// run: it routes synthetic requests by the configuration a real istiod sends, and emits
// the metrics Envoy would have.
//
// What is real: istiod's translation. Every source of traffic connects to istiod
// (Options.XDSAddress, plaintext ADS, state of the world) as its own proxy: the client's
// sidecar in the source namespace (node sidecar~192.0.2.x~<SourceWorkload>-meshsim.<ns>,
// labels app=<SourceWorkload>), for a VirtualService bound to a gateway, a router in
// the Gateway's namespace labelled as the Gateway selects, and for an HTTPRoute whose
// parent is a Gateway API Gateway of gatewayClassName istio (in the watched namespaces),
// a router that is a pod of the Deployment istiod's gateway deployment controller makes
// for it: in the Gateway's namespace, with that Deployment's pod labels
// (gateway.networking.k8s.io/gateway-name: <gateway>, which the Service <gateway>-istio
// selects) and service account, so that istiod, finding the proxy behind the Service it
// binds the Gateway's generated Istio Gateways to, sends it the Gateway's listeners (a
// manual deployment's Service, named by a Hostname address, works the same way; until
// the Service exists, nobody sends that Gateway's requests). istiod sends it listeners,
// route configurations, clusters and endpoints as to an Envoy, so VirtualService
// merging and conflicts, exportTo, sourceLabels and gateways matches, subsets and
// DestinationRules, Istio's default retry policy and timeouts all arrive as istiod
// resolves them, and HTTPRoutes as istiod translates them. The simulator does not read
// VirtualServices, DestinationRules or HTTPRoutes to route; it lists VirtualServices
// only to know which hosts get traffic, HTTPRoutes whose parent is a Service (GAMMA) to
// send that Service sidecar traffic too, and HTTPRoutes whose parent is a Gateway API
// Gateway to send ingress traffic through that Gateway's proxy: for each hostname of the
// route an HTTP listener of the Gateway accepts (the listener's own when the route has
// none; the parentRef's sectionName and port narrow the listeners), at
// Options.IngressShare of RequestsPerSecond. Its metrics are the gateway workload's, as
// for an Istio Gateway's router (source_workload <gateway>-istio).
//
// What is modelled: Envoy's reading of that configuration for one HTTP/1.1 request.
// A sidecar sends a host's requests to the route configuration of its Service's HTTP
// port ("9080"; port 80 for a host that is no Service), a gateway to those its listeners
// name; then, as Envoy: the virtual host by domain (exact, suffix and prefix wildcards,
// "*"), the first route whose match holds (prefix, path, safe_regex,
// path_separated_prefix, case_sensitive, headers including :authority, :method, :path
// and :scheme, query parameters, runtime_fraction), its cluster or weighted clusters
// (smooth weighted round robin, exact over time), direct responses and redirects, the
// fault filter's per-route abort (http_status) and fixed delay with their percentages,
// request_mirror_policies with their runtime_fraction, the retry policy for answers
// (5xx, gateway-error, retriable-status-codes, retriable-4xx, connect-failure for an
// endpoint with no running Pod; num_retries, per_try_timeout) and the route timeout
// (Envoy's 15 s when unset; istiod sets 0, none). Endpoints are the cluster's healthy
// EDS endpoints of its best priority, balanced by weighted round robin. Response flags
// as Envoy reports them: NR (no virtual host or route: 404), NC (no such cluster: 503),
// UH (no healthy endpoint: 503), UF (the endpoint is no running Pod: 503), FI and DI,
// UT (timeout: 504), URX (retries exhausted).
//
// Not modelled: connections (nothing is dialled, no TLS, every request is plaintext
// HTTP on the Service's port and no connection ever fails), header and path rewrites,
// CORS, rate limits, outlier detection, circuit breakers, consistent hashing and
// locality failover, retry backoff and retry host predicates (a retry takes the next
// endpoint in turn), TCP and TLS routes, HTTPS listeners (a Gateway's HTTPS listeners
// get no requests), the Gateway's load balancer address (nothing is sent to it; the
// request enters at the proxy), header-controlled faults, gRPC, and filters
// other than the router and fault filters (EnvoyFilters patching them are not applied).
//
// Each request's answer comes from the workload at the endpoint's address: the Pod with
// that IP (kwok's fake IPs on the local cluster; no packet is ever sent to one), its
// ReplicaSet and Deployment, whose pod template annotations (AnnotationErrorRate,
// AnnotationErrorCode, AnnotationLatency) say how it answers, so that a bad revision is
// a Deployment edit. Counts are computed per tick, deterministically (proportions hold
// exactly over time, latencies walk the distribution's quantiles evenly), and exposed
// with Istio's names, labels and buckets (istio_requests_total,
// istio_request_duration_milliseconds) on /metrics at Addr, for a real Prometheus to
// scrape. Every attempt is reported by the workload that answered it
// (reporter="destination"), each request's outcome by the source (reporter="source",
// never for a mirror). Stats gives the same traffic per route, in Go. A share of the
// requests (Options.HeaderFraction) carries Options.Headers, so that A/B matches have
// something to match.
//
// With Options.Authorization, the dry-run AuthorizationPolicies (istio.io/dry-run) are
// evaluated too: the simulator connects to istiod as the sidecar of each Pod that answers
// (at the Pod's address, so istiod sends it the Pod's inbound listeners), reads the HTTP
// RBAC filters of the port's filter chain and evaluates their shadow_rules as Envoy does
// (principals: authenticated principal names, the caller's SPIFFE identity; permissions:
// headers, url_path, ports, and/or/not), and the destination reports the request with
// dry_run_result ("allowed" or "denied"), request_method and request_path: what a
// Telemetry's tagOverrides add from Envoy's shadow_engine_result metadata in a real mesh
// (docs/meshpolicy.md). The rules in force are not enforced. connection_security_policy is
// "mutual_tls" at the destination unless Options.Plaintext, which stands for a client
// sidecar sending plaintext ("none", source_principal "unknown"). Only test code may
// import this package.
package meshsim
