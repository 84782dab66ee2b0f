package desired

import (
	"testing"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/progress"
)

func TestServesHTTPS(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	later, earlier := metav1.NewTime(now.Add(time.Hour)), metav1.NewTime(now.Add(-time.Hour))
	ready := func(status cmmeta.ConditionStatus, observed int64) *cmv1.Certificate {
		c := &cmv1.Certificate{ObjectMeta: metav1.ObjectMeta{Generation: 2}}
		c.Status.Conditions = []cmv1.CertificateCondition{{Type: cmv1.CertificateConditionReady, Status: status, ObservedGeneration: observed}}
		return c
	}
	withNotAfter := func(c *cmv1.Certificate, na *metav1.Time) *cmv1.Certificate { c.Status.NotAfter = na; return c }
	for _, tc := range []struct {
		name string
		cert *cmv1.Certificate
		want bool
	}{
		{name: "no Certificate"},
		{name: "not issued", cert: &cmv1.Certificate{}},
		{name: "Ready", cert: ready(cmmeta.ConditionTrue, 2), want: true},
		{name: "Ready for an older spec", cert: ready(cmmeta.ConditionTrue, 1)},
		{name: "re-issuing with a valid certificate in the Secret", cert: withNotAfter(ready(cmmeta.ConditionFalse, 2), &later), want: true},
		{name: "expired", cert: withNotAfter(ready(cmmeta.ConditionFalse, 2), &earlier)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ServesHTTPS(tc.cert, now); got != tc.want {
				t.Fatalf("ServesHTTPS() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPolicyForIsTheOldestNotBeingDeleted(t *testing.T) {
	at := func(name, target string, minutes int) *meshv1.MeshPolicy {
		p := &meshv1.MeshPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(time.Unix(0, 0).Add(time.Duration(minutes) * time.Minute))}}
		p.Spec.TargetRef.Name = target
		return p
	}
	deleting := at("a-deleting", "reviews", 0)
	deleting.DeletionTimestamp = &metav1.Time{Time: time.Unix(100, 0)}
	ps := []*meshv1.MeshPolicy{at("newer", "reviews", 5), deleting, at("other", "ratings", 1), at("older", "reviews", 2)}
	if got := PolicyFor(ps, "reviews"); got == nil || got.Name != "older" {
		t.Fatalf("PolicyFor = %v, want older", got)
	}
	if got := PolicyFor(ps, "details"); got != nil {
		t.Fatalf("PolicyFor = %s, want none", got.Name)
	}
}

func TestPrimaryReplicas(t *testing.T) {
	dep := func(n int32) *appsv1.Deployment { return &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: &n}} }
	plain, scaled := &meshv1.Canary{}, &meshv1.Canary{Spec: meshv1.CanarySpec{AutoscalerRef: &meshv1.AutoscalerRef{Name: "hpa"}}}
	for _, tc := range []struct {
		name            string
		c               *meshv1.Canary
		target, primary *appsv1.Deployment
		w               progress.Workload
		want            int32
	}{
		{"a new primary starts with the target's", plain, dep(4), nil, progress.Workload{Initialize: true}, 4},
		{"a promotion keeps the primary's", plain, dep(3), dep(5), progress.Workload{PromotePrimary: true, CanaryScaledUp: true}, 5},
		{"the user's count moves when the target goes to zero", plain, dep(3), dep(5), progress.Workload{ScaleTargetToZero: true}, 3},
		{"an autoscaler's count stays", scaled, dep(3), dep(5), progress.Workload{ScaleTargetToZero: true}, 5},
		{"a target at zero leaves the primary's", plain, dep(0), dep(5), progress.Workload{ScaleTargetToZero: true}, 5},
		{"never below one", plain, dep(0), nil, progress.Workload{Initialize: true}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := PrimaryReplicas(tc.c, tc.target, tc.primary, tc.w); got != tc.want {
				t.Fatalf("PrimaryReplicas = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestCanaryReplicas(t *testing.T) {
	dep := func(n int32) *appsv1.Deployment { return &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: &n}} }
	for _, tc := range []struct {
		name            string
		w               progress.Workload
		primary, target *appsv1.Deployment
		want            int32
		scale           bool
	}{
		{"back to zero", progress.Workload{ScaleTargetToZero: true}, dep(3), dep(2), 0, true},
		{"left alone", progress.Workload{}, dep(3), dep(2), 0, false},
		{"up from zero to the primary's", progress.Workload{CanaryScaledUp: true}, dep(3), dep(0), 3, true},
		{"running: the user's or an autoscaler's", progress.Workload{CanaryScaledUp: true}, dep(3), dep(5), 0, false},
		{"a setCanaryScale count", progress.Workload{CanaryScaledUp: true, CanaryReplicas: 1}, dep(3), dep(3), 1, true},
		{"a setCanaryScale weight, rounded up", progress.Workload{CanaryScaledUp: true, CanaryPercent: 20}, dep(6), dep(0), 2, true},
		{"already at the step's count", progress.Workload{CanaryScaledUp: true, CanaryPercent: 20}, dep(6), dep(2), 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, scale := CanaryReplicas(tc.w, tc.primary, tc.target)
			if scale != tc.scale || (scale && n != tc.want) {
				t.Fatalf("CanaryReplicas = %d, %v; want %d, %v", n, scale, tc.want, tc.scale)
			}
		})
	}
}
