package render

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	telemetry "istio.io/api/telemetry/v1alpha1"
	istiotype "istio.io/api/type/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	telemetryv1 "istio.io/client-go/pkg/apis/telemetry/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// MeshPolicyOptions are the observations MeshPolicyObjects depends on.
type MeshPolicyOptions struct {
	// CertificateReady is true when the ingress Certificate is Ready. Until then the
	// Gateway serves plain HTTP only: an HTTPS server whose credentialName names a Secret
	// that does not exist yet fails, and redirecting to it would too.
	CertificateReady bool
	// CanaryOwnsRouting is true when a Canary delivers the policy's Service. The Canary's
	// renderer then composes this policy's routes, retries, timeouts, faults, ingress
	// binding and resilience into the one VirtualService and the DestinationRules of the
	// host (CanaryObjects(..., policy)), so MeshPolicyObjects emits no VirtualService or
	// DestinationRule for the Service. It still validates them, so the MeshPolicy reports
	// its own mistakes.
	CanaryOwnsRouting bool
	// CanarySelector is, when a Canary delivers the Service, the selector of the canary's
	// pods (the target Deployment's matchLabels). The apex Service selects only the
	// primary's pods, so the workload policies (PeerAuthentication, AuthorizationPolicy,
	// Telemetry) are rendered a second time, "<name>-canary", for the canary's pods.
	CanarySelector map[string]string
	// TracingProviders are the names of the mesh configuration's tracing extensionProviders,
	// and MeshConfigRead says whether they were read: a tracing provider not among them is
	// warned about (istiod would send that service's spans nowhere).
	TracingProviders []string
	MeshConfigRead   bool
	// AuthorizationProviders are the names of the mesh configuration's external
	// authorizers (envoyExtAuthzHttp, envoyExtAuthzGrpc), for action CUSTOM.
	AuthorizationProviders []string
}

// MeshPolicySet is everything rendered for a MeshPolicy. Objects are in the policy's
// namespace except the Gateway and the Certificate, which are in the gateway's
// namespace and cannot carry an ownerReference to the policy.
type MeshPolicySet struct {
	PeerAuthentications    []*securityv1.PeerAuthentication
	RequestAuthentications []*securityv1.RequestAuthentication
	AuthorizationPolicies  []*securityv1.AuthorizationPolicy
	// DestinationRules are the Service's (unless a Canary owns its routing) and one per
	// host of each external service with TLS origination.
	DestinationRules []*networkingv1.DestinationRule
	// VirtualServices is the Service's, unless a Canary owns its routing.
	VirtualServices []*networkingv1.VirtualService
	ServiceEntries  []*networkingv1.ServiceEntry
	Gateway         *networkingv1.Gateway
	// EgressGateways are the Gateways of the external services reached through an
	// egress gateway, in the gateways' namespaces; EgressRoutes their VirtualServices.
	EgressGateways []*networkingv1.Gateway
	EgressRoutes   []*networkingv1.VirtualService
	Certificate    *certmanagerv1.Certificate
	Telemetries    []*telemetryv1.Telemetry
	// EnvoyFilters carry the local rate limit, one per workload.
	EnvoyFilters []*networkingv1alpha3.EnvoyFilter
	Warnings     []Warning
}

// Objects returns every rendered object, the Certificate before the Gateway that
// depends on it and the Gateway before the VirtualService bound to it.
func (s *MeshPolicySet) Objects() []Object {
	var out []Object
	for _, o := range s.PeerAuthentications {
		out = append(out, o)
	}
	for _, o := range s.RequestAuthentications {
		out = append(out, o)
	}
	for _, o := range s.AuthorizationPolicies {
		out = append(out, o)
	}
	for _, o := range s.ServiceEntries {
		out = append(out, o)
	}
	for _, o := range s.DestinationRules {
		out = append(out, o)
	}
	if s.Certificate != nil {
		out = append(out, s.Certificate)
	}
	if s.Gateway != nil {
		out = append(out, s.Gateway)
	}
	for _, o := range s.VirtualServices {
		out = append(out, o)
	}
	for _, o := range s.EgressGateways {
		out = append(out, o)
	}
	for _, o := range s.EgressRoutes {
		out = append(out, o)
	}
	for _, o := range s.Telemetries {
		out = append(out, o)
	}
	for _, o := range s.EnvoyFilters {
		out = append(out, o)
	}
	return out
}

// MeshPolicyObjects renders a MeshPolicy for its target Service svc. An error wrapping
// *FieldError is a spec problem (see ReasonOf); any other error is a bug in the caller.
func MeshPolicyObjects(p *meshv1.MeshPolicy, svc *corev1.Service, opts MeshPolicyOptions) (MeshPolicySet, error) {
	if p == nil || svc == nil {
		return MeshPolicySet{}, fmt.Errorf("render mesh policy: policy and service are required")
	}
	e := newErrs()
	r := &policyRenderer{p: p, svc: svc, opts: opts, e: e}
	if svc.Name != p.Spec.TargetRef.Name || svc.Namespace != p.Namespace {
		e.inconsistent("spec.targetRef.name", "names Service %q but the Service given is %s/%s", p.Spec.TargetRef.Name, svc.Namespace, svc.Name)
		return MeshPolicySet{}, e.err()
	}
	return r.render()
}

