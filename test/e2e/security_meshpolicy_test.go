package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/test/testenv"
)

// tenant is one namespace and a client acting as its editor (tenantClient: a
// ServiceAccount bound to the built-in edit ClusterRole in that namespace only, into which
// canopy's editor role is aggregated). Everything it writes, the apiserver's RBAC judges.
type tenant struct {
	ns string
	c  client.Client
}

// newTenant makes namespace name (a fresh one when name is empty) and its editor.
func newTenant(t *testing.T, name string) tenant {
	t.Helper()
	ctx := t.Context()
	if name == "" {
		name = env.CreateNamespace(t)
	} else {
		if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = env.Client.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
		})
	}
	c := tenantClient(t, name)
	return tenant{ns: name, c: c}
}

func (tn tenant) create(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := tn.c.Create(t.Context(), o); err != nil {
			t.Fatalf("the editor of %s creating %T %s: %v", tn.ns, o, o.GetName(), err)
		}
	}
}

func webService(ns, name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
}

func ingressPolicy(ns, name, gwNS, issuer string, hosts ...string) *meshv1.MeshPolicy {
	p := &meshv1.MeshPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: meshv1.MeshPolicySpec{
			TargetRef: meshv1.ServiceRef{Kind: "Service", Name: "web"},
			Ingress: &meshv1.Ingress{
				Gateway: meshv1.IngressGateway{Namespace: gwNS, Selector: map[string]string{"istio": "ingressgateway"}},
				Hosts:   hosts,
			},
		},
	}
	if issuer != "" {
		p.Spec.Ingress.TLS = &meshv1.IngressTLS{IssuerRef: meshv1.IssuerRef{Kind: "ClusterIssuer", Name: issuer}}
	}
	return p
}

// outsideObjects lists the Gateways and Certificates a namespace's MeshPolicies own
// outside it, by their owner labels, across the cluster.
func outsideObjects(t *testing.T, ns string) []string {
	t.Helper()
	var out []string
	for _, list := range []client.ObjectList{&istionetv1.GatewayList{}, &cmv1.CertificateList{}} {
		if err := env.Client.List(t.Context(), list, client.MatchingLabels{meshv1.LabelOwnerNamespace: ns}); err != nil {
			t.Fatal(err)
		}
		items, _ := meta.ExtractList(list)
		for _, it := range items {
			if o := it.(client.Object); o.GetNamespace() != ns {
				out = append(out, fmt.Sprintf("%T %s/%s", o, o.GetNamespace(), o.GetName()))
			}
		}
	}
	return out
}

