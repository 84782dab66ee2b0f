package progress_test

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/desired"
	"canopy.dev/canopy/internal/progress"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/internal/workload"
)

// cluster is what the controller's writes leave in the apiserver, for one Canary: the
// target (its template at a revision, its replicas) and the primary canopy last wrote.
type cluster struct {
	rev      string
	replicas int32
	primary  *appsv1.Deployment
	// daemonSet: the target is a DaemonSet (stopped at 0 replicas), read as its
	// workload.View as the controller reads it.
	daemonSet bool
	// scalePrimary, when set, is the count someone (an operator, an autoscaler without a
	// spec.autoscalerRef) gives the primary once it runs: canopy keeps it until Git
	// sets a count on the target again.
	scalePrimary int32
}

// gitReplicas is the target's count in the user's Git: a new revision comes with it.
const gitReplicas = 3

func (c *cluster) target() *appsv1.Deployment {
	d := c.deployment()
	if !c.daemonSet {
		return d
	}
	ds := &appsv1.DaemonSet{
		ObjectMeta: d.ObjectMeta,
		Spec:       appsv1.DaemonSetSpec{Selector: d.Spec.Selector, Template: d.Spec.Template},
		Status:     appsv1.DaemonSetStatus{DesiredNumberScheduled: 2, NumberReady: 2, UpdatedNumberScheduled: 2, NumberAvailable: 2},
	}
	if c.replicas == 0 {
		ds.Spec.Template.Spec.NodeSelector = map[string]string{meshv1.LabelScaleToZero: "true"}
	}
	return workload.View(ds)
}

func (c *cluster) deployment() *appsv1.Deployment {
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: "podinfo", Namespace: "apps", UID: "t-1"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &c.replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "podinfo"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "podinfo"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "podinfo", Image: "ghcr.io/stefanprodan/podinfo:" + c.rev,
					Ports: []corev1.ContainerPort{{ContainerPort: 9898, Protocol: corev1.ProtocolTCP}},
				}}},
			},
		},
	}
}

// carryOut does what the controller does with a decision's objects and workload.
func (c *cluster) carryOut(objs desired.CanaryObjects, w progress.Workload) {
	if objs.Primary != nil {
		c.primary = workload.View(objs.Primary).DeepCopy()
	}
	if n, scale := desired.CanaryReplicas(w, c.primary, c.target()); scale {
		c.replicas = n
	}
}