func (r *policyRenderer) render() (MeshPolicySet, error) {
	p, e := r.p, r.e
	var set MeshPolicySet
	set.PeerAuthentications = r.peerAuthentications()
	set.RequestAuthentications = r.requestAuthentications()
	set.AuthorizationPolicies = r.authorizationPolicies()
	dr, vs := r.serviceDestinationRule(), r.virtualService()
	if !r.opts.CanaryOwnsRouting {
		if dr != nil {
			set.DestinationRules = append(set.DestinationRules, dr)
		}
		if vs != nil {
			set.VirtualServices = append(set.VirtualServices, vs)
		}
	}
	for i := range p.Spec.ExternalServices {
		se, drs := r.externalService(i)
		if se != nil {
			set.ServiceEntries = append(set.ServiceEntries, se)
		}
		set.DestinationRules = append(set.DestinationRules, drs...)
		if gw, vs := r.egress(i); gw != nil {
			set.EgressGateways = append(set.EgressGateways, gw)
			set.EgressRoutes = append(set.EgressRoutes, vs)
		}
	}
	set.Certificate = r.certificate()
	set.Gateway = r.gateway()
	set.Telemetries = r.telemetries()
	set.EnvoyFilters = r.rateLimits()
	r.checkRollout()
	if err := e.err(); err != nil {
		return MeshPolicySet{}, err
	}
	set.Warnings = e.warnings()
	return set, nil
}

type policyRenderer struct {
	p    *meshv1.MeshPolicy
	svc  *corev1.Service
	opts MeshPolicyOptions
	e    *errs
	// static renders without the target Service (ValidateMeshPolicy): svc is a stand-in
	// with a name only, and the checks against its selector and ports are skipped.
	static bool

	wl     []workload
	wlDone bool
}

func (r *policyRenderer) meta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:      limit(name, maxObjectName),
		Namespace: r.p.Namespace,
		Labels:    OwnerLabels(KindMeshPolicy, r.p.Namespace, r.p.Name),
	}
}

// workload is one set of pods the workload policies select.
type workload struct {
	name     string
	selector *istiotype.WorkloadSelector
}

// workloads are the pods of the Service and, when a Canary delivers it, the canary's.
// A Service without a selector would leave the policies without one, and a policy
// without a selector applies to the whole namespace: that is an error.
func (r *policyRenderer) workloads() []workload {
	if !r.wlDone {
		r.wl, r.wlDone = r.findWorkloads(), true
	}
	return r.wl
}

func (r *policyRenderer) findWorkloads() []workload {
	if r.static {
		return []workload{{name: r.p.Name, selector: &istiotype.WorkloadSelector{}}}
	}
	if len(r.svc.Spec.Selector) == 0 {
		r.e.inconsistent("spec.targetRef.name", "Service %q has no selector: its workload policies would apply to every pod of the namespace", r.svc.Name)
		return nil
	}
	out := []workload{{name: r.p.Name, selector: &istiotype.WorkloadSelector{MatchLabels: copyMap(r.svc.Spec.Selector)}}}
	if len(r.opts.CanarySelector) > 0 {
		out = append(out, workload{name: r.p.Name + CanarySuffix, selector: &istiotype.WorkloadSelector{MatchLabels: copyMap(r.opts.CanarySelector)}})
	}
	return out
}

var peerModes = map[meshv1.MTLSMode]security.PeerAuthentication_MutualTLS_Mode{
	meshv1.MTLSStrict:     security.PeerAuthentication_MutualTLS_STRICT,
	meshv1.MTLSPermissive: security.PeerAuthentication_MutualTLS_PERMISSIVE,
	meshv1.MTLSDisable:    security.PeerAuthentication_MutualTLS_DISABLE,
}

func (r *policyRenderer) peerMode(path string, m meshv1.MTLSMode) *security.PeerAuthentication_MutualTLS {
	v, ok := peerModes[m]
	if !ok {
		r.e.invalid(path, "unknown mTLS mode %q", m)
		return nil
	}
	return &security.PeerAuthentication_MutualTLS{Mode: v}
}

func (r *policyRenderer) peerAuthentications() []*securityv1.PeerAuthentication {
	m := r.p.Spec.MTLS
	if m == nil {
		return nil
	}
	mtls := r.peerMode("spec.mtls.mode", m.Mode)
	var ports map[uint32]*security.PeerAuthentication_MutualTLS
	for i, pl := range m.PortLevel {
		path := fmt.Sprintf("spec.mtls.portLevel[%d]", i)
		if pl.Port < 1 || pl.Port > 65535 {
			r.e.invalid(path+".port", "%d is not a port", pl.Port)
			continue
		}
		if ports == nil {
			ports = map[uint32]*security.PeerAuthentication_MutualTLS{}
		}
		if _, dup := ports[uint32(pl.Port)]; dup {
			r.e.invalid(path+".port", "port %d is listed twice", pl.Port)
		}
		ports[uint32(pl.Port)] = r.peerMode(path+".mode", pl.Mode)
	}
	var out []*securityv1.PeerAuthentication
	for _, w := range r.workloads() {
		pa := &securityv1.PeerAuthentication{
			TypeMeta:   metav1.TypeMeta{APIVersion: securityv1.SchemeGroupVersion.String(), Kind: "PeerAuthentication"},
			ObjectMeta: r.meta(w.name),
		}
		pa.Spec.Selector = cloneMsg(w.selector)
		pa.Spec.Mtls = cloneMsg(mtls)
		if len(ports) > 0 {
			pa.Spec.PortLevelMtls = make(map[uint32]*security.PeerAuthentication_MutualTLS, len(ports))
			for k, v := range ports {
				pa.Spec.PortLevelMtls[k] = cloneMsg(v)
			}
		}
		out = append(out, pa)
	}
	return out
}