// A namespace editor asks canopy for a Gateway on a shared gateway's namespace, a
// certificate for another's name from a ClusterIssuer, and an external host: with the
// operator's defaults every claim is refused, the policy names each field and the flag
// that would allow it (status and an event), and nothing is written outside the namespace.
// Allowed by the operator, the same policy is applied; when the allowance is taken back,
// what it put outside its namespace is removed.
func TestNamespaceEditorCannotClaimBeyondItsNamespace(t *testing.T) {
	testenv.SkipIfShort(t)
	gwNS := env.CreateNamespace(t) // stands for istio-system
	tn := newTenant(t, "")
	issuer := "e2e-ca-" + tn.ns
	op := startOperator(t, manager.Options{})

	p := ingressPolicy(tn.ns, "web", gwNS, issuer, "bank.example.com")
	p.Spec.ExternalServices = []meshv1.ExternalService{{Name: "api", Hosts: []string{"api.bank.example.com"}, Ports: []meshv1.ExternalPort{{Number: 443, Protocol: "TLS"}}}}
	tn.create(t, webService(tn.ns, "web"), p)

	fields := []string{"spec.ingress.gateway.namespace", "spec.ingress.hosts[0]", "spec.ingress.tls.issuerRef.name", "spec.externalServices[0].hosts[0]"}
	refused := func(p *meshv1.MeshPolicy) error {
		if err := expectPolicyCondition(p, meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonNotAllowed, fields...); err != nil {
			return err
		}
		return expectPolicyCondition(p, meshv1.ConditionStalled, metav1.ConditionTrue, meshv1.ReasonNotAllowed, "--allowed-gateway-namespaces", "--allowed-cluster-issuers", "--allowed-hosts", "--allowed-external-hosts")
	}
	waitPolicy(t, tn.ns, "web", refused)
	expectPolicyEvent(t, tn.ns, "web", meshv1.ReasonNotAllowed, fields...)
	if got := outsideObjects(t, tn.ns); len(got) > 0 {
		t.Fatalf("a refused policy wrote outside its namespace: %v", got)
	}
	for _, list := range []client.ObjectList{&istionetv1.GatewayList{}, &cmv1.CertificateList{}} {
		if err := env.Client.List(t.Context(), list, client.InNamespace(gwNS)); err != nil {
			t.Fatal(err)
		}
		if meta.LenList(list) != 0 {
			t.Fatalf("the gateway's namespace holds %T of %d items", list, meta.LenList(list))
		}
	}

	// The operator allows it: the Gateway and Certificate are written in the gateway's
	// namespace, and the routing is exported to the namespaces that route it only.
	op.stop(t)
	op = startOperator(t, manager.Options{
		AllowedGatewayNamespaces: gwNS, AllowedClusterIssuers: issuer,
		AllowedHosts: tn.ns + ":bank.example.com", AllowedExternalHosts: tn.ns + ":*.bank.example.com",
	})
	p = waitPolicy(t, tn.ns, "web", func(p *meshv1.MeshPolicy) error {
		if len(p.Status.Objects) == 0 || len(outsideObjects(t, tn.ns)) != 2 {
			return fmt.Errorf("objects %+v", p.Status.Objects)
		}
		return nil
	})
	vs := &istionetv1.VirtualService{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: tn.ns, Name: "web"}, vs); err != nil {
		t.Fatal(err)
	}
	if want := []string{".", gwNS}; !slices.Equal(vs.Spec.ExportTo, want) {
		t.Errorf("VirtualService exportTo %v, want %v", vs.Spec.ExportTo, want)
	}

	// Taken back: the Gateway and Certificate go, the policy says why.
	op.stop(t)
	startOperator(t, manager.Options{AllowedHosts: tn.ns + ":bank.example.com", AllowedExternalHosts: tn.ns + ":*.bank.example.com"})
	waitPolicy(t, tn.ns, "web", func(p *meshv1.MeshPolicy) error {
		if got := outsideObjects(t, tn.ns); len(got) > 0 {
			return fmt.Errorf("still outside the namespace: %v", got)
		}
		return expectPolicyCondition(p, meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonNotAllowed, "spec.ingress.gateway.namespace", "spec.ingress.tls.issuerRef.name")
	})
}

