package render

import (
	"fmt"
	"regexp"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/progress"
	pods "canopy.dev/canopy/internal/workload"
)

// CanarySet is everything rendered for a Canary.
type CanarySet struct {
	// Services are "<name>" (the apex, selecting the primary's pods), "<name>-primary"
	// and "<name>-canary" (selecting the target's pods), in that order.
	Services []*corev1.Service
	// DestinationRules are "<name>-primary" and "<name>-canary", one per host.
	DestinationRules []*networkingv1.DestinationRule
	// VirtualService is "<name>": the only routing for the apex host, carrying the
	// MeshPolicy's routes when there is one.
	VirtualService *networkingv1.VirtualService
	// Warnings are settings that render but are overridden or probably unintended.
	Warnings []Warning
}

// Routing returns the Services, DestinationRules and VirtualService: what is applied
// on every reconcile. The primary Deployment is rendered by Primary, with the count
// desired.PrimaryReplicas gives.
func (s *CanarySet) Routing() []Object {
	var out []Object
	for _, o := range s.Services {
		out = append(out, o)
	}
	for _, o := range s.DestinationRules {
		out = append(out, o)
	}
	if s.VirtualService != nil {
		out = append(out, s.VirtualService)
	}
	return out
}

// CanaryObjects renders the objects of a Canary for the given weights. target is the
// Deployment named by spec.targetRef; policy is the MeshPolicy of the apex Service, if
// any: its routes, retries, timeouts, faults, ingress binding and resilience are
// composed into the Canary's VirtualService and DestinationRules without changing the
// weights. An error wrapping *FieldError is a spec problem (see ReasonOf); any other
// error is a bug in the caller (nil objects, invalid weights, a mismatched target).
func CanaryObjects(c *meshv1.Canary, target *appsv1.Deployment, w progress.Routing, policy *meshv1.MeshPolicy) (CanarySet, error) {
	r, err := newCanaryRenderer(c, target, w, policy)
	if err != nil {
		return CanarySet{}, err
	}
	e := r.e

	var set CanarySet
	checkSessionAffinity(e, &c.Spec.Analysis)
	set.Services = r.services()
	set.DestinationRules = r.destinationRules()
	set.VirtualService = r.virtualService()
	if err := e.err(); err != nil {
		return CanarySet{}, err
	}
	set.Warnings = e.warnings()
	return set, nil
}

// newCanaryRenderer checks what every rendering of a Canary needs: the objects, the weights,
// the names, and that the policy (nil: none) is the apex Service's.
func newCanaryRenderer(c *meshv1.Canary, target *appsv1.Deployment, w progress.Routing, policy *meshv1.MeshPolicy) (*canaryRenderer, error) {
	if c == nil || target == nil {
		return nil, fmt.Errorf("render canary: canary and target are required")
	}
	if err := w.Validate(); err != nil {
		return nil, fmt.Errorf("render canary %s/%s: %w", c.Namespace, c.Name, err)
	}
	r := &canaryRenderer{c: c, target: target, w: w, e: newErrs(), name: c.Spec.TargetRef.Name, policy: policy}
	r.stepRoutes()
	if !r.checkNames() {
		return nil, r.e.err()
	}
	if policy != nil {
		r.pe = r.e.about(KindMeshPolicy + "/" + policy.Name)
		if policy.Spec.TargetRef.Name != r.name {
			r.pe.inconsistent("spec.targetRef.name", "is %q but the Canary's apex Service is %q", policy.Spec.TargetRef.Name, r.name)
		}
	}
	return r, nil
}

// Primary renders the primary Deployment from target, the Deployment whose template the
// primary is to run (the target itself when promoting). replicas nil leaves the count
// unset, so that an autoscaler, or the count already there, keeps it. configs are the
// ConfigMaps and Secrets the target's template reads (workload.ReadConfigs): the primary
// reads its own copies of those it copies (ConfigMapCopy, SecretCopy, applied before it), and
// their digests are part of the revision the primary records (on its pod template too, so
// that a config change alone still rolls the primary's pods).
func Primary(c *meshv1.Canary, target *appsv1.Deployment, replicas *int32, configs ...pods.Config) (*appsv1.Deployment, error) {
	if c == nil || target == nil {
		return nil, fmt.Errorf("render primary: canary and target are required")
	}
	e := newErrs()
	r := canaryRenderer{c: c, target: target, e: e, name: c.Spec.TargetRef.Name}
	if !r.checkNames() {
		return nil, e.err()
	}
	d := primary(e, c, target, replicas, configs...)
	return d, e.err()
}

