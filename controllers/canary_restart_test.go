package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// syncRecorder writes every event to the API server before it returns (the manager's
// recorder sends them in the background), so that a test can count what was announced.
type syncRecorder struct {
	t *testing.T
	c client.Client
}

func (r syncRecorder) Eventf(regarding, _ runtime.Object, eventType, reason, action, note string, args ...any) {
	obj := regarding.(client.Object)
	gvk, err := apiutil.GVKForObject(obj, env.Scheme)
	if err != nil {
		r.t.Errorf("event for %T: %v", obj, err)
		return
	}
	e := &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{GenerateName: obj.GetName() + "-", Namespace: obj.GetNamespace()},
		EventTime:           metav1.NowMicro(),
		ReportingController: "canopy.dev/test",
		ReportingInstance:   "test",
		Action:              action,
		Reason:              reason,
		Type:                eventType,
		Note:                fmt.Sprintf(note, args...),
		Regarding: corev1.ObjectReference{
			APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind,
			Namespace: obj.GetNamespace(), Name: obj.GetName(), UID: obj.GetUID(),
		},
	}
	if err := r.c.Create(context.Background(), e); err != nil {
		r.t.Errorf("recording event %s: %v", reason, err)
	}
}

// eventsWith counts the Canary's events whose note contains s.
func (h *harness) eventsWith(s string) int {
	h.t.Helper()
	list := &eventsv1.EventList{}
	if err := h.c.List(h.t.Context(), list, client.InNamespace(h.ns)); err != nil {
		h.t.Fatal(err)
	}
	n := 0
	for _, e := range list.Items {
		if e.Regarding.Kind == "Canary" && strings.Contains(e.Note, s) {
			n++
		}
	}
	return n
}

// An operator that dies after it routed a step but before the status recorded it takes the
// step again when it comes back (the same weight, a no-op for the mesh): the step must be
// announced once, not once per attempt. Found by test/e2e/restarts, which SIGKILLs the real
// process between the VirtualService write and the status write.
func TestAStepWhoseStatusWriteIsLostIsAnnouncedOnce(t *testing.T) {
	h := newHarness(t)
	h.r.Recorder = syncRecorder{t, env.Client}
	h.initialize(reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)}))
	h.startRollout("reviews:v2")
	h.expectWeights(90, 10)

	healthy := h.r.Client
	h.r.Client = interceptor.NewClient(healthy.(client.WithWatch), interceptor.Funcs{
		SubResourcePatch: func(context.Context, client.Client, string, client.Object, client.Patch, ...client.SubResourcePatchOption) error {
			return errors.New("the process died before the status write")
		},
	})
	h.clock.Step(time.Minute)
	if _, err := h.r.Reconcile(t.Context(), ctrl.Request{NamespacedName: client.ObjectKey{Namespace: h.ns, Name: "reviews"}}); err == nil {
		t.Fatal("the reconcile whose status write failed returned no error")
	}
	h.expectWeights(80, 20) // routed, not recorded
	if c := h.settleWith(healthy); c.Status.CanaryWeight != 20 || c.Status.StepIndex != 2 {
		t.Fatalf("after the restart the status is at step %d, %d%%; want step 2, 20%%", c.Status.StepIndex, c.Status.CanaryWeight)
	}
	h.expectWeights(80, 20)
	if n := h.eventsWith("Routing 20%"); n != 1 {
		t.Fatalf("the step to 20%% was announced %d times, want once", n)
	}
}

// settleWith puts the reconciler's client back to c and settles.
func (h *harness) settleWith(c client.Client) *meshv1.Canary {
	h.r.Client = c
	return h.settle("reviews")
}