// Namespace a's policy b-c and namespace a-b's policy c used to share the Gateway
// "a-b-c-ingress": the second overwrote the first's. They now get one each; and canopy
// does not apply over an object of that name that is not the policy's, even one shaped
// like its own.
func TestMeshPolicyGatewaysOfTwoNamespacesDoNotCollide(t *testing.T) {
	testenv.SkipIfShort(t)
	gwNS := env.CreateNamespace(t)
	a := newTenant(t, "")
	ab := newTenant(t, a.ns+"-b")
	startOperator(t, manager.Options{AllowedGatewayNamespaces: gwNS, AllowedHosts: "*.{namespace}.example.com"})
	pa := ingressPolicy(a.ns, "b-c", gwNS, "", "www."+a.ns+".example.com")
	pab := ingressPolicy(ab.ns, "c", gwNS, "", "www."+ab.ns+".example.com")
	a.create(t, webService(a.ns, "web"), pa)
	ab.create(t, webService(ab.ns, "web"), pab)
	for _, p := range []*meshv1.MeshPolicy{pa, pab} {
		waitPolicy(t, p.Namespace, p.Name, func(p *meshv1.MeshPolicy) error {
			return expectPolicyCondition(p, meshv1.ConditionReady, metav1.ConditionTrue, meshv1.ReasonReconciled)
		})
	}
	gws := &istionetv1.GatewayList{}
	if err := env.Client.List(t.Context(), gws, client.InNamespace(gwNS)); err != nil {
		t.Fatal(err)
	}
	owners := map[string]string{}
	for _, g := range gws.Items {
		owners[g.Labels[meshv1.LabelOwnerNamespace]+"/"+g.Labels[meshv1.LabelOwnerName]] = g.Name + " " + strings.Join(g.Spec.Servers[0].Hosts, ",")
	}
	want := map[string]string{
		a.ns + "/b-c": render.GatewayName(pa) + " " + a.ns + "/www." + a.ns + ".example.com",
		ab.ns + "/c":  render.GatewayName(pab) + " " + ab.ns + "/www." + ab.ns + ".example.com",
	}
	if len(gws.Items) != 2 || owners[a.ns+"/b-c"] != want[a.ns+"/b-c"] || owners[ab.ns+"/c"] != want[ab.ns+"/c"] {
		t.Fatalf("Gateways in %s by owner: %v, want %v", gwNS, owners, want)
	}

	// An object of the name a policy generates that another owner labelled (here the
	// cluster's admin, for another namespace) is left alone, and the policy says so.
	pd := ingressPolicy(a.ns, "d", gwNS, "", "shop."+a.ns+".example.com")
	foreign := &istionetv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: gwNS, Name: render.GatewayName(pd),
		Labels: render.OwnerLabels(render.KindMeshPolicy, "payments", "d")}}
	foreign.Spec.Selector = map[string]string{"istio": "ingressgateway"}
	// A server, or istiod's webhook refuses the Gateway.
	foreign.Spec.Servers = []*networkingv1alpha3.Server{{
		Port:  &networkingv1alpha3.Port{Number: 80, Name: "http", Protocol: "HTTP"},
		Hosts: []string{"payments/shop.payments.example.com"},
	}}
	if err := env.Client.Create(t.Context(), foreign); err != nil {
		t.Fatal(err)
	}
	before := foreign.ResourceVersion
	pd.Spec.TargetRef.Name = "shop"
	a.create(t, webService(a.ns, "shop"), pd)
	waitPolicy(t, a.ns, "d", func(p *meshv1.MeshPolicy) error {
		return expectPolicyCondition(p, meshv1.ConditionStalled, metav1.ConditionTrue, meshv1.ReasonConflict,
			"Gateway "+gwNS+"/"+foreign.Name, "MeshPolicy payments/d", "does not apply over another owner's object")
	})
	if err := env.Client.Get(t.Context(), client.ObjectKeyFromObject(foreign), foreign); err != nil {
		t.Fatal(err)
	}
	if foreign.ResourceVersion != before || len(foreign.Spec.Servers) != 1 || foreign.Spec.Servers[0].Hosts[0] != "payments/shop.payments.example.com" {
		t.Fatalf("the other owner's Gateway was written: %v", foreign.Spec.String())
	}
}

