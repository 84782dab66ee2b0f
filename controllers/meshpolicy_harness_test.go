package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/apply"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/test/testenv"
)

// policyHarness drives MeshPolicy reconciles by hand, beside the Canary harness (same
// namespace, clock and event recorder) so that the two can meet. gwNS stands for the
// ingress gateway's namespace (istio-system on a real cluster).
type policyHarness struct {
	*harness
	pr      *MeshPolicyReconciler
	gwNS    string
	applies *applyCounter
}

func newPolicyHarness(t *testing.T) *policyHarness {
	t.Helper()
	h := newHarness(t)
	applies := &applyCounter{Client: env.Client}
	applier := &apply.Applier{Client: applies, Reader: cacheLikeReader{env.Client}}
	return &policyHarness{
		harness: h,
		gwNS:    env.CreateNamespace(t),
		pr:      &MeshPolicyReconciler{Client: env.Client, Applier: applier, Recorder: h.r.Recorder, Clock: h.clock, Tenancy: openTenancy},
		applies: applies,
	}
}

// applyCounter counts server-side apply requests.
type applyCounter struct {
	client.Client
	n atomic.Int64
}

func (c *applyCounter) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
	c.n.Add(1)
	return c.Client.Apply(ctx, obj, opts...)
}

// cacheLikeReader reads like the manager's cache, which sets apiVersion and kind on the
// typed objects it returns (a direct client leaves them empty). The Applier compares the
// live object with the desired one, kind included, to skip applies that change nothing.
type cacheLikeReader struct{ client.Client }

func (r cacheLikeReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if err := r.Client.Get(ctx, key, obj, opts...); err != nil {
		return err
	}
	gvk, err := apiutil.GVKForObject(obj, r.Scheme())
	if err != nil {
		return err
	}
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	return nil
}

// reconcilePolicy runs one reconcile and returns the policy as it is afterwards (nil once
// it is gone) and the reconcile's error.
func (h *policyHarness) reconcilePolicy(name string) (*meshv1.MeshPolicy, error) {
	h.t.Helper()
	_, err := h.pr.Reconcile(h.t.Context(), reconcileRequest(h.ns, name))
	p := &meshv1.MeshPolicy{}
	if gerr := h.c.Get(h.t.Context(), client.ObjectKey{Namespace: h.ns, Name: name}, p); gerr != nil {
		if apierrors.IsNotFound(gerr) {
			return nil, err
		}
		h.t.Fatalf("reading MeshPolicy %s: %v", name, gerr)
	}
	return p, err
}

// settlePolicy reconciles until nothing changes, as the watches of a running manager would.
// A terminal error (a Stalled policy) is expected by the caller reading the conditions; any
// other error fails the test.
func (h *policyHarness) settlePolicy(name string) *meshv1.MeshPolicy {
	h.t.Helper()
	var last *meshv1.MeshPolicy
	for range 6 {
		p, err := h.reconcilePolicy(name)
		if err != nil && !errors.Is(err, errTerminal) {
			h.t.Fatalf("reconciling MeshPolicy %s: %v", name, err)
		}
		if p == nil || (last != nil && p.ResourceVersion == last.ResourceVersion) {
			return p
		}
		last = p
	}
	return last
}

// errTerminal matches any reconcile.TerminalError.
var errTerminal = reconcile.TerminalError(nil)

func (h *policyHarness) policy(name string) *meshv1.MeshPolicy {
	h.t.Helper()
	p := &meshv1.MeshPolicy{}
	if err := h.c.Get(h.t.Context(), client.ObjectKey{Namespace: h.ns, Name: name}, p); err != nil {
		h.t.Fatalf("reading MeshPolicy %s: %v", name, err)
	}
	return p
}

// updatePolicy changes a policy's spec.
func (h *policyHarness) updatePolicy(name string, change func(*meshv1.MeshPolicySpec)) {
	h.t.Helper()
	p := h.policy(name)
	change(&p.Spec)
	if err := h.c.Update(h.t.Context(), p); err != nil {
		h.t.Fatalf("updating MeshPolicy %s: %v", name, err)
	}
}

