package controllers

import (
	"testing"

	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	istiosecv1 "istio.io/client-go/pkg/apis/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/render"
)

// TestMeshPolicyDoesNotApplyOverAnotherOwnersObject: in its namespace a policy takes over
// an object the namespace wrote itself (no canopy labels), as it always did, but not one
// another policy generated; outside it, only objects carrying its own owner labels.
func TestMeshPolicyDoesNotApplyOverAnotherOwnersObject(t *testing.T) {
	h := newPolicyHarness(t)

	// The namespace's own VirtualService named after the Service: taken over.
	mine := &istionetv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "web"}}
	mine.Spec.Hosts = []string{"web"}
	h.create(service("web", 8080), mine, simplePolicy("web", "web"))
	expectReady(t, h.settlePolicy("web"))
	h.mustGet(h.ns, "web", mine)
	if mine.Labels[meshv1.LabelOwnerName] != "web" {
		t.Fatalf("the namespace's own VirtualService was not taken over: labels %v", mine.Labels)
	}

	// Policy "api" renders a PeerAuthentication "api"; one of that name belongs to policy
	// "legacy" of the namespace: left alone, and the policy says whose it is.
	other := &istiosecv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "api",
		Labels: render.OwnerLabels(render.KindMeshPolicy, h.ns, "legacy")}}
	h.create(service("api", 8080), other, simplePolicy("api", "api"))
	rv := other.ResourceVersion
	p := h.settlePolicy("api")
	expectStalled(t, p, meshv1.ReasonConflict, "PeerAuthentication "+h.ns+"/api", "MeshPolicy "+h.ns+"/legacy", "does not apply over another owner's object")
	if s := objectState(p, "PeerAuthentication", h.ns, "api"); s == nil || s.State != stateFailed {
		t.Errorf("status.objects says %+v of the PeerAuthentication", s)
	}
	h.mustGet(h.ns, "api", other)
	if other.ResourceVersion != rv || other.Spec.GetMtls() != nil {
		t.Fatalf("the other policy's PeerAuthentication was written: %v", other.Spec.String())
	}

	// In the gateway's namespace an object of the generated name without canopy's labels
	// (the platform team's) is not the policy's either.
	edge := simplePolicy("edge", "edge")
	edge.Namespace = h.ns
	edge.Spec.Ingress = &meshv1.Ingress{Gateway: meshv1.IngressGateway{Namespace: h.gwNS, Selector: map[string]string{"istio": "ingressgateway"}}, Hosts: []string{"edge.example.com"}}
	platform := &istionetv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: h.gwNS, Name: render.GatewayName(edge)}}
	platform.Spec.Selector = map[string]string{"istio": "internal-gateway"}
	if err := h.c.Create(t.Context(), platform); err != nil {
		t.Fatal(err)
	}
	h.create(service("edge", 8080), edge)
	expectStalled(t, h.settlePolicy("edge"), meshv1.ReasonConflict, "Gateway "+h.gwNS+"/"+platform.Name, "has no canopy owner labels")
	h.mustGet(h.gwNS, platform.Name, platform)
	if platform.Spec.Selector["istio"] != "internal-gateway" || len(platform.Labels) != 0 {
		t.Fatalf("the platform's Gateway was written: %v %v", platform.Labels, platform.Spec.String())
	}
}

// TestMeshPolicyTenancy: without allowances a policy's ingress on another namespace's
// gateway is refused and nothing is written there; allowed, it is applied; taken back, what
// it had put there is removed while its namespace's objects stay.
func TestMeshPolicyTenancy(t *testing.T) {
	h := newPolicyHarness(t)
	h.pr.Tenancy = nil
	h.create(serviceAccount("order-management"), service("product-catalog", 8080), catalogPolicy(h.ns, h.gwNS))
	p := h.settlePolicy("product-catalog")
	expectStalled(t, p, meshv1.ReasonNotAllowed, "spec.ingress.gateway.namespace", "spec.ingress.hosts[0]", "spec.ingress.tls.issuerRef.name")
	h.expectPolicyEvent("product-catalog", meshv1.ReasonNotAllowed, "spec.ingress.gateway.namespace")
	name := render.GatewayName(p)
	h.mustNotExist(h.gwNS, name, &istionetv1.Gateway{})

	h.pr.Tenancy = openTenancy
	expectCondition(t, h.settlePolicy("product-catalog"), meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonCertificatePending)
	h.mustGet(h.gwNS, name, &istionetv1.Gateway{})

	h.pr.Tenancy = &render.Tenancy{ClusterIssuers: []string{"*"}, Hosts: openTenancy.Hosts}
	p = h.settlePolicy("product-catalog")
	expectStalled(t, p, meshv1.ReasonNotAllowed, "spec.ingress.gateway.namespace")
	h.mustNotExist(h.gwNS, name, &istionetv1.Gateway{})
	h.mustGet(h.ns, "product-catalog", &istiosecv1.PeerAuthentication{})
}