// A namespace editor's Canary routes only what the namespace may claim: another
// namespace's host, every Service of the mesh (*.svc.cluster.local) and another namespace's
// gateway are refused (Stalled, naming each field), and no VirtualService is written. Fixed,
// its routing names only the namespace's own Service and is visible to the whole mesh, as
// the Service is (routing of any other host stays in the namespace: TestExportTo).
func TestCanaryRoutesStayInTheirNamespace(t *testing.T) {
	testenv.SkipIfShort(t)
	tn := newTenant(t, "")
	startOperator(t, manager.Options{Analyzer: imageAnalyzer{env.Client}})
	c := newCanary(tn.ns, "reviews", 10, 30)
	c.Spec.Service.Hosts = []string{"ratings.bookinfo.svc.cluster.local", "*.svc.cluster.local"}
	c.Spec.Service.Gateways = []string{"istio-system/public"}
	tn.create(t, newDeployment(tn.ns, "reviews", "bookinfo/reviews:v1", 1), c)

	testenv.Eventually(t, 2*time.Minute, func() error {
		got := getCanary(t, tn.ns, "reviews")
		cond := meta.FindStatusCondition(got.Status.Conditions, meshv1.ConditionStalled)
		if cond == nil || cond.Status != metav1.ConditionTrue || cond.Reason != meshv1.ReasonNotAllowed {
			return fmt.Errorf("Stalled condition %+v, want True with reason %s", cond, meshv1.ReasonNotAllowed)
		}
		for _, f := range []string{"spec.service.hosts[0]", "spec.service.hosts[1]", "spec.service.gateways[0]", `"*.svc.cluster.local" is not a name of this namespace's Services`} {
			if !strings.Contains(cond.Message, f) {
				return fmt.Errorf("Stalled message %q does not name %s", cond.Message, f)
			}
		}
		return nil
	})
	vs := &istionetv1.VirtualService{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: tn.ns, Name: "reviews"}, vs); !apierrors.IsNotFound(err) {
		t.Fatalf("a VirtualService was written for a refused Canary (%v): %v", err, vs.Spec.String())
	}

	// The editor names its own Service's host instead.
	latest := getCanary(t, tn.ns, "reviews")
	latest.Spec.Service.Hosts = []string{"reviews." + tn.ns + ".svc.cluster.local"}
	latest.Spec.Service.Gateways = nil
	if err := tn.c.Update(t.Context(), latest); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, tn.ns, "reviews", meshv1.PhaseInitialized)
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: tn.ns, Name: "reviews"}, vs); err != nil {
		t.Fatal(err)
	}
	// Routing of the namespace's own Services only serves their callers in every namespace:
	// it is visible to the whole mesh, as the Services are.
	// The FQDN is the apex's own host, which the VirtualService lists once, spelled out.
	if len(vs.Spec.ExportTo) != 0 || !slices.Equal(vs.Spec.Hosts, []string{"reviews." + tn.ns + ".svc.cluster.local"}) {
		t.Fatalf("VirtualService exportTo %v, hosts %v", vs.Spec.ExportTo, vs.Spec.Hosts)
	}
	for _, name := range []string{"reviews-primary", "reviews-canary"} {
		dr := &istionetv1.DestinationRule{}
		if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: tn.ns, Name: name}, dr); err != nil {
			t.Fatal(err)
		}
		if len(dr.Spec.ExportTo) != 0 {
			t.Errorf("DestinationRule %s exportTo %v", name, dr.Spec.ExportTo)
		}
	}
}

// expectPolicyEvent waits for an event (events.k8s.io) about the MeshPolicy with reason
// whose note names each of contains.
func expectPolicyEvent(t *testing.T, ns, name, reason string, contains ...string) {
	t.Helper()
	testenv.Eventually(t, time.Minute, func() error {
		list := &eventsv1.EventList{}
		if err := env.Client.List(t.Context(), list, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.Regarding.Kind != "MeshPolicy" || e.Regarding.Name != name || e.Reason != reason {
				continue
			}
			missing := slices.DeleteFunc(slices.Clone(contains), func(s string) bool { return strings.Contains(e.Note, s) })
			if len(missing) == 0 {
				return nil
			}
			return fmt.Errorf("event %q does not name %v", e.Note, missing)
		}
		return fmt.Errorf("no %s event about MeshPolicy %s/%s", reason, ns, name)
	})
}

// waitReadyWithOneOutside waits until the policy is applied with one object (what) outside
// its namespace.
func waitReadyWithOneOutside(t *testing.T, ns, name, what string) {
	t.Helper()
	waitPolicy(t, ns, name, func(p *meshv1.MeshPolicy) error {
		if err := expectPolicyCondition(p, meshv1.ConditionReady, metav1.ConditionTrue, meshv1.ReasonReconciled); err != nil {
			return err
		}
		if got := outsideObjects(t, ns); len(got) != 1 {
			return fmt.Errorf("outside the namespace: %v, want %s", got, what)
		}
		return nil
	})
}