var authzActions = map[meshv1.AuthorizationAction]security.AuthorizationPolicy_Action{
	"":       security.AuthorizationPolicy_ALLOW,
	"ALLOW":  security.AuthorizationPolicy_ALLOW,
	"DENY":   security.AuthorizationPolicy_DENY,
	"AUDIT":  security.AuthorizationPolicy_AUDIT,
	"CUSTOM": security.AuthorizationPolicy_CUSTOM,
}

// Principal is the SPIFFE identity Istio gives a service account, in the default trust
// domain.
func Principal(namespace, serviceAccount string) string {
	return "cluster.local/ns/" + namespace + "/sa/" + serviceAccount
}

func (r *policyRenderer) authorizationPolicies() []*securityv1.AuthorizationPolicy {
	a := r.p.Spec.Authorization
	if a == nil {
		return nil
	}
	action, ok := authzActions[a.Action]
	if !ok {
		r.e.invalid("spec.authorization.action", "unknown action %q", a.Action)
	}
	if a.DefaultDeny && action != security.AuthorizationPolicy_ALLOW {
		r.e.inconsistent("spec.authorization.defaultDeny", "only makes sense with action ALLOW, not %s", a.Action)
	}
	if len(a.Rules) == 0 && action == security.AuthorizationPolicy_ALLOW {
		r.e.warn("spec.authorization.rules", "an ALLOW policy without rules lets no request in")
	}
	var provider *security.AuthorizationPolicy_ExtensionProvider
	switch {
	case action == security.AuthorizationPolicy_CUSTOM && a.Provider == "":
		r.e.invalid("spec.authorization.provider", "action CUSTOM needs the name of an external authorizer")
	case action == security.AuthorizationPolicy_CUSTOM:
		provider = &security.AuthorizationPolicy_ExtensionProvider{Name: a.Provider}
		if r.opts.MeshConfigRead && !slices.Contains(r.opts.AuthorizationProviders, a.Provider) {
			r.e.warn("spec.authorization.provider", "%q is not among the mesh configuration's external authorizers (%s): istiod denies every request the rules match", a.Provider, listOrNone(r.opts.AuthorizationProviders))
		}
	case a.Provider != "":
		r.e.inconsistent("spec.authorization.provider", "names an external authorizer, which only action CUSTOM asks")
	}
	var rules []*security.Rule
	for i, rule := range a.Rules {
		rules = append(rules, r.authzRule(fmt.Sprintf("spec.authorization.rules[%d]", i), &rule))
	}
	var out []*securityv1.AuthorizationPolicy
	for _, w := range r.workloads() {
		ap := &securityv1.AuthorizationPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: securityv1.SchemeGroupVersion.String(), Kind: "AuthorizationPolicy"},
			ObjectMeta: r.meta(w.name),
		}
		ap.Spec.Selector = cloneMsg(w.selector)
		ap.Spec.Action = action
		if provider != nil {
			ap.Spec.ActionDetail = &security.AuthorizationPolicy_Provider{Provider: cloneMsg(provider)}
		}
		for _, rule := range rules {
			ap.Spec.Rules = append(ap.Spec.Rules, cloneMsg(rule))
		}
		out = append(out, ap)
		if a.DefaultDeny {
			// An ALLOW policy that matches nothing: with it, a request no other ALLOW
			// policy matches is denied.
			deny := &securityv1.AuthorizationPolicy{
				TypeMeta:   metav1.TypeMeta{APIVersion: securityv1.SchemeGroupVersion.String(), Kind: "AuthorizationPolicy"},
				ObjectMeta: r.meta(w.name + "-allow-nothing"),
			}
			deny.Spec.Selector = cloneMsg(w.selector)
			out = append(out, deny)
		}
	}
	return out
}