// dns1035 is a Service name: it must start with a letter.
var dns1035 = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)

type canaryRenderer struct {
	c      *meshv1.Canary
	target *appsv1.Deployment
	w      progress.Routing
	name   string
	policy *meshv1.MeshPolicy
	e      *errs
	pe     *errs // the MeshPolicy's fields, when there is one
	// The steps' routes of the routing (progress.Routing.HeaderRoute and MirrorRoute, resolved
	// by stepRoutes): when headerPath is set, the A/B route matches header, the matches of
	// that field, instead of spec.analysis.match; when mirrorPath is set, only the requests
	// matching mirrorList, the matches of that field, are mirrored (mirrorMatch, rendered).
	header, mirrorList     []meshv1.HTTPMatch
	headerPath, mirrorPath string
	mirrorMatch            matchList
}

// stepRoutes resolves the routing's step routes in the Canary's spec.analysis.steps: a header
// route is the A/B route with that step's match; a mirror route restricts the mirroring.
func (r *canaryRenderer) stepRoutes() {
	steps := r.c.Spec.Analysis.Steps
	if i := int(r.w.HeaderRoute) - 1; i >= 0 && i < len(steps) && steps[i].SetHeaderRoute != nil {
		r.w.Match, r.header = true, steps[i].SetHeaderRoute.Match
		r.headerPath = fmt.Sprintf("spec.analysis.steps[%d].setHeaderRoute.match", i)
	}
	if i := int(r.w.MirrorRoute) - 1; i >= 0 && i < len(steps) && steps[i].SetMirrorRoute != nil {
		r.mirrorList = steps[i].SetMirrorRoute.Match
		r.mirrorPath = fmt.Sprintf("spec.analysis.steps[%d].setMirrorRoute.match", i)
	}
}

func (r *canaryRenderer) checkNames() bool {
	ok := true
	// The longest generated Service name, "<name>-primary", must still be a DNS-1035 label.
	if max := maxServiceName - len(PrimarySuffix); len(r.name) > max || !dns1035.MatchString(r.name) {
		r.e.invalid("spec.targetRef.name", "%q must be a DNS-1035 label of at most %d characters, since the Services %q and %q are named after it", r.name, max, PrimaryName(r.name), CanaryName(r.name))
		ok = false
	}
	if r.target.Name != r.name {
		r.e.inconsistent("spec.targetRef.name", "is %q but the target given is %q", r.name, r.target.Name)
		ok = false
	}
	if r.target.Spec.Selector == nil || len(r.target.Spec.Selector.MatchLabels) == 0 {
		r.e.inconsistent("spec.targetRef.name", "%s %q has no selector.matchLabels for the canary Service to select its pods by", r.c.Spec.TargetRef.KindOrDefault(), r.name)
		ok = false
	}
	r.checkDaemonSet()
	return ok
}

func (r *canaryRenderer) labels() map[string]string {
	return OwnerLabels(KindCanary, r.c.Namespace, r.c.Name)
}

