package controllers

import (
	"maps"
	"strings"
	"testing"
	"time"

	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/workload"
)

// Deleting a Canary hands the service back to the target by default (issue 20, item 1): the
// target is scaled to the primary's count and is ready before the apex Service selects its
// pods, and only then do the generated objects go. At no moment does the apex Service
// select pods that are not ready. revertOnDeletion (deprecated) means the same.
func TestCanaryDeletionHandsOverByDefault(t *testing.T) {
	for _, tc := range []struct {
		name    string
		adopted bool
		spec    func(*meshv1.Canary)
	}{
		{name: "default, adopted Service", adopted: true, spec: func(*meshv1.Canary) {}},
		{name: "revertOnDeletion, generated Service", spec: func(c *meshv1.Canary) { c.Spec.RevertOnDeletion = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.adopted {
				h.create(&corev1.Service{
					ObjectMeta: metav1.ObjectMeta{Name: "reviews"},
					Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "reviews"}, Ports: []corev1.ServicePort{{Name: "http", Port: 9080}}},
				})
			}
			c := reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)})
			tc.spec(c)
			h.initialize(c)
			promoted := h.canary().Status.LastPromotedRevision

			h.deleteCanary()
			h.expectApexServes()
			if n := ptr.Deref(h.deployment("reviews").Spec.Replicas, 0); n != 2 {
				t.Fatalf("target scaled to %d on deletion, want the primary's 2", n)
			}
			got := h.canary()
			expectPhase(t, got, meshv1.PhaseTerminating)
			expectReadyReason(t, got, meshv1.ReasonHandingOver)
			if got.Status.CurrentRevision != promoted {
				t.Errorf("hands over revision %s, want the promoted %s", got.Status.CurrentRevision, promoted)
			}
			h.expectEvent(meshv1.ReasonHandingOver)
			h.handOver()
			h.expectHandedOver(2)
		})
	}
}

// A rollout in progress when the Canary is deleted: handing the target over would send all
// traffic to a revision that never passed its analysis. The primary serves everything and
// the deletion waits, saying why and what to do.
func TestCanaryDeletionDuringARolloutKeepsThePrimary(t *testing.T) {
	h := newHarness(t)
	h.blockedDeletion()
	// Time passes and the watches come back: nothing moves.
	for range 3 {
		h.clock.Step(10 * time.Minute)
		h.reconcile("reviews")
		h.expectApexServes()
	}
	h.expectWeights(100, 0)
	if img := h.deployment("reviews-primary").Spec.Template.Spec.Containers[0].Image; img != "reviews:v1" {
		t.Fatalf("primary runs %s, want the promoted reviews:v1", img)
	}
	if img := h.deployment("reviews").Spec.Template.Spec.Containers[0].Image; img != "reviews:v2" {
		t.Fatalf("target runs %s: canopy must not write a template back onto it", img)
	}
	expectReadyReason(t, h.canary(), meshv1.ReasonDeletionBlocked)
}

// A confirm-deletion request hands the target's revision over as it is.
func TestCanaryDeletionConfirmedHandsOverTheTargetsRevision(t *testing.T) {
	h := newHarness(t)
	rev := h.blockedDeletion()
	h.annotate("reviews", meshv1.AnnotationRequest, "confirm-deletion:1")
	h.reconcile("reviews")
	got := h.canary()
	if got.Status.DeletionConfirmedRevision != rev || got.Status.LastHandledRequest != "confirm-deletion:1" {
		t.Fatalf("confirmed revision %q, last handled request %q; want %s, confirm-deletion:1",
			got.Status.DeletionConfirmedRevision, got.Status.LastHandledRequest, rev)
	}
	h.expectEvent(meshv1.ReasonDeletionConfirmed)
	h.handOver()
	h.expectHandedOver(2)
	if img := h.deployment("reviews").Spec.Template.Spec.Containers[0].Image; img != "reviews:v2" {
		t.Fatalf("target runs %s, want the confirmed reviews:v2", img)
	}
}

// The target set back to the promoted revision (a revert in Git) is handed over normally.
func TestCanaryDeletionHandsOverOnceTheTargetIsReverted(t *testing.T) {
	h := newHarness(t)
	h.blockedDeletion()
	h.setImage("reviews", "reviews:v1")
	h.handOver()
	h.expectHandedOver(2)
}

// deletionPolicy Orphan keeps Flagger's default: the finalizer goes at once and the
// generated objects are left to the garbage collector.
func TestCanaryDeletionOrphan(t *testing.T) {
	h := newHarness(t)
	c := reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)})
	c.Spec.DeletionPolicy = meshv1.DeletionOrphan
	h.initialize(c)
	h.deleteCanary()
	h.expectGone()
	if n := ptr.Deref(h.deployment("reviews").Spec.Replicas, -1); n != 0 {
		t.Errorf("target scaled to %d, want it left at 0", n)
	}
	for _, o := range []client.Object{
		&istionetv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "reviews"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "reviews"}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "reviews-primary"}},
	} {
		if err := h.c.Get(t.Context(), client.ObjectKey{Namespace: h.ns, Name: o.GetName()}, o); err != nil {
			t.Fatalf("%T %s: %v", o, o.GetName(), err)
		}
		if refs := o.GetOwnerReferences(); len(refs) != 1 || refs[0].Kind != "Canary" {
			t.Fatalf("%T %s should be owned by the Canary for garbage collection: %v", o, o.GetName(), refs)
		}
	}
}