func (r *policyRenderer) authzRule(path string, rule *meshv1.AuthorizationRule) *security.Rule {
	out := &security.Rule{}
	if len(rule.From) == 0 && len(rule.To) == 0 && len(rule.When) == 0 {
		r.e.warn(path, "a rule without from, to or when matches every request")
	}
	for i, src := range rule.From {
		sp := fmt.Sprintf("%s.from[%d]", path, i)
		s := &security.Source{Namespaces: slices.Clone(src.Namespaces), NotNamespaces: slices.Clone(src.NotNamespaces)}
		s.Principals = r.principals(sp+".serviceAccounts", src.ServiceAccounts, src.Principals)
		s.NotPrincipals = r.principals(sp+".notServiceAccounts", src.NotServiceAccounts, src.NotPrincipals)
		s.RequestPrincipals = r.authzPaths(sp+".requestPrincipals", src.RequestPrincipals)
		s.NotRequestPrincipals = r.authzPaths(sp+".notRequestPrincipals", src.NotRequestPrincipals)
		if (len(s.RequestPrincipals) > 0 || len(s.NotRequestPrincipals) > 0) && r.p.Spec.Authentication == nil {
			r.e.warn(sp+".requestPrincipals", "no spec.authentication verifies a token: only RequestAuthentications of other authors can give a request a principal")
		}
		if len(s.Principals) == 0 && len(s.Namespaces) == 0 && len(s.NotPrincipals) == 0 && len(s.NotNamespaces) == 0 && len(s.RequestPrincipals) == 0 && len(s.NotRequestPrincipals) == 0 {
			r.e.invalid(sp, "name serviceAccounts, namespaces, principals or requestPrincipals (or their not* forms)")
		}
		out.From = append(out.From, &security.Rule_From{Source: s})
	}
	for i, op := range rule.To {
		opPath := fmt.Sprintf("%s.to[%d]", path, i)
		o := &security.Operation{
			Methods: slices.Clone(op.Methods), NotMethods: slices.Clone(op.NotMethods),
			Paths: r.authzPaths(opPath+".paths", op.Paths), NotPaths: r.authzPaths(opPath+".notPaths", op.NotPaths),
			Ports: r.authzPorts(opPath+".ports", op.Ports), NotPorts: r.authzPorts(opPath+".notPorts", op.NotPorts),
		}
		out.To = append(out.To, &security.Rule_To{Operation: o})
	}
	for i, c := range rule.When {
		cp := fmt.Sprintf("%s.when[%d]", path, i)
		if len(c.Values) == 0 && len(c.NotValues) == 0 {
			r.e.invalid(cp, "give values or notValues")
		}
		out.When = append(out.When, &security.Condition{Key: c.Key, Values: slices.Clone(c.Values), NotValues: slices.Clone(c.NotValues)})
	}
	return out
}

// principals are the SPIFFE identities of the service accounts ("namespace/name") and the
// principals given.
func (r *policyRenderer) principals(path string, serviceAccounts, principals []string) []string {
	out := appendUnique(nil, principals...)
	for j, sa := range serviceAccounts {
		ns, name, ok := strings.Cut(sa, "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			r.e.invalid(fmt.Sprintf("%s[%d]", path, j), "%q is not namespace/name", sa)
			continue
		}
		out = appendUnique(out, Principal(ns, name))
	}
	return out
}

// authzPaths checks paths as Istio matches them: a * wildcard only at the start or the end.
func (r *policyRenderer) authzPaths(path string, paths []string) []string {
	for j, pth := range paths {
		if inner := strings.Trim(pth, "*"); strings.Contains(inner, "*") || pth == "**" {
			r.e.invalid(fmt.Sprintf("%s[%d]", path, j), "%q: a * wildcard is only allowed at the start or the end", pth)
		}
	}
	return slices.Clone(paths)
}

func (r *policyRenderer) authzPorts(path string, ports []int32) []string {
	var out []string
	for j, port := range ports {
		if port < 1 || port > 65535 {
			r.e.invalid(fmt.Sprintf("%s[%d]", path, j), "%d is not a port", port)
		}
		out = append(out, strconv.Itoa(int(port)))
	}
	return out
}

// listOrNone lists names for a message, "none" when there are none.
func listOrNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// serviceDestinationRule is the Service's DestinationRule: resilience and client TLS.
func (r *policyRenderer) serviceDestinationRule() *networkingv1.DestinationRule {
	tp := policyTrafficPolicy(r.e, r.p, r.svc.Spec.Ports, !r.static)
	if proto.Equal(tp, &networking.TrafficPolicy{}) {
		return nil
	}
	dr := &networkingv1.DestinationRule{
		TypeMeta:   metav1.TypeMeta{APIVersion: networkingv1.SchemeGroupVersion.String(), Kind: "DestinationRule"},
		ObjectMeta: r.meta(r.svc.Name),
	}
	dr.Spec.Host = r.svc.Name
	dr.Spec.TrafficPolicy = tp
	// The gateway routing to the Service needs its traffic policy too.
	dr.Spec.ExportTo = exportTo(r.p.Namespace, []string{dr.Spec.Host}, r.gateways())
	return dr
}