func primary(e *errs, c *meshv1.Canary, target *appsv1.Deployment, replicas *int32, configs ...pods.Config) *appsv1.Deployment {
	name := c.Spec.TargetRef.Name
	pname := PrimaryName(name)
	rev := Revision(&target.Spec.Template, pods.Tracked(configs)...)

	spec := target.Spec.DeepCopy()
	useConfigCopies(&spec.Template.Spec, configs)
	spec.Replicas = nil
	if replicas != nil {
		spec.Replicas = new(int32)
		*spec.Replicas = *replicas
	}
	spec.Paused = false
	spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{SelectorLabel: pname}}

	labels := copyMap(target.Spec.Template.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	if v, ok := labels[SelectorLabel]; ok && v == pname {
		e.inconsistent("spec.targetRef.name", "the pods of Deployment %q must not be labelled %s=%s: that label selects the primary's pods", name, SelectorLabel, pname)
	}
	// The primary's pods must not match the target's selector (the target Deployment and
	// the canary Service would take them): with "app" in that selector, overwriting it is
	// enough; otherwise every label the selector uses is suffixed.
	if _, ok := target.Spec.Selector.MatchLabels[SelectorLabel]; !ok {
		for k, v := range target.Spec.Selector.MatchLabels {
			labels[k] = LabelValue(v + PrimarySuffix)
		}
	}
	labels[SelectorLabel] = pname
	spec.Template.Labels = labels
	if spec.Template.Annotations == nil {
		spec.Template.Annotations = map[string]string{}
	}
	spec.Template.Annotations[AnnotationRevision] = rev

	return &appsv1.Deployment{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        pname,
			Namespace:   c.Namespace,
			Labels:      OwnerLabels(KindCanary, c.Namespace, c.Name),
			Annotations: map[string]string{AnnotationRevision: rev},
		},
		Spec: *spec,
	}
}

func (r *canaryRenderer) services() []*corev1.Service {
	s := r.c.Spec.Service
	portName := s.PortName
	if portName == "" {
		portName = "http"
	}
	targetPort := s.Port
	if s.TargetPort != nil {
		targetPort = *s.TargetPort
	}
	if s.Port < 1 || s.Port > 65535 {
		r.e.invalid("spec.service.port", "%d is not a port", s.Port)
	}
	if targetPort < 1 || targetPort > 65535 {
		r.e.invalid("spec.service.targetPort", "%d is not a port", targetPort)
	}
	svc := func(name string, selector map[string]string) *corev1.Service {
		return &corev1.Service{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: r.c.Namespace, Labels: r.labels()},
			Spec: corev1.ServiceSpec{
				Selector: selector,
				Ports: []corev1.ServicePort{{
					Name:       portName,
					Port:       s.Port,
					TargetPort: intstr.FromInt32(targetPort),
					// Explicit, since protocol is part of the ports' merge key under SSA.
					Protocol: corev1.ProtocolTCP,
				}},
			},
		}
	}
	primarySel := map[string]string{SelectorLabel: PrimaryName(r.name)}
	svcs := []*corev1.Service{
		svc(r.name, primarySel),
		svc(PrimaryName(r.name), copyMap(primarySel)),
		svc(CanaryName(r.name), copyMap(r.target.Spec.Selector.MatchLabels)),
	}
	r.serviceExtras(svcs)
	return svcs
}

func (r *canaryRenderer) destinationRules() []*networkingv1.DestinationRule {
	tp := r.trafficPolicy()
	dr := func(host string) *networkingv1.DestinationRule {
		d := &networkingv1.DestinationRule{
			TypeMeta:   metav1.TypeMeta{APIVersion: networkingv1.SchemeGroupVersion.String(), Kind: "DestinationRule"},
			ObjectMeta: metav1.ObjectMeta{Name: host, Namespace: r.c.Namespace, Labels: r.labels()},
		}
		d.Spec.Host = host
		if tp != nil {
			d.Spec.TrafficPolicy = proto.Clone(tp).(*networking.TrafficPolicy)
		}
		return d
	}
	out := []*networkingv1.DestinationRule{dr(PrimaryName(r.name)), dr(CanaryName(r.name))}
	for _, d := range out {
		// Wherever the VirtualService routes to these hosts, their traffic policy applies.
		d.Spec.ExportTo = exportTo(r.c.Namespace, []string{d.Spec.Host}, r.gateways())
	}
	return out
}