// Without its target there is nothing to hand over: the generated objects go with the
// Canary.
func TestCanaryDeletionWithoutItsTarget(t *testing.T) {
	h := newHarness(t)
	h.initialize(reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)}))
	if err := h.c.Delete(t.Context(), h.deployment("reviews")); err != nil {
		t.Fatal(err)
	}
	h.deleteCanary()
	h.expectGone()
	h.expectGeneratedGone()
}

// In a terminating namespace nothing is left to serve: even a deletion that would wait
// (a rollout in progress) lets the Canary go.
func TestCanaryDeletionInATerminatingNamespace(t *testing.T) {
	h := newHarness(t)
	// A namespace of its own: envtest runs no namespace controller, so it stays Terminating.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "terminating-"}}
	if err := h.c.Create(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	h.ns = ns.Name
	h.initialize(reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)}))
	h.startRollout("reviews:v2")
	if err := h.c.Delete(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	h.deleteCanary()
	h.expectGone()
}

// A primary scaled by its autoscaler hands its current count over; the target's own
// autoscaler takes it from there.
func TestCanaryDeletionHandsOverTheAutoscalersCount(t *testing.T) {
	h := newHarness(t)
	h.initializeWithAutoscaler()
	primary := h.deployment("reviews-primary")
	primary.Spec.Replicas = ptr.To[int32](5) // as the primary's autoscaler would
	if err := h.c.Update(t.Context(), primary); err != nil {
		t.Fatal(err)
	}
	h.markReady("reviews-primary")
	h.deleteCanary()
	h.handOver()
	h.expectHandedOver(5)
	if err := h.c.Get(t.Context(), client.ObjectKey{Namespace: h.ns, Name: "reviews-primary"}, &autoscalingv2.HorizontalPodAutoscaler{}); !apierrors.IsNotFound(err) {
		t.Errorf("the primary's autoscaler should be removed, got %v", err)
	}
	if err := h.c.Get(t.Context(), client.ObjectKey{Namespace: h.ns, Name: "reviews"}, &autoscalingv2.HorizontalPodAutoscaler{}); err != nil {
		t.Errorf("the user's autoscaler must stay: %v", err)
	}
}

// initializeWithAutoscaler initializes the Canary of a target with an autoscaler (2..6
// replicas).
func (h *harness) initializeWithAutoscaler() {
	h.t.Helper()
	h.create(&autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews"},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "reviews"},
			MinReplicas:    ptr.To[int32](2), MaxReplicas: 6,
		},
	})
	c := reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)})
	c.Spec.AutoscalerRef = &meshv1.AutoscalerRef{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler", Name: "reviews"}
	h.initialize(c)
}

// blockedDeletion initializes a Canary, starts a rollout of reviews:v2 and deletes the
// Canary: the primary serves all traffic, the deletion waits and says why. It returns the
// target's revision.
func (h *harness) blockedDeletion() string {
	h.t.Helper()
	h.initialize(reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)}))
	h.startRollout("reviews:v2")
	h.expectWeights(90, 10)
	h.deleteCanary()
	h.expectApexServes()
	h.expectWeights(100, 0)
	got := h.canary()
	expectPhase(h.t, got, meshv1.PhaseTerminating)
	cond := expectReadyReason(h.t, got, meshv1.ReasonDeletionBlocked)
	for _, want := range []string{"reviews:", "confirm-deletion", "in Git", got.Status.LastPromotedRevision} {
		if !strings.Contains(cond.Message, want) {
			h.t.Errorf("the DeletionBlocked message does not say %q: %s", want, cond.Message)
		}
	}
	h.expectEvent(meshv1.ReasonDeletionBlocked)
	if _, err := h.deploymentOrGone("reviews-primary"); err != nil {
		h.t.Fatalf("the primary must keep serving: %v", err)
	}
	return got.Status.CurrentRevision
}

// deleteCanary deletes the Canary and reconciles its finalizer once.
func (h *harness) deleteCanary() {
	h.t.Helper()
	if err := h.c.Delete(h.t.Context(), h.canary()); err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.r.Reconcile(h.t.Context(), reconcileRequest(h.ns, "reviews")); err != nil {
		h.t.Fatalf("reconcile on deletion: %v", err)
	}
}