// virtualService is the Service's VirtualService, named after the Service like the
// Canary's, so that a Canary taking the host over updates it in place.
func (r *policyRenderer) virtualService() *networkingv1.VirtualService {
	s := r.p.Spec
	var d routeDefaults
	if res := s.Resilience; res != nil {
		d.timeout = duration(r.e, "spec.resilience.timeout", res.Timeout)
		d.timeoutFrom = "spec.resilience.timeout"
		d.retries = retries(r.e, "spec.resilience.retries", res.Retries)
		d.retriesFrom = "spec.resilience.retries"
		checkRetryTimeout(r.e, d)
	}
	if len(s.Routes) == 0 && s.Ingress == nil && d.timeout == nil && d.retries == nil {
		return nil
	}
	vs := &networkingv1.VirtualService{
		TypeMeta:   metav1.TypeMeta{APIVersion: networkingv1.SchemeGroupVersion.String(), Kind: "VirtualService"},
		ObjectMeta: r.meta(r.svc.Name),
	}
	vs.Spec.Hosts = []string{r.svc.Name}
	if s.Ingress != nil {
		vs.Spec.Hosts = appendHosts(r.p.Namespace, vs.Spec.Hosts, s.Ingress.Hosts...)
		vs.Spec.Gateways = append(r.gateways(), "mesh")
	}
	vs.Spec.ExportTo = exportTo(r.p.Namespace, vs.Spec.Hosts, vs.Spec.Gateways)
	// A route to a multi-port Service needs a destination port, or Istio cannot tell which
	// is meant (istioctl analyze: IST0112), while mesh traffic must keep the port it was sent
	// to: a route without a port is then one route per Service port, each matching its port.
	// Gateway traffic arrives on the gateway's own port, none of the Service's: it goes to
	// the first port, by a route of its own.
	ports := r.svc.Spec.Ports
	multiPort := !r.static && len(ports) > 1
	// target is where a route sends, on a port of the Service: the Service, or the route's
	// own weighted destinations (the Service among them on that port); nothing for a
	// route that answers by itself.
	target := func(path string, rt *networking.HTTPRoute, port *int32, dests []*networking.HTTPRouteDestination) []*networking.HTTPRouteDestination {
		switch {
		case answersItself(rt):
			return nil
		case dests != nil:
			out := make([]*networking.HTTPRouteDestination, 0, len(dests))
			for _, d := range dests {
				d = cloneMsg(d)
				if d.Destination.Host == r.svc.Name && d.Destination.Port == nil {
					d.Destination.Port = r.destination(path+".port", port).Port
				}
				out = append(out, d)
			}
			return out
		}
		return []*networking.HTTPRouteDestination{{Destination: r.destination(path+".port", port)}}
	}
	add := func(path string, rt *networking.HTTPRoute, port *int32, dests []*networking.HTTPRouteDestination) {
		if port != nil || !multiPort {
			rt.Route = target(path, rt, port, dests)
			vs.Spec.Http = append(vs.Spec.Http, rt)
			return
		}
		if s.Ingress != nil {
			first := ports[0].Port
			gw := cloneMsg(rt)
			if gw.Name != "" {
				gw.Name += "-ingress"
			}
			gw.Match = onGateway(gw.Match, GatewayRef(r.p))
			gw.Route = target(path, gw, &first, dests)
			vs.Spec.Http = append(vs.Spec.Http, gw)
			rt.Match = onGateway(rt.Match, "mesh")
		}
		for _, sp := range ports {
			pr := cloneMsg(rt)
			if pr.Name != "" {
				pr.Name += "-" + strconv.Itoa(int(sp.Port))
			}
			pr.Match = onPort(pr.Match, uint32(sp.Port))
			pr.Route = target(path, pr, &sp.Port, dests)
			vs.Spec.Http = append(vs.Spec.Http, pr)
		}
	}
	catchAll := false
	named := map[string]int{}
	for i := range s.Routes {
		pr := &s.Routes[i]
		path := fmt.Sprintf("spec.routes[%d]", i)
		if j, dup := named[pr.Name]; dup && pr.Name != "" {
			r.e.inconsistent("spec.routes", "route name %q is used by routes %d and %d", pr.Name, j, i)
		}
		named[pr.Name] = i
		if catchAll {
			r.e.warn(path, "is never used: an earlier route matches every request")
		}
		rt := policyHTTPRoute(r.e, path, pr, d)
		rt.Match = singleMatch(r.e, path+".match", pr.Match).reqs
		add(path, rt, pr.Port, routeDestinations(r.e, path, pr.Destinations, nil))
		if pr.Match == nil {
			catchAll = true
		}
	}
	if !catchAll {
		add("", d.route(), nil, nil)
	}
	if multiPort && s.Ingress != nil {
		r.e.warn("spec.ingress", "Service %q has %d ports: traffic from the gateway on routes without a port goes to the first, %d", r.svc.Name, len(r.svc.Spec.Ports), r.svc.Spec.Ports[0].Port)
	}
	checkRouteNames(r.e, vs.Spec.Http)
	return vs
}

// gateways are the gateways the Service's routing is bound to besides the sidecars: the
// ingress Gateway, if any.
func (r *policyRenderer) gateways() []string {
	if r.p.Spec.Ingress == nil {
		return nil
	}
	return []string{GatewayRef(r.p)}
}

// onGateway restricts matches to one gateway ("mesh" for sidecars).
func onGateway(matches []*networking.HTTPMatchRequest, gateway string) []*networking.HTTPMatchRequest {
	return restrict(matches, func(m *networking.HTTPMatchRequest) { m.Gateways = []string{gateway} })
}

// onPort restricts matches to the requests sent to one port of the Service.
func onPort(matches []*networking.HTTPMatchRequest, port uint32) []*networking.HTTPMatchRequest {
	return restrict(matches, func(m *networking.HTTPMatchRequest) { m.Port = port })
}

// restrict returns copies of matches (one that matches everything when there are none)
// with set applied to each.
func restrict(matches []*networking.HTTPMatchRequest, set func(*networking.HTTPMatchRequest)) []*networking.HTTPMatchRequest {
	if len(matches) == 0 {
		matches = []*networking.HTTPMatchRequest{{}}
	}
	out := make([]*networking.HTTPMatchRequest, 0, len(matches))
	for _, m := range matches {
		m = cloneMsg(m)
		set(m)
		out = append(out, m)
	}
	return out
}

// destination is the Service, on the route's port when it has one, else on the Service's
// only port (virtualService gives every route to a multi-port Service a port).
func (r *policyRenderer) destination(path string, port *int32) *networking.Destination {
	d := &networking.Destination{Host: r.svc.Name}
	ports := r.svc.Spec.Ports
	switch {
	case port != nil:
		if !r.static && !slices.ContainsFunc(ports, func(sp corev1.ServicePort) bool { return sp.Port == *port }) {
			r.e.inconsistent(path, "%d is not a port of Service %q", *port, r.svc.Name)
		}
		d.Port = &networking.PortSelector{Number: uint32(*port)}
	case len(ports) == 1:
		d.Port = &networking.PortSelector{Number: uint32(ports[0].Port)}
	}
	return d
}