// trafficPolicy merges spec.service.trafficPolicy with the MeshPolicy's resilience and
// mTLS: the Canary's own settings win, field by field, with a warning when they override
// a different policy value; TLS settings that contradict the policy's mTLS are errors.
func (r *canaryRenderer) trafficPolicy() *networking.TrafficPolicy {
	const path = "spec.service.trafficPolicy"
	own := r.c.Spec.Service.TrafficPolicy
	if own == nil {
		own = &meshv1.TrafficPolicy{}
	}
	tp := &networking.TrafficPolicy{
		LoadBalancer:     loadBalancer(r.e, path+".loadBalancer", own.LoadBalancer),
		ConnectionPool:   connectionPool(r.e, path+".connectionPool", own.ConnectionPool),
		OutlierDetection: outlierDetection(r.e, path+".circuitBreaker", own.CircuitBreaker),
		Tls:              clientTLS(r.e, path+".tlsMode", own.TLSMode),
	}
	if r.policy != nil {
		pol := policyTrafficPolicy(r.pe, r.policy, []corev1.ServicePort{{Port: r.c.Spec.Service.Port, TargetPort: intstr.FromInt32(r.targetPort())}}, true)
		tp.LoadBalancer = overrideMsg(r.e, path+".loadBalancer", r.pe, "spec.resilience.loadBalancer", tp.LoadBalancer, pol.LoadBalancer)
		tp.ConnectionPool = overrideMsg(r.e, path+".connectionPool", r.pe, "spec.resilience.connectionPool", tp.ConnectionPool, pol.ConnectionPool)
		tp.OutlierDetection = overrideMsg(r.e, path+".circuitBreaker", r.pe, "spec.resilience.circuitBreaker", tp.OutlierDetection, pol.OutlierDetection)
		tp.PortLevelSettings = pol.PortLevelSettings
		if m := r.policy.Spec.MTLS; m != nil && own.TLSMode != "" {
			checkClientTLS(r.e, path+".tlsMode", own.TLSMode, m.Mode, r.pe.describe("spec.mtls.mode"))
		}
		if tp.Tls == nil {
			tp.Tls = pol.Tls
		}
	}
	if proto.Equal(tp, &networking.TrafficPolicy{}) {
		return nil
	}
	return tp
}

func (r *canaryRenderer) targetPort() int32 {
	if p := r.c.Spec.Service.TargetPort; p != nil {
		return *p
	}
	return r.c.Spec.Service.Port
}

// checkClientTLS reports a client TLS mode that cannot talk to servers in the given
// mTLS mode: STRICT servers only accept Istio mTLS, DISABLE servers never do.
func checkClientTLS(e *errs, field string, client meshv1.TLSMode, server meshv1.MTLSMode, serverField string) {
	switch {
	case server == meshv1.MTLSStrict && client != "ISTIO_MUTUAL":
		e.inconsistent(field, "%s cannot reach workloads whose %s is STRICT: use ISTIO_MUTUAL", client, serverField)
	case server == meshv1.MTLSDisable && client == "ISTIO_MUTUAL":
		e.inconsistent(field, "ISTIO_MUTUAL cannot reach workloads whose %s is DISABLE", serverField)
	}
}

// routeDefaults are the settings every generated route starts from.
type routeDefaults struct {
	timeout     *durationPB
	timeoutFrom string
	retries     *networking.HTTPRetry
	retriesFrom string
	headers     *networking.Headers
	cors        *networking.CorsPolicy
}