// TestControllerAndCLIAgreeInEveryPhase feeds every reconcile of rollouts of each strategy,
// told by the progression harness, to the controller's side of the desired state (the
// decision of progress.Step) and to the CLI's (the status the controller wrote, read back
// by `kubectl canopy render/diff`), and requires the same objects: the same Services and
// routes at every step, and, whenever the controller writes the primary, the same primary.
func TestControllerAndCLIAgreeInEveryPhase(t *testing.T) {
	ab := progress.IterationsSpec(3)
	ab.Analysis.Match = []meshv1.HTTPMatch{{Headers: map[string]meshv1.StringMatch{"x-canary": {Exact: new("insider")}}}}
	mirrored := progress.IterationsSpec(2)
	mirrored.Analysis.Mirror = true
	gradual := progress.WeightedSpec()
	gradual.Analysis.StepWeightPromotion = new(int32(20))
	mirroredWeighted := progress.WeightedSpec()
	mirroredWeighted.Analysis.Mirror = true
	mirroredWeighted.Analysis.MirrorWeight = new(int32(40))

	daemonSet := func(spec meshv1.CanarySpec) meshv1.CanarySpec {
		spec.TargetRef.Kind = meshv1.KindDaemonSet
		return spec
	}

	promoted := func(s *progress.Story) {
		s.Deploy("v2")
		s.WaitForPhase(meshv1.PhaseSucceeded, time.Hour)
	}
	stories := []struct {
		name         string
		spec         meshv1.CanarySpec
		tell         func(s *progress.Story)
		scalePrimary int32
	}{
		{"weighted, promoted", progress.WeightedSpec(), promoted, 0},
		{"weighted, rolled back", progress.WeightedSpec(), func(s *progress.Story) {
			s.Deploy("v2")
			s.Wait(3 * time.Minute)
			s.FailChecks("12")
			s.WaitForPhase(meshv1.PhaseFailed, time.Hour)
		}, 0},
		{"weighted, promoted by request", progress.WeightedSpec(), func(s *progress.Story) {
			s.Deploy("v2")
			s.Wait(2 * time.Minute)
			s.Ask(progress.ActionPromote)
			s.WaitForPhase(meshv1.PhaseSucceeded, time.Hour)
		}, 0},
		{"weighted, aborted then a new revision", progress.WeightedSpec(), func(s *progress.Story) {
			s.Deploy("v2")
			s.Wait(2 * time.Minute)
			s.Ask(progress.ActionAbort)
			s.WaitForPhase(meshv1.PhaseFailed, time.Hour)
			s.Ask(progress.ActionRetry + ":v3") // any new request value; retry after a failure is ignored once v3 is deployed
			s.Deploy("v3")
			s.WaitForPhase(meshv1.PhaseSucceeded, time.Hour)
		}, 0},
		{"weighted, the primary scaled by hand", progress.WeightedSpec(), promoted, 5},
		{"A/B", ab, promoted, 0},
		{"explicit steps", progress.StepsSpec(), func(s *progress.Story) {
			s.Deploy("v2")
			s.Wait(10 * time.Minute) // to the pause that waits for a resume
			s.Ask(progress.ActionResume)
			s.WaitForPhase(meshv1.PhaseSucceeded, time.Hour)
		}, 0},
		{"explicit steps, promoted gradually", gradual, promoted, 0},
		{"blue/green mirrored", mirrored, promoted, 0},
		{"weighted mirrored", mirroredWeighted, promoted, 0},
		{"DaemonSet, blue/green promoted", daemonSet(progress.IterationsSpec(3)), promoted, 0},
		{"DaemonSet, blue/green rolled back", daemonSet(progress.IterationsSpec(3)), func(s *progress.Story) {
			s.Deploy("v2")
			s.Wait(2 * time.Minute)
			s.FailChecks("12")
			s.WaitForPhase(meshv1.PhaseFailed, time.Hour)
		}, 0},
		{"DaemonSet, A/B", daemonSet(ab), promoted, 0},
	}
	seen := map[meshv1.CanaryPhase]bool{}
	for _, story := range stories {
		t.Run(story.name, func(t *testing.T) {
			cl := &cluster{rev: "v1", replicas: gitReplicas, scalePrimary: story.scalePrimary, daemonSet: story.spec.TargetRef.IsDaemonSet()}
			onStep := func(now time.Time, before meshv1.CanaryStatus, obs progress.Observation, d progress.Decision) {
				t.Helper()
				if cl.scalePrimary > 0 && cl.replicas == 0 && cl.primary != nil {
					cl.primary.Spec.Replicas = &cl.scalePrimary // scaled by hand while no rollout runs
				}
				if obs.TargetRevision != cl.rev {
					cl.rev, cl.replicas = obs.TargetRevision, gitReplicas // Git syncs a new revision
				}
				canary := &meshv1.Canary{
					ObjectMeta: metav1.ObjectMeta{Name: "podinfo", Namespace: "apps", UID: "c-1"},
					Spec:       story.spec,
					Status:     before,
				}
				// The controller: the decision, for what it read before writing.
				in := desired.Canary{Canary: canary, Target: cl.target(), Primary: cl.primary, Routing: d.Routing, Workload: d.Workload}
				in.Repair = cl.primary != nil && obs.TargetRevision == d.Status.LastPromotedRevision &&
					obs.PrimaryRevision == d.Status.LastPromotedRevision
				ctrl, err := desired.CanaryState(in)
				if err != nil {
					t.Fatalf("%s: controller: %v", d.Status.Phase, err)
				}
				cl.carryOut(ctrl, d.Workload)

				// The CLI: the status written, and the cluster as the controller left it.
				after := canary.DeepCopy()
				after.Status = d.Status
				cli, err := desired.CanaryState(desired.FromStatus(desired.Canary{Canary: after, Target: cl.target(), Primary: cl.primary}, now))
				if err != nil {
					t.Fatalf("%s: CLI: %v", d.Status.Phase, err)
				}
				where := fmt.Sprintf("phase %s, weight %d, step %d", d.Status.Phase, d.Status.CanaryWeight, d.Status.StepIndex)
				sameObjects(t, where, ctrl.Routing.All(), cli.Routing.All())
				if ctrl.Primary != nil {
					sameObjects(t, where+", the primary written", []render.Object{ctrl.Primary}, []render.Object{cli.Primary})
					if got, want := ctrl.Primary.GetObjectKind().GroupVersionKind().Kind, story.spec.TargetRef.KindOrDefault(); got != want {
						t.Fatalf("%s: the primary is a %s, want a %s like the target", where, got, want)
					}
				}
				seen[d.Status.Phase] = true
			}
			story.tell(progress.NewStory(t, story.spec, onStep))
		})
	}
	want := []meshv1.CanaryPhase{meshv1.PhaseInitializing, meshv1.PhaseInitialized, meshv1.PhaseProgressing,
		meshv1.PhasePromoting, meshv1.PhaseFinalising, meshv1.PhaseSucceeded, meshv1.PhaseRollingBack, meshv1.PhaseFailed}
	for _, p := range want {
		if !seen[p] {
			t.Errorf("no story went through phase %s (seen %v)", p, slices.Sorted(maps.Keys(seen)))
		}
	}
}

func sameObjects[O render.Object](t *testing.T, where string, ctrl, cli []O) {
	t.Helper()
	if len(ctrl) != len(cli) {
		t.Fatalf("%s: the controller writes %d objects, the CLI shows %d", where, len(ctrl), len(cli))
	}
	for i := range ctrl {
		// As applied: Istio's protobuf messages are compared by their JSON.
		a, errA := render.ToUnstructured(ctrl[i])
		b, errB := render.ToUnstructured(cli[i])
		if errA != nil || errB != nil {
			t.Fatalf("%s: %v %v", where, errA, errB)
		}
		if !equality.Semantic.DeepEqual(a.Object, b.Object) {
			t.Fatalf("%s: %s %s differs:\ncontroller: %v\nCLI:        %v", where, a.GetKind(), a.GetName(), a.Object, b.Object)
		}
	}
}