var resolutions = map[string]networking.ServiceEntry_Resolution{
	"":     networking.ServiceEntry_DNS,
	"DNS":  networking.ServiceEntry_DNS,
	"NONE": networking.ServiceEntry_NONE,
	// STATIC needs endpoints, which a MeshPolicy cannot give; see externalService.
	"STATIC": networking.ServiceEntry_STATIC,
}

// externalService renders a ServiceEntry for an external dependency and, with TLS
// origination, a DestinationRule per host, as in Istio's egress TLS origination task:
// the plain-HTTP port the workload calls maps (targetPort) onto the TLS port, and the
// DestinationRule originates TLS on it. A VirtualService rewriting the port, as older
// versions of the task did, is not used: with it, TLS the workload originates itself on
// the TLS port would be encrypted twice. Both are visible in the policy's namespace only
// (exportTo "."), so that policies of other namespaces cannot collide on a host.
func (r *policyRenderer) externalService(i int) (*networkingv1.ServiceEntry, []*networkingv1.DestinationRule) {
	x := &r.p.Spec.ExternalServices[i]
	path := fmt.Sprintf("spec.externalServices[%d]", i)
	res, ok := resolutions[x.Resolution]
	if !ok {
		r.e.invalid(path+".resolution", "unknown resolution %q", x.Resolution)
	}
	if res == networking.ServiceEntry_STATIC {
		r.e.inconsistent(path+".resolution", "STATIC needs endpoints, which a MeshPolicy cannot list: use DNS or NONE")
	}
	for j, h := range x.Hosts {
		if res == networking.ServiceEntry_DNS && strings.HasPrefix(h, "*") {
			r.e.inconsistent(fmt.Sprintf("%s.hosts[%d]", path, j), "%q: a wildcard host cannot be resolved by DNS; use resolution NONE", h)
		}
	}
	if len(x.Hosts) == 0 {
		r.e.invalid(path+".hosts", "at least one host is required")
	}
	se := &networkingv1.ServiceEntry{
		TypeMeta:   metav1.TypeMeta{APIVersion: networkingv1.SchemeGroupVersion.String(), Kind: "ServiceEntry"},
		ObjectMeta: r.meta(r.p.Name + "-" + x.Name),
	}
	se.Spec.Hosts = slices.Clone(x.Hosts)
	// MESH_EXTERNAL is the enum's zero: it vanishes from the JSON, and Istio reads the
	// missing location as MESH_EXTERNAL.
	se.Spec.Location = networking.ServiceEntry_MESH_EXTERNAL
	se.Spec.Resolution = res
	se.Spec.ExportTo = []string{"."}
	if x.EgressGateway != nil {
		// The egress gateway routes to the host too.
		se.Spec.ExportTo = appendUnique(se.Spec.ExportTo, EgressGatewayNamespace(x))
	}
	names := map[string]bool{}
	numbers := map[int32]bool{}
	for j, port := range x.Ports {
		pp := fmt.Sprintf("%s.ports[%d]", path, j)
		name := port.Name
		if name == "" {
			name = strings.ToLower(port.Protocol) + "-" + strconv.Itoa(int(port.Number))
		}
		if port.Number < 1 || port.Number > 65535 {
			r.e.invalid(pp+".number", "%d is not a port", port.Number)
		}
		if numbers[port.Number] {
			r.e.invalid(pp+".number", "port %d is listed twice", port.Number)
		}
		if names[name] {
			r.e.invalid(pp+".name", "port name %q is used twice", name)
		}
		names[name], numbers[port.Number] = true, true
		se.Spec.Ports = append(se.Spec.Ports, &networking.ServicePort{Number: uint32(port.Number), Protocol: port.Protocol, Name: name})
	}
	t := x.TLSOrigination
	if t == nil {
		return se, nil
	}
	tp := path + ".tlsOrigination"
	if res == networking.ServiceEntry_NONE {
		r.e.inconsistent(tp, "needs resolution DNS: with NONE the port mapping to the TLS port is not applied")
	}
	tlsIdx := slices.IndexFunc(x.Ports, func(p meshv1.ExternalPort) bool { return p.Protocol == "HTTPS" || p.Protocol == "TLS" })
	if tlsIdx < 0 {
		r.e.inconsistent(tp, "needs a port with protocol HTTPS or TLS to originate TLS to")
		return se, nil
	}
	tlsPort := uint32(x.Ports[tlsIdx].Number)
	if t.Port < 1 || t.Port > 65535 {
		r.e.invalid(tp+".port", "%d is not a port", t.Port)
		return se, nil
	}
	if uint32(t.Port) == tlsPort {
		r.e.inconsistent(tp+".port", "%d is the TLS port itself; name the plain HTTP port the workload calls", t.Port)
		return se, nil
	}
	plainIdx := slices.IndexFunc(x.Ports, func(p meshv1.ExternalPort) bool { return p.Number == t.Port })
	switch {
	case plainIdx < 0:
		name := "http-" + strconv.Itoa(int(t.Port))
		if names[name] {
			r.e.invalid(tp+".port", "the generated port name %q is already used", name)
		}
		se.Spec.Ports = append(se.Spec.Ports, &networking.ServicePort{Number: uint32(t.Port), Protocol: "HTTP", Name: name, TargetPort: tlsPort})
	case x.Ports[plainIdx].Protocol != "HTTP":
		r.e.inconsistent(tp+".port", "port %d has protocol %s; TLS origination needs the workload to speak HTTP to it", t.Port, x.Ports[plainIdx].Protocol)
	default:
		se.Spec.Ports[plainIdx].TargetPort = tlsPort
	}
	tls := r.originationTLS(tp, t)
	// A credential is read by the sidecars a DestinationRule selects (Istio reads a sidecar's
	// credentialName only with a workloadSelector): one DestinationRule per workload then.
	wls := []workload{{}}
	if t.CredentialName != "" {
		wls = r.workloads()
	}
	var drs []*networkingv1.DestinationRule
	for j, h := range x.Hosts {
		for _, wl := range wls {
			name := r.p.Name + "-" + x.Name
			if len(x.Hosts) > 1 {
				name += "-" + strconv.Itoa(j)
			}
			if wl.name != "" && wl.name != r.p.Name {
				name += strings.TrimPrefix(wl.name, r.p.Name)
			}
			hostTLS := cloneMsg(tls)
			hostTLS.Sni = t.SNI
			if hostTLS.Sni == "" {
				hostTLS.Sni = h
			}
			dr := &networkingv1.DestinationRule{
				TypeMeta:   metav1.TypeMeta{APIVersion: networkingv1.SchemeGroupVersion.String(), Kind: "DestinationRule"},
				ObjectMeta: r.meta(name),
			}
			dr.Spec.Host = h
			dr.Spec.ExportTo = []string{"."}
			dr.Spec.WorkloadSelector = wl.selector
			dr.Spec.TrafficPolicy = &networking.TrafficPolicy{
				PortLevelSettings: []*networking.TrafficPolicy_PortTrafficPolicy{{
					Port: &networking.PortSelector{Number: uint32(t.Port)},
					Tls:  hostTLS,
				}},
			}
			drs = append(drs, dr)
		}
	}
	return se, drs
}