func (r *canaryRenderer) virtualService() *networkingv1.VirtualService {
	s := r.c.Spec.Service
	vs := &networkingv1.VirtualService{
		TypeMeta:   metav1.TypeMeta{APIVersion: networkingv1.SchemeGroupVersion.String(), Kind: "VirtualService"},
		ObjectMeta: metav1.ObjectMeta{Name: r.name, Namespace: r.c.Namespace, Labels: r.labels()},
	}
	hosts := appendHosts(r.c.Namespace, []string{r.name}, s.Hosts...)
	if r.policy != nil && r.policy.Spec.Ingress != nil {
		hosts = appendHosts(r.c.Namespace, hosts, r.policy.Spec.Ingress.Hosts...)
	}
	vs.Spec.Hosts = hosts
	vs.Spec.Gateways = r.gateways()
	vs.Spec.ExportTo = exportTo(r.c.Namespace, vs.Spec.Hosts, vs.Spec.Gateways)

	d := r.defaults()
	svcMatch := httpMatches(r.e, "spec.service.match", s.Match)
	var abMatch matchList
	if r.w.Match {
		path, list := "spec.analysis.match", r.c.Spec.Analysis.Match
		if r.headerPath != "" {
			path, list = r.headerPath, r.header
		}
		abMatch = httpMatches(r.e, path, list)
		if len(abMatch.reqs) == 0 {
			r.e.invalid(path, "A/B routing needs at least one match")
		}
	}
	if r.w.Mirror && r.mirrorPath != "" {
		r.mirrorMatch = httpMatches(r.e, r.mirrorPath, r.mirrorList)
	}

	var routes []*networking.HTTPRoute
	catchAll := false
	if r.policy != nil {
		for i := range r.policy.Spec.Routes {
			pr := &r.policy.Spec.Routes[i]
			path := fmt.Sprintf("spec.routes[%d]", i)
			if catchAll {
				r.pe.warn(path, "is never used: an earlier route matches every request")
			}
			if pr.Port != nil && *pr.Port != s.Port {
				r.pe.inconsistent(path+".port", "%d is not a port of the Canary's Services (%d)", *pr.Port, s.Port)
			}
			match := singleMatch(r.pe, path+".match", pr.Match).and(svcMatch)
			base := r.policyRoute(path, pr, d)
			if own := routeDestinations(r.pe, path, pr.Destinations, r.portOf); answersItself(base) || own != nil {
				// The route answers by itself or sends where it says: the Canary's split,
				// A/B route and mirror are not the route's.
				base.Match, base.Route = match.reqs, own
				routes = append(routes, base)
				if len(match.reqs) == 0 {
					catchAll = true
				}
				continue
			}
			if r.w.Match {
				ab := proto.Clone(base).(*networking.HTTPRoute)
				if ab.Name != "" {
					ab.Name += "-ab"
				}
				ab.Match = abMatch.and(match).reqs
				ab.Route = r.canaryOnly()
				routes = append(routes, ab)
			}
			if r.sticky() {
				routes = append(routes, r.stickyRoutes(base, match)...)
			}
			base.Match = match.reqs
			base.Route = r.split()
			routes = append(routes, r.withMirror(base, match)...)
			if len(match.reqs) == 0 {
				catchAll = true
			}
		}
	}
	if !catchAll {
		if r.w.Match {
			ab := d.route()
			ab.Match = abMatch.and(svcMatch).reqs
			ab.Route = r.canaryOnly()
			routes = append(routes, ab)
		}
		def := d.route()
		if r.sticky() {
			routes = append(routes, r.stickyRoutes(def, svcMatch)...)
		}
		def.Match = svcMatch.reqs
		def.Route = r.split()
		routes = append(routes, r.withMirror(def, svcMatch)...)
	}
	checkRouteNames(r.pe, routes)
	vs.Spec.Http = routes
	return vs
}

// gateways are the gateways the VirtualService is bound to: the Canary's, the MeshPolicy's
// ingress Gateway, and then "mesh" (the sidecars) too.
func (r *canaryRenderer) gateways() []string {
	gateways := appendUnique(nil, r.c.Spec.Service.Gateways...)
	if r.policy != nil && r.policy.Spec.Ingress != nil {
		gateways = appendUnique(gateways, GatewayRef(r.policy))
	}
	if len(gateways) > 0 {
		gateways = appendUnique(gateways, "mesh")
	}
	return gateways
}