// get reads an object into obj; it reports whether the object exists.
func (h *policyHarness) get(namespace, name string, obj client.Object) bool {
	h.t.Helper()
	err := h.c.Get(h.t.Context(), client.ObjectKey{Namespace: namespace, Name: name}, obj)
	if apierrors.IsNotFound(err) {
		return false
	}
	if err != nil {
		h.t.Fatalf("reading %T %s/%s: %v", obj, namespace, name, err)
	}
	return true
}

func (h *policyHarness) mustGet(namespace, name string, obj client.Object) {
	h.t.Helper()
	if !h.get(namespace, name, obj) {
		h.t.Fatalf("%T %s/%s does not exist", obj, namespace, name)
	}
}

func (h *policyHarness) mustNotExist(namespace, name string, obj client.Object) {
	h.t.Helper()
	if h.get(namespace, name, obj) {
		h.t.Fatalf("%T %s/%s still exists (labels %v)", obj, namespace, name, obj.GetLabels())
	}
}

// expectStored checks that the API server holds obj as it was rendered: the CRD schema
// accepted it, and pruned none of its fields (an unknown field would vanish silently).
func (h *policyHarness) expectStored(obj render.Object) {
	h.t.Helper()
	live := obj.DeepCopyObject().(client.Object)
	h.mustGet(obj.GetNamespace(), obj.GetName(), live)
	want, have := jsonMap(h.t, obj), jsonMap(h.t, live)
	if !apply.Contains(have["spec"], want["spec"]) {
		h.t.Fatalf("%s %s/%s is stored as\n%s\nnot as rendered:\n%s", kindOf(obj), obj.GetNamespace(), obj.GetName(), pretty(have["spec"]), pretty(want["spec"]))
	}
	for k, v := range obj.GetLabels() {
		if live.GetLabels()[k] != v {
			h.t.Fatalf("%s %s lacks label %s=%s: %v", kindOf(obj), obj.GetName(), k, v, live.GetLabels())
		}
	}
}