// A namespace editor sends an external host's traffic through an egress gateway in another
// namespace (istio-system on a real cluster), where canopy would write a Gateway and to
// which it would export the host's routing, and picks the ingress gateway's pods as the
// egress gateway's, which would publish the external host on the ingress. The host is
// allowed; the gateway's namespace is not: the policy is refused naming the field and
// --allowed-gateway-namespaces, and nothing is written there. Once the operator allows the
// namespace, the selector is still refused; with Istio's egress gateway (the default
// selector) the Gateway is written there, the routing exported to it only (istioctl
// analyze judges both namespaces when the test ends).
func TestNamespaceEditorCannotUseAnEgressGatewayElsewhere(t *testing.T) {
	testenv.SkipIfShort(t)
	gwNS := env.CreateNamespace(t) // stands for istio-system
	labels := map[string]string{"istio": "egressgateway"}
	gw := newDeployment(gwNS, "istio-egressgateway", "istio/proxyv2", 1)
	gw.Spec.Selector.MatchLabels, gw.Spec.Template.Labels = labels, labels
	for _, o := range []client.Object{gw, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: gwNS, Name: "istio-egressgateway"},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}} {
		if err := env.Client.Create(t.Context(), o); err != nil {
			t.Fatal(err)
		}
	}
	tn := newTenant(t, "")
	hosts := tn.ns + ":news.example.com"
	op := startOperator(t, manager.Options{AllowedExternalHosts: hosts})

	p := &meshv1.MeshPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: tn.ns, Name: "web"}}
	p.Spec.TargetRef.Name = "web"
	p.Spec.ExternalServices = []meshv1.ExternalService{{
		Name: "news", Hosts: []string{"news.example.com"}, Ports: []meshv1.ExternalPort{{Number: 80, Protocol: "HTTP"}},
		EgressGateway: &meshv1.EgressGateway{Namespace: gwNS, Selector: map[string]string{"istio": "ingressgateway"}},
	}}
	tn.create(t, webService(tn.ns, "web"), p)
	const nsField, selField = "spec.externalServices[0].egressGateway.namespace", "spec.externalServices[0].egressGateway.selector"
	nothingThere := func() {
		t.Helper()
		if got := outsideObjects(t, tn.ns); len(got) > 0 {
			t.Fatalf("a refused policy wrote outside its namespace: %v", got)
		}
		gws := &istionetv1.GatewayList{}
		if err := env.Client.List(t.Context(), gws, client.InNamespace(gwNS)); err != nil {
			t.Fatal(err)
		}
		if len(gws.Items) != 0 {
			t.Fatalf("the gateway's namespace holds %d Gateways", len(gws.Items))
		}
	}
	waitPolicy(t, tn.ns, "web", func(p *meshv1.MeshPolicy) error {
		if err := expectPolicyCondition(p, meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonNotAllowed, nsField, selField); err != nil {
			return err
		}
		return expectPolicyCondition(p, meshv1.ConditionStalled, metav1.ConditionTrue, meshv1.ReasonNotAllowed, "--allowed-gateway-namespaces")
	})
	expectPolicyEvent(t, tn.ns, "web", meshv1.ReasonNotAllowed, nsField)
	nothingThere()

	// The operator allows the namespace: the ingress gateway's pods are still refused.
	op.stop(t)
	startOperator(t, manager.Options{AllowedExternalHosts: hosts, AllowedGatewayNamespaces: gwNS})
	waitPolicy(t, tn.ns, "web", func(p *meshv1.MeshPolicy) error {
		if c := meta.FindStatusCondition(p.Status.Conditions, meshv1.ConditionReady); c != nil && strings.Contains(c.Message, nsField) {
			return fmt.Errorf("still refused for the namespace: %s", c.Message)
		}
		return expectPolicyCondition(p, meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonNotAllowed, selField)
	})
	nothingThere()

	// Istio's egress gateway: the Gateway is written in its namespace.
	live := waitPolicy(t, tn.ns, "web", func(*meshv1.MeshPolicy) error { return nil })
	live.Spec.ExternalServices[0].EgressGateway.Selector = nil
	if err := tn.c.Update(t.Context(), live); err != nil {
		t.Fatalf("the editor of %s updating the policy: %v", tn.ns, err)
	}
	waitReadyWithOneOutside(t, tn.ns, "web", "the egress Gateway")
	vs := &istionetv1.VirtualService{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: tn.ns, Name: "web-news-egress"}, vs); err != nil {
		t.Fatal(err)
	}
	if want := []string{".", gwNS}; !slices.Equal(vs.Spec.ExportTo, want) {
		t.Errorf("VirtualService exportTo %v, want %v", vs.Spec.ExportTo, want)
	}
}

