package browser

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	istiosecv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/test/testenv"
)

// A MeshPolicy's change waiting in dry-run (spec.rollout) shows on the policies view with
// its phase and reason; pressing its promote enforces it, as kubectl canopy promote
// meshpolicy/NAME does, and the card follows without a reload.
func TestPolicyRolloutPromoteButtonEnforces(t *testing.T) {
	testenv.SkipIfShort(t)
	ctx := browser(t)
	// No Prometheus here: the window cannot be judged, so the change waits in dry-run
	// (AnalysisFailed) until a person promotes it.
	startOperator(t)
	ns := env.CreateNamespace(t)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "reviews"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 9080, TargetPort: intstr.FromInt32(9080)}}},
	}
	policy := &meshv1.MeshPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"},
		Spec: meshv1.MeshPolicySpec{
			TargetRef: meshv1.ServiceRef{Name: "reviews"},
			Authorization: &meshv1.Authorization{Rules: []meshv1.AuthorizationRule{{
				From: []meshv1.AuthorizationSource{{ServiceAccounts: []string{ns + "/productpage"}}},
			}}},
			Rollout: &meshv1.PolicyRollout{Window: "10m", Interval: "5s"},
		},
	}
	for _, o := range []client.Object{svc, policy} {
		if err := env.Client.Create(t.Context(), o); err != nil {
			t.Fatal(err)
		}
	}
	phase := func(want string) {
		t.Helper()
		testenv.Eventually(t, time.Minute, func() error {
			p := &meshv1.MeshPolicy{}
			if err := env.Client.Get(t.Context(), client.ObjectKeyFromObject(policy), p); err != nil {
				return err
			}
			if ro := p.Status.Rollout; ro == nil || ro.Phase != want {
				return fmt.Errorf("status.rollout %+v, want phase %s", ro, want)
			}
			return nil
		})
	}
	phase(meshv1.PolicyPhaseDryRun)

	url := dashboard(t)
	card := fmt.Sprintf(`section[data-policy="%s/reviews"]`, ns)
	run(t, ctx, "opening the policies", chromedp.Navigate(url+"#/policies"), chromedp.WaitVisible(chromedp.CSS(card+` button[data-action="promote"]`)))
	waitText(t, ctx, card+" .rollout", 30*time.Second, contains("DryRun", "window started"))
	run(t, ctx, "pressing the policy's promote", chromedp.Click(chromedp.CSS(card+` button[data-action="promote"]`)))
	waitText(t, ctx, card+" .policy-result", 30*time.Second, contains("promote requested for "+ns+"/meshpolicy/reviews"))

	phase(meshv1.PolicyPhaseEnforced)
	p := &meshv1.MeshPolicy{}
	if err := env.Client.Get(t.Context(), client.ObjectKeyFromObject(policy), p); err != nil {
		t.Fatal(err)
	}
	if req := p.Annotations[meshv1.AnnotationRequest]; !strings.HasPrefix(req, "promote:") || p.Status.Rollout.LastHandledRequest != req {
		t.Errorf("request annotation %q, last handled %q: want a promote canopy handled", req, p.Status.Rollout.LastHandledRequest)
	}
	// The change is in force: the AuthorizationPolicy without Istio's dry-run annotation.
	testenv.Eventually(t, time.Minute, func() error {
		ap := &istiosecv1.AuthorizationPolicy{}
		if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "reviews"}, ap); err != nil {
			return err
		}
		if render.IsDryRun(ap) {
			return fmt.Errorf("AuthorizationPolicy reviews is still in dry-run")
		}
		return nil
	})
	// The card follows without a reload; nothing waits, so nothing to press.
	waitText(t, ctx, card+" .rollout", time.Minute, contains("Enforced"))
	if n := eval[int](t, ctx, fmt.Sprintf(`document.querySelectorAll(%q).length`, card+" button[data-action]")); n != 0 {
		t.Errorf("%d action buttons on an enforced policy, want none", n)
	}
}