// systemRoots is the CA certificates value that makes the sidecar verify a server with its
// operating system's roots: what istiod configures for an empty caCertificates, written
// out so that the verification is explicit (istioctl analyze warns on an empty one, IST0129).
const systemRoots = "system"

// originationTLS is how a sidecar originates TLS to an external host: it always verifies
// the server's certificate, against the CA certificates the policy names or the system
// roots, unless the policy opts out with insecureSkipVerify (a warning).
func (r *policyRenderer) originationTLS(path string, t *meshv1.TLSOrigination) *networking.ClientTLSSettings {
	tls := &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_SIMPLE}
	switch {
	case t.CACertificates != "" && t.CredentialName != "":
		r.e.invalid(path+".credentialName", "caCertificates and credentialName are two sources of the CA certificates: set one")
	case t.InsecureSkipVerify && (t.CACertificates != "" || t.CredentialName != ""):
		r.e.invalid(path+".insecureSkipVerify", "turns verification off: it cannot be set with caCertificates or credentialName")
	case t.InsecureSkipVerify:
		tls.InsecureSkipVerify = wrapperspb.Bool(true)
		r.e.warn(path+".insecureSkipVerify", "the sidecar does not verify the external host's certificate: its traffic can be intercepted")
	case t.CredentialName != "":
		tls.CredentialName = t.CredentialName
	case t.CACertificates != "":
		tls.CaCertificates = t.CACertificates
	default:
		tls.CaCertificates = systemRoots
	}
	return tls
}

func (r *policyRenderer) ingressHosts() []string {
	out := make([]string, 0, len(r.p.Spec.Ingress.Hosts))
	for _, h := range r.p.Spec.Ingress.Hosts {
		// Only VirtualServices of the policy's namespace may bind these hosts.
		out = append(out, r.p.Namespace+"/"+h)
	}
	return out
}

func (r *policyRenderer) gateway() *networkingv1.Gateway {
	in := r.p.Spec.Ingress
	if in == nil {
		return nil
	}
	if len(in.Gateway.Selector) == 0 {
		r.e.invalid("spec.ingress.gateway.selector", "a gateway selector is required")
	}
	if len(in.Hosts) == 0 {
		r.e.invalid("spec.ingress.hosts", "at least one host is required")
	}
	g := &networkingv1.Gateway{
		TypeMeta: metav1.TypeMeta{APIVersion: networkingv1.SchemeGroupVersion.String(), Kind: "Gateway"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      GatewayName(r.p),
			Namespace: GatewayNamespace(r.p),
			Labels:    OwnerLabels(KindMeshPolicy, r.p.Namespace, r.p.Name),
		},
	}
	g.Spec.Selector = copyMap(in.Gateway.Selector)
	https := in.TLS != nil && r.opts.CertificateReady
	plain := &networking.Server{
		Port:  &networking.Port{Number: 80, Name: "http", Protocol: "HTTP"},
		Hosts: r.ingressHosts(),
	}
	if https && in.TLS.HTTPSRedirect {
		plain.Tls = &networking.ServerTLSSettings{HttpsRedirect: true}
	}
	g.Spec.Servers = append(g.Spec.Servers, plain)
	if https {
		g.Spec.Servers = append(g.Spec.Servers, &networking.Server{
			Port:  &networking.Port{Number: 443, Name: "https", Protocol: "HTTPS"},
			Hosts: r.ingressHosts(),
			Tls: &networking.ServerTLSSettings{
				Mode:           networking.ServerTLSSettings_SIMPLE,
				CredentialName: CertificateSecretName(r.p),
			},
		})
	}
	return g
}