func jsonMap(t *testing.T, o any) map[string]any {
	t.Helper()
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func pretty(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

// issue does what cert-manager does once it has issued a Certificate: Ready, with the
// certificate's validity in status.
func (h *policyHarness) issue(p *meshv1.MeshPolicy, notAfter time.Time) {
	h.t.Helper()
	cert := &cmv1.Certificate{}
	h.mustGet(render.GatewayNamespace(p), render.GatewayName(p), cert)
	renewal := metav1.NewTime(notAfter.Add(-30 * 24 * time.Hour))
	before, after := metav1.NewTime(notAfter.Add(-90*24*time.Hour)), metav1.NewTime(notAfter)
	cert.Status = cmv1.CertificateStatus{
		Conditions: []cmv1.CertificateCondition{{
			Type: cmv1.CertificateConditionReady, Status: cmmeta.ConditionTrue, Reason: "Ready",
			Message: "Certificate is up to date and has not expired", ObservedGeneration: cert.Generation,
			LastTransitionTime: &after,
		}},
		NotBefore: &before, NotAfter: &after, RenewalTime: &renewal,
	}
	if err := h.c.Status().Update(h.t.Context(), cert); err != nil {
		h.t.Fatalf("marking Certificate %s issued: %v", cert.Name, err)
	}
}

// failIssuance does what cert-manager does when a CertificateRequest failed.
func (h *policyHarness) failIssuance(p *meshv1.MeshPolicy, message string) {
	h.t.Helper()
	cert := &cmv1.Certificate{}
	h.mustGet(render.GatewayNamespace(p), render.GatewayName(p), cert)
	now := metav1.Now()
	cert.Status.Conditions = []cmv1.CertificateCondition{
		{Type: cmv1.CertificateConditionReady, Status: cmmeta.ConditionFalse, Reason: "DoesNotExist", Message: "Issuing certificate as Secret does not exist", ObservedGeneration: cert.Generation, LastTransitionTime: &now},
		{Type: cmv1.CertificateConditionIssuing, Status: cmmeta.ConditionFalse, Reason: "Failed", Message: "The certificate request has failed to complete and will be retried: " + message, ObservedGeneration: cert.Generation, LastTransitionTime: &now},
	}
	if err := h.c.Status().Update(h.t.Context(), cert); err != nil {
		h.t.Fatalf("failing Certificate %s: %v", cert.Name, err)
	}
}

// expectPolicyEvent waits for an event about a MeshPolicy with the reason, whose note
// contains each of the given strings.
func (h *policyHarness) expectPolicyEvent(name, reason string, contains ...string) {
	h.t.Helper()
	testenv.Eventually(h.t, 30*time.Second, func() error {
		list := &eventsv1.EventList{}
		if err := h.c.List(h.t.Context(), list, client.InNamespace(h.ns)); err != nil {
			return err
		}
		var seen []string
	events:
		for _, e := range list.Items {
			if e.Regarding.Kind != "MeshPolicy" || e.Regarding.Name != name {
				continue
			}
			seen = append(seen, e.Reason+": "+e.Note)
			if e.Reason != reason {
				continue
			}
			for _, s := range contains {
				if !strings.Contains(e.Note, s) {
					continue events
				}
			}
			return nil
		}
		return fmt.Errorf("no event %s containing %q about MeshPolicy %s; seen %q", reason, contains, name, seen)
	})
}

// expectCondition checks a condition's status and reason, and that its message contains
// each of the given strings.
func expectCondition(t *testing.T, p *meshv1.MeshPolicy, typ string, status metav1.ConditionStatus, reason string, contains ...string) {
	t.Helper()
	c := meta.FindStatusCondition(p.Status.Conditions, typ)
	if c == nil || c.Status != status || c.Reason != reason {
		t.Fatalf("MeshPolicy %s: condition %s is %+v, want %s/%s (all: %+v)", p.Name, typ, c, status, reason, p.Status.Conditions)
	}
	for _, s := range contains {
		if !strings.Contains(c.Message, s) {
			t.Fatalf("MeshPolicy %s: condition %s message %q does not contain %q", p.Name, typ, c.Message, s)
		}
	}
	if c.ObservedGeneration != p.Generation {
		t.Fatalf("MeshPolicy %s: condition %s observed generation %d, want %d", p.Name, typ, c.ObservedGeneration, p.Generation)
	}
}

// expectReady checks the kstatus triple of a policy in force.
func expectReady(t *testing.T, p *meshv1.MeshPolicy, contains ...string) {
	t.Helper()
	expectCondition(t, p, meshv1.ConditionReady, metav1.ConditionTrue, meshv1.ReasonReconciled, contains...)
	expectCondition(t, p, meshv1.ConditionReconciling, metav1.ConditionFalse, meshv1.ReasonReconciled)
	expectCondition(t, p, meshv1.ConditionStalled, metav1.ConditionFalse, meshv1.ReasonReconciled)
	if p.Status.ObservedGeneration != p.Generation {
		t.Fatalf("observedGeneration %d, want %d", p.Status.ObservedGeneration, p.Generation)
	}
}

// expectStalled checks a policy refused until some resource changes.
func expectStalled(t *testing.T, p *meshv1.MeshPolicy, reason string, contains ...string) {
	t.Helper()
	expectCondition(t, p, meshv1.ConditionReady, metav1.ConditionFalse, reason, contains...)
	expectCondition(t, p, meshv1.ConditionStalled, metav1.ConditionTrue, reason, contains...)
	expectCondition(t, p, meshv1.ConditionReconciling, metav1.ConditionFalse, reason)
}

// objectState finds a generated object in status.
func objectState(p *meshv1.MeshPolicy, kind, namespace, name string) *meshv1.GeneratedObject {
	for i := range p.Status.Objects {
		if o := &p.Status.Objects[i]; o.Kind == kind && o.Namespace == namespace && o.Name == name {
			return o
		}
	}
	return nil
}

func service(name string, ports ...int32) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": name}},
	}
	for _, p := range ports {
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: fmt.Sprintf("http-%d", p), Port: p, TargetPort: intstr.FromInt32(p)})
	}
	return s
}

func serviceAccount(name string) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}
}