// defaults are the Canary's route settings, falling back to the MeshPolicy's resilience.
func (r *canaryRenderer) defaults() routeDefaults {
	s := r.c.Spec.Service
	d := routeDefaults{
		timeout:     duration(r.e, "spec.service.timeout", s.Timeout),
		timeoutFrom: "spec.service.timeout",
		retries:     retries(r.e, "spec.service.retries", s.Retries),
		retriesFrom: "spec.service.retries",
		headers:     headers(r.e, "spec.service.headers", s.Headers),
		cors:        cors(r.e, "spec.service.corsPolicy", s.CorsPolicy),
	}
	if r.policy != nil && r.policy.Spec.Resilience != nil {
		res := r.policy.Spec.Resilience
		pt := duration(r.pe, "spec.resilience.timeout", res.Timeout)
		d.timeout = overrideMsg(r.e, "spec.service.timeout", r.pe, "spec.resilience.timeout", d.timeout, pt)
		if s.Timeout == "" {
			d.timeoutFrom = r.pe.describe("spec.resilience.timeout")
		}
		pr := retries(r.pe, "spec.resilience.retries", res.Retries)
		d.retries = overrideMsg(r.e, "spec.service.retries", r.pe, "spec.resilience.retries", d.retries, pr)
		if s.Retries == nil {
			d.retriesFrom = r.pe.describe("spec.resilience.retries")
		}
	}
	checkRetryTimeout(r.e, d)
	return d
}

func (d routeDefaults) route() *networking.HTTPRoute {
	return &networking.HTTPRoute{
		Timeout:    cloneDuration(d.timeout),
		Retries:    cloneMsg(d.retries),
		Headers:    cloneMsg(d.headers),
		CorsPolicy: cloneMsg(d.cors),
	}
}

// policyRoute renders a MeshPolicy route's own settings over the defaults; the caller
// sets the match and destinations.
func (r *canaryRenderer) policyRoute(path string, pr *meshv1.Route, d routeDefaults) *networking.HTTPRoute {
	return policyHTTPRoute(r.pe, path, pr, d)
}

func policyHTTPRoute(e *errs, path string, pr *meshv1.Route, d routeDefaults) *networking.HTTPRoute {
	rt := d.route()
	rt.Name = pr.Name
	if pr.Timeout != "" {
		d.timeout = duration(e, path+".timeout", pr.Timeout)
		d.timeoutFrom = e.describe(path + ".timeout")
		rt.Timeout = d.timeout
	}
	if pr.Retries != nil {
		d.retries = retries(e, path+".retries", pr.Retries)
		d.retriesFrom = e.describe(path + ".retries")
		rt.Retries = d.retries
	}
	if pr.Timeout != "" || pr.Retries != nil {
		checkRetryTimeout(e, d)
	}
	rt.Headers = mergeHeaders(rt.Headers, headers(e, path+".headers", pr.Headers))
	rt.Rewrite = rewrite(pr.Rewrite)
	rt.Fault = fault(e, path+".fault", pr.Fault)
	routeActions(e, path, pr, rt)
	return rt
}

// checkRetryTimeout warns when retries cannot all happen within the route's timeout.
func checkRetryTimeout(e *errs, d routeDefaults) {
	if d.timeout == nil || d.retries == nil || d.retries.PerTryTimeout == nil || d.retries.Attempts == 0 {
		return
	}
	if d.retries.PerTryTimeout.AsDuration() >= d.timeout.AsDuration() {
		e.warn(d.retriesFrom+".perTryTimeout", "%s is not shorter than the route's timeout %s (%s): no retry can happen",
			d.retries.PerTryTimeout.AsDuration(), d.timeout.AsDuration(), d.timeoutFrom)
	}
}

// checkRouteNames reports route names used twice; named routes come from a MeshPolicy,
// whose errs e is.
func checkRouteNames(e *errs, routes []*networking.HTTPRoute) {
	seen := map[string]bool{}
	for i, rt := range routes {
		if rt.Name == "" {
			continue
		}
		if seen[rt.Name] {
			e.inconsistent("spec.routes", "route name %q is used twice in the generated VirtualService (route %d)", rt.Name, i)
		}
		seen[rt.Name] = true
	}
}

// portOf is the port of a MeshPolicy route's destination that names none: the Canary's
// for its own Service, none for another.
func (r *canaryRenderer) portOf(host string) *networking.PortSelector {
	if host != r.name {
		return nil
	}
	return &networking.PortSelector{Number: uint32(r.c.Spec.Service.Port)}
}