func (r *policyRenderer) certificate() *certmanagerv1.Certificate {
	in := r.p.Spec.Ingress
	if in == nil || in.TLS == nil {
		return nil
	}
	ref := in.TLS.IssuerRef
	if ref.Name == "" {
		r.e.invalid("spec.ingress.tls.issuerRef.name", "is required")
	}
	// No cert-manager webhook defaults these on apply: set them explicitly.
	if ref.Kind == "" {
		ref.Kind = "Issuer"
	}
	if ref.Group == "" {
		ref.Group = "cert-manager.io"
	}
	if ref.Kind == "Issuer" && GatewayNamespace(r.p) != r.p.Namespace {
		r.e.warn("spec.ingress.tls.issuerRef", "an Issuer is namespaced: %q must exist in the gateway's namespace %q", ref.Name, GatewayNamespace(r.p))
	}
	return &certmanagerv1.Certificate{
		TypeMeta: metav1.TypeMeta{APIVersion: certmanagerv1.SchemeGroupVersion.String(), Kind: "Certificate"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      GatewayName(r.p),
			Namespace: GatewayNamespace(r.p),
			Labels:    OwnerLabels(KindMeshPolicy, r.p.Namespace, r.p.Name),
		},
		Spec: certmanagerv1.CertificateSpec{
			SecretName: CertificateSecretName(r.p),
			DNSNames:   slices.Clone(in.Hosts),
			IssuerRef:  cmmeta.IssuerReference{Name: ref.Name, Kind: ref.Kind, Group: ref.Group},
		},
	}
}

// tracing renders the policy's tracing: provider, sampling and custom tags.
func (r *policyRenderer) tracing(t *meshv1.Tracing) *telemetry.Tracing {
	checkPercentage(r.e, "spec.telemetry.tracing.samplingPercentage", t.SamplingPercentage)
	out := &telemetry.Tracing{RandomSamplingPercentage: wrapperspb.Double(t.SamplingPercentage)}
	if t.Provider != "" {
		out.Providers = []*telemetry.ProviderRef{{Name: t.Provider}}
		if r.opts.MeshConfigRead && !slices.Contains(r.opts.TracingProviders, t.Provider) {
			r.e.warn("spec.telemetry.tracing.provider", "%q is not among the mesh configuration's extensionProviders (%s): istiod sends this service's spans nowhere until it is added", t.Provider, listOrNone(r.opts.TracingProviders))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(t.CustomTags)) {
		tag, field := t.CustomTags[name], "spec.telemetry.tracing.customTags["+name+"]"
		if out.CustomTags == nil {
			out.CustomTags = map[string]*telemetry.Tracing_CustomTag{}
		}
		switch {
		case tag.Literal != nil:
			out.CustomTags[name] = &telemetry.Tracing_CustomTag{Type: &telemetry.Tracing_CustomTag_Literal{Literal: &telemetry.Tracing_Literal{Value: *tag.Literal}}}
		case tag.Header != nil:
			out.CustomTags[name] = &telemetry.Tracing_CustomTag{Type: &telemetry.Tracing_CustomTag_Header{Header: &telemetry.Tracing_RequestHeader{Name: tag.Header.Name, DefaultValue: tag.Header.DefaultValue}}}
		case tag.Environment != nil:
			out.CustomTags[name] = &telemetry.Tracing_CustomTag{Type: &telemetry.Tracing_CustomTag_Environment{Environment: &telemetry.Tracing_Environment{Name: tag.Environment.Name, DefaultValue: tag.Environment.DefaultValue}}}
		default:
			r.e.invalid(field, "needs one of literal, header and environment")
		}
	}
	return out
}

func (r *policyRenderer) telemetries() []*telemetryv1.Telemetry {
	t := r.p.Spec.Telemetry
	if t == nil || (t.Tracing == nil && t.AccessLogging == nil) {
		return nil
	}
	var spec telemetry.Telemetry
	if t.Tracing != nil {
		spec.Tracing = []*telemetry.Tracing{r.tracing(t.Tracing)}
	}
	if t.AccessLogging != nil {
		if *t.AccessLogging {
			spec.AccessLogging = []*telemetry.AccessLogging{{Providers: []*telemetry.ProviderRef{{Name: "envoy"}}}}
		} else {
			spec.AccessLogging = []*telemetry.AccessLogging{{Disabled: wrapperspb.Bool(true)}}
		}
	}
	var out []*telemetryv1.Telemetry
	for _, w := range r.workloads() {
		tm := &telemetryv1.Telemetry{
			TypeMeta:   metav1.TypeMeta{APIVersion: telemetryv1.SchemeGroupVersion.String(), Kind: "Telemetry"},
			ObjectMeta: r.meta(w.name),
		}
		tm.Spec.Selector = cloneMsg(w.selector)
		for _, x := range spec.Tracing {
			tm.Spec.Tracing = append(tm.Spec.Tracing, cloneMsg(x))
		}
		for _, x := range spec.AccessLogging {
			tm.Spec.AccessLogging = append(tm.Spec.AccessLogging, cloneMsg(x))
		}
		out = append(out, tm)
	}
	return out
}