// handOver reconciles a deleted Canary until it is gone, as the manager's watches and
// requeues would, with kube-controller-manager's part played by marking the target ready.
// After every reconcile the apex Service selects ready pods.
func (h *harness) handOver() {
	h.t.Helper()
	for range 8 {
		if _, err := h.r.Reconcile(h.t.Context(), reconcileRequest(h.ns, "reviews")); err != nil {
			h.t.Fatalf("reconcile on deletion: %v", err)
		}
		h.expectApexServes()
		if apierrors.IsNotFound(h.c.Get(h.t.Context(), client.ObjectKey{Namespace: h.ns, Name: "reviews"}, &meshv1.Canary{})) {
			return
		}
		if ready, _ := workload.Ready(h.deployment("reviews")); !ready {
			h.markReady("reviews")
		}
		h.clock.Step(handOverSettle)
	}
	h.t.Fatalf("the Canary is still there after its hand-over: %+v", h.canary().Status.Conditions)
}

// expectGone says the Canary went after the reconcile of its deletion.
func (h *harness) expectGone() {
	h.t.Helper()
	if err := h.c.Get(h.t.Context(), client.ObjectKey{Namespace: h.ns, Name: "reviews"}, &meshv1.Canary{}); !apierrors.IsNotFound(err) {
		h.t.Fatalf("the Canary is still there after its finalizer ran: %v", err)
	}
}

// expectApexServes checks that the apex Service, if any, selects the pods of a Deployment
// that is ready and not going away.
func (h *harness) expectApexServes() {
	h.t.Helper()
	apex := &corev1.Service{}
	if err := h.c.Get(h.t.Context(), client.ObjectKey{Namespace: h.ns, Name: "reviews"}, apex); err != nil {
		if apierrors.IsNotFound(err) {
			return
		}
		h.t.Fatal(err)
	}
	for _, name := range []string{"reviews", "reviews-primary"} {
		d, err := h.deploymentOrGone(name)
		if err != nil || !maps.Equal(d.Spec.Selector.MatchLabels, apex.Spec.Selector) {
			continue
		}
		if ready, why := workload.Ready(d); !ready || workload.Replicas(d) == 0 || !d.DeletionTimestamp.IsZero() {
			h.t.Fatalf("the apex Service selects the pods of Deployment %s, which do not serve: %d replicas, ready %v (%s)",
				name, workload.Replicas(d), ready, why)
		}
		return
	}
	h.t.Fatalf("the apex Service selects %v: no Deployment's pods", apex.Spec.Selector)
}

// expectHandedOver checks the end of a hand-over: the target runs replicas, the apex Service
// selects its pods and is the user's, and every other generated object is gone.
func (h *harness) expectHandedOver(replicas int32) {
	h.t.Helper()
	if n := workload.Replicas(h.deployment("reviews")); n != replicas {
		h.t.Errorf("target runs %d replicas, want %d", n, replicas)
	}
	svc := &corev1.Service{}
	if err := h.c.Get(h.t.Context(), client.ObjectKey{Namespace: h.ns, Name: "reviews"}, svc); err != nil {
		h.t.Fatalf("the apex Service must stay: %v", err)
	}
	if svc.Spec.Selector["app"] != "reviews" || len(svc.OwnerReferences) != 0 {
		h.t.Errorf("apex Service should select the target's pods and be the user's: selector %v owners %v", svc.Spec.Selector, svc.OwnerReferences)
	}
	h.expectGeneratedGone()
}

// expectGeneratedGone checks that everything generated but the apex Service is gone (envtest
// runs no garbage collector: these deletions are canopy's).
func (h *harness) expectGeneratedGone() {
	h.t.Helper()
	for _, o := range []client.Object{
		&istionetv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "reviews"}},
		&istionetv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: "reviews-primary"}},
		&istionetv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: "reviews-canary"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "reviews-primary"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "reviews-canary"}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "reviews-primary"}},
	} {
		if err := h.c.Get(h.t.Context(), client.ObjectKey{Namespace: h.ns, Name: o.GetName()}, o); !apierrors.IsNotFound(err) {
			h.t.Errorf("%T %s should be removed, got %v", o, o.GetName(), err)
		}
	}
}

func (h *harness) canary() *meshv1.Canary {
	h.t.Helper()
	c := &meshv1.Canary{}
	if err := h.c.Get(h.t.Context(), client.ObjectKey{Namespace: h.ns, Name: "reviews"}, c); err != nil {
		h.t.Fatal(err)
	}
	return c
}

func (h *harness) deploymentOrGone(name string) (*appsv1.Deployment, error) {
	d := &appsv1.Deployment{}
	if err := h.c.Get(h.t.Context(), client.ObjectKey{Namespace: h.ns, Name: name}, d); err != nil {
		return nil, err
	}
	return d, nil
}

func expectReadyReason(t *testing.T, c *meshv1.Canary, reason string) *metav1.Condition {
	t.Helper()
	cond := meta.FindStatusCondition(c.Status.Conditions, meshv1.ConditionReady)
	if cond == nil || cond.Status != metav1.ConditionFalse || cond.Reason != reason {
		t.Fatalf("Ready condition %+v, want False with reason %s", cond, reason)
	}
	return cond
}