func (r *canaryRenderer) destination(host string) *networking.Destination {
	return &networking.Destination{Host: host, Port: &networking.PortSelector{Number: uint32(r.c.Spec.Service.Port)}}
}

// split is the weighted pair of destinations. Both are always listed, so the route keeps
// its shape; a weight of 0 vanishes from the JSON and Istio reads it as 0.
// With session affinity, the canary's answers set the cookie that keeps its users on it.
func (r *canaryRenderer) split() []*networking.HTTPRouteDestination {
	out := []*networking.HTTPRouteDestination{
		{Destination: r.destination(PrimaryName(r.name)), Weight: r.w.PrimaryWeight},
		{Destination: r.destination(CanaryName(r.name)), Weight: r.w.CanaryWeight},
	}
	if r.sticky() {
		sa := r.c.Spec.Analysis.SessionAffinity
		out[1].Headers = r.setCookie(sa.CookieName)
		if sa.PrimaryCookieName != "" {
			out[0].Headers = r.setCookie(sa.PrimaryCookieName)
		}
	}
	return out
}

func (r *canaryRenderer) canaryOnly() []*networking.HTTPRouteDestination {
	return []*networking.HTTPRouteDestination{{Destination: r.destination(CanaryName(r.name)), Weight: 100}}
}

// withMirror is what a split route becomes: itself mirrored, or, when a step mirrors only
// matching requests, a mirrored copy for those before it.
func (r *canaryRenderer) withMirror(rt *networking.HTTPRoute, match matchList) []*networking.HTTPRoute {
	if r.mirrorPath == "" {
		r.mirror(rt)
		return []*networking.HTTPRoute{rt}
	}
	if !r.w.Mirror {
		return []*networking.HTTPRoute{rt}
	}
	m := proto.Clone(rt).(*networking.HTTPRoute)
	if m.Name != "" {
		m.Name += "-mirror"
	}
	m.Match = r.mirrorMatch.and(match).reqs
	r.mirror(m)
	return []*networking.HTTPRoute{m, rt}
}

func (r *canaryRenderer) mirror(rt *networking.HTTPRoute) {
	if !r.w.Mirror {
		return
	}
	mw := r.w.MirrorWeight
	if mw == 0 {
		mw = 100
	}
	rt.Mirror = r.destination(CanaryName(r.name))
	rt.MirrorPercentage = percent(float64(mw))
}

// ObservedWeights reads the primary/canary split of the Canary named name (its apex
// Service name) from a VirtualService as stored: the split of its catch-all route, or of
// its first route to the primary when every route has a match; a route listing both the
// primary and the canary (the weighted split) is preferred to one to the primary alone (a
// session-affinity route). ok is false when no route sends to the primary, or the split
// does not add up to 100.
func ObservedWeights(vs *networkingv1.VirtualService, name string) (primary, canary int32, ok bool) {
	if vs == nil {
		return 0, 0, false
	}
	var chosen *networking.HTTPRoute
	rank := func(rt *networking.HTTPRoute) int { // higher is better
		r := 0
		if routesTo(rt, CanaryName(name)) {
			r += 2
		}
		if len(rt.Match) == 0 {
			r++
		}
		return r
	}
	for _, rt := range vs.Spec.Http {
		if !routesTo(rt, PrimaryName(name)) {
			continue
		}
		if chosen == nil || rank(rt) > rank(chosen) {
			chosen = rt
		}
	}
	if chosen == nil {
		return 0, 0, false
	}
	var total int32
	for _, d := range chosen.Route {
		switch d.GetDestination().GetHost() {
		case PrimaryName(name):
			primary += d.Weight
		case CanaryName(name):
			canary += d.Weight
		}
		total += d.Weight
	}
	// A lone destination without a weight takes all the traffic.
	if len(chosen.Route) == 1 && total == 0 {
		return 100, 0, true
	}
	if total != 100 || primary+canary != 100 {
		return primary, canary, false
	}
	return primary, canary, true
}

func routesTo(rt *networking.HTTPRoute, host string) bool {
	for _, d := range rt.Route {
		if d.GetDestination().GetHost() == host {
			return true
		}
	}
	return false
}