// A namespace editor puts its ingress Gateway in the shared gateway namespace the operator
// allows, but selects the egress gateway's pods, where Istio would open the tenant's host
// too: the policy is refused naming the selector and --allowed-ingress-selectors, and
// nothing is written there. With Istio's ingress gateway's label the Gateway is written.
func TestNamespaceEditorCannotPutAnIngressOnOtherPods(t *testing.T) {
	testenv.SkipIfShort(t)
	gwNS := env.CreateNamespace(t) // stands for istio-system
	for _, role := range []string{"ingressgateway", "egressgateway"} {
		labels := map[string]string{"istio": role}
		gw := newDeployment(gwNS, "istio-"+role, "istio/proxyv2", 1)
		gw.Spec.Selector.MatchLabels, gw.Spec.Template.Labels = labels, labels
		for _, o := range []client.Object{gw, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: gwNS, Name: "istio-" + role},
			Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
		}} {
			if err := env.Client.Create(t.Context(), o); err != nil {
				t.Fatal(err)
			}
		}
	}
	tn := newTenant(t, "")
	startOperator(t, manager.Options{AllowedGatewayNamespaces: gwNS})

	host := "web." + tn.ns + ".svc.cluster.local"
	p := &meshv1.MeshPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: tn.ns, Name: "web"}}
	p.Spec.TargetRef.Name = "web"
	p.Spec.Ingress = &meshv1.Ingress{
		Gateway: meshv1.IngressGateway{Namespace: gwNS, Selector: map[string]string{"istio": "egressgateway"}},
		Hosts:   []string{host},
	}
	tn.create(t, webService(tn.ns, "web"), p)
	const selField = "spec.ingress.gateway.selector"
	waitPolicy(t, tn.ns, "web", func(p *meshv1.MeshPolicy) error {
		if err := expectPolicyCondition(p, meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonNotAllowed, selField); err != nil {
			return err
		}
		return expectPolicyCondition(p, meshv1.ConditionStalled, metav1.ConditionTrue, meshv1.ReasonNotAllowed, "--allowed-ingress-selectors: istio=ingressgateway")
	})
	expectPolicyEvent(t, tn.ns, "web", meshv1.ReasonNotAllowed, selField)
	if got := outsideObjects(t, tn.ns); len(got) > 0 {
		t.Fatalf("a refused policy wrote outside its namespace: %v", got)
	}

	// Istio's ingress gateway: the Gateway is written in its namespace, for those pods.
	live := waitPolicy(t, tn.ns, "web", func(*meshv1.MeshPolicy) error { return nil })
	live.Spec.Ingress.Gateway.Selector = map[string]string{"istio": "ingressgateway"}
	if err := tn.c.Update(t.Context(), live); err != nil {
		t.Fatalf("the editor of %s updating the policy: %v", tn.ns, err)
	}
	waitReadyWithOneOutside(t, tn.ns, "web", "the ingress Gateway")
	gws := &istionetv1.GatewayList{}
	if err := env.Client.List(t.Context(), gws, client.InNamespace(gwNS)); err != nil {
		t.Fatal(err)
	}
	if len(gws.Items) != 1 || gws.Items[0].Spec.GetSelector()["istio"] != "ingressgateway" {
		t.Errorf("Gateways in %s: %v, want one for the ingress gateway", gwNS, gws.Items)
	}
}
