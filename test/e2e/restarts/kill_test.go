package restarts

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/hooks"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/internal/workload"
	"canopy.dev/canopy/test/e2e/fixture"
	"canopy.dev/canopy/test/testenv"
)

const name = "reviews"

// bed is one test's Canary, in its own namespace, with its analysis webhook, the watches
// recording it, and the operator replica currently running.
type bed struct {
	t     *testing.T
	ns    string
	hooks *analysis
	rec   *recorder
	op    *operator
}

// newBed makes a test's Canary; without handOver its deletion is left to the garbage
// collector (deletionPolicy Orphan), as the tests that never delete it want.
func newBed(t *testing.T, threshold int32, handOver bool, change ...func(*meshv1.Canary)) *bed {
	t.Helper()
	testenv.SkipIfShort(t)
	b := &bed{t: t, ns: env.CreateNamespace(t), hooks: startAnalysis(t)}
	b.rec = record(t, b.ns, name)
	if err := env.Client.Create(t.Context(), fixture.Deployment(b.ns, name, "bookinfo/reviews:v1", 2)); err != nil {
		t.Fatal(err)
	}
	c := newCanary(b.ns, name, b.hooks.srv.URL, threshold)
	if !handOver {
		c.Spec.DeletionPolicy = meshv1.DeletionOrphan
	}
	for _, f := range change {
		f(c)
	}
	if err := env.Client.Create(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *bed) start() {
	first := b.op == nil
	b.op = startOperator(b.t, "canopy-"+b.ns, b.ns)
	if first {
		keepLogs(b.t, b.op) // every start appends to the same log
	}
}

// killAndRestart waits for fired, kills the operator with SIGKILL and starts a new one (it
// takes over once the dead one's lease expires). It returns the Canary as the kill left it.
func (b *bed) killAndRestart(fired <-chan struct{}) *meshv1.Canary {
	b.t.Helper()
	select {
	case <-fired:
	case <-time.After(3 * time.Minute):
		c := &meshv1.Canary{}
		_ = env.Client.Get(b.t.Context(), client.ObjectKey{Namespace: b.ns, Name: name}, c)
		b.t.Fatalf("the moment to kill never came; the Canary is at %s/%d/%d%%, its statuses were %v",
			c.Status.Phase, c.Status.StepIndex, c.Status.CanaryWeight, b.statuses())
	}
	b.op.kill(b.t)
	c := &meshv1.Canary{}
	if err := env.Client.Get(b.t.Context(), client.ObjectKey{Namespace: b.ns, Name: name}, c); err != nil {
		b.t.Fatal(err)
	}
	b.start()
	return c
}

// waitPhase waits until the Canary is in phase and the watch has delivered that status.
func (b *bed) waitPhase(phase meshv1.CanaryPhase) *meshv1.Canary {
	b.t.Helper()
	c := fixture.WaitPhase(b.t, env.Client, b.ns, name, phase)
	testenv.Eventually(b.t, time.Minute, func() error {
		if steps := b.statuses(); len(steps) == 0 || steps[len(steps)-1].Phase != phase {
			return fmt.Errorf("the watch has not delivered phase %s yet: %v", phase, steps)
		}
		return nil
	})
	return c
}

func (b *bed) statuses() []step {
	_, steps, _ := b.rec.snapshot()
	return steps
}

// The phases a promoted and a rolled back rollout go through, from the Canary's creation.
var (
	promotedPhases = []meshv1.CanaryPhase{
		meshv1.PhaseInitializing, meshv1.PhaseInitialized, meshv1.PhaseProgressing,
		meshv1.PhasePromoting, meshv1.PhaseFinalising, meshv1.PhaseSucceeded,
	}
	rolledBackPhases = []meshv1.CanaryPhase{
		meshv1.PhaseInitializing, meshv1.PhaseInitialized, meshv1.PhaseProgressing,
		meshv1.PhaseRollingBack, meshv1.PhaseFailed,
	}
)

// An operator killed during the initialization, right after it first wrote the primary or
// right after the status said so, finishes it: the target serves until the primary does,
// then the primary serves alone.
func TestKilledWhileInitializing(t *testing.T) {
	for _, tc := range []struct {
		name string
		arm  func(b *bed) <-chan struct{}
	}{
		{"right after the primary was created", func(b *bed) <-chan struct{} {
			return b.rec.when(func(ev event) bool { return ev.deployment != nil && ev.deployment.Name == render.PrimaryName(name) })
		}},
		{"right after the status shows Initializing", func(b *bed) <-chan struct{} { return b.rec.whenPhase(meshv1.PhaseInitializing) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBed(t, 2, false)
			fired := tc.arm(b)
			b.start()
			killed := b.killAndRestart(fired)
			_, primary := deploymentImage(t, b.ns, render.PrimaryName(name))
			ready, _ := workload.Ready(primary)
			t.Logf("killed with the status at %q; the primary, looked at right after, ready: %v", killed.Status.Phase, ready)

			c := b.waitPhase(meshv1.PhaseInitialized)
			wantWeights, wantPhases := promotion[:2], promotedPhases[:2]
			if weights, _, _ := b.rec.snapshot(); killed.Status.Phase == "" && len(weights) == 1 {
				// Killed before it wrote the routing or the status: the new process found
				// the primary ready and went to Initialized in one reconcile, never routing
				// to the target.
				wantWeights, wantPhases = promotion[1:2], promotedPhases[1:2]
			}
			b.rec.checkWeights(t, wantWeights)
			b.rec.checkSteps(t, wantPhases)
			if c.Status.LastPromotedRevision != c.Status.CurrentRevision {
				t.Errorf("last promoted revision %q, current %q", c.Status.LastPromotedRevision, c.Status.CurrentRevision)
			}
			testenv.Eventually(t, time.Minute, func() error {
				image, primary := deploymentImage(t, b.ns, render.PrimaryName(name))
				if ready, why := workload.Ready(primary); !ready || image != "bookinfo/reviews:v1" {
					return fmt.Errorf("primary on %q, ready %v: %s", image, ready, why)
				}
				if _, target := deploymentImage(t, b.ns, name); workload.Replicas(target) != 0 {
					return fmt.Errorf("target still runs %d replicas", workload.Replicas(target))
				}
				return nil
			})
		})
	}
}

// A rollout whose operator is killed at one point of the promotion (arm says when) finishes
// promoted, its weights and steps as if nothing had happened.
func promoteKilled(t *testing.T, arm func(b *bed) <-chan struct{}) (killed *meshv1.Canary) {
	t.Helper()
	b := newBed(t, 2, false)
	b.start()
	b.waitPhase(meshv1.PhaseInitialized)
	fired := arm(b)
	fixture.SetImage(t, env.Client, b.ns, name, "bookinfo/reviews:v2")
	killed = b.killAndRestart(fired)
	t.Logf("killed at %s/%d, status weight %d%%", killed.Status.Phase, killed.Status.StepIndex, killed.Status.CanaryWeight)

	b.checkPromoted()
	return killed
}

// checkPromoted waits for the rollout of v2 to succeed and checks that it went as it would
// have without a kill: every weight and status in order, each step announced once, v2 on
// the primary.
func (b *bed) checkPromoted() {
	t := b.t
	t.Helper()
	c := b.waitPhase(meshv1.PhaseSucceeded)
	b.rec.checkWeights(t, promotion)
	b.rec.checkSteps(t, promotedPhases)
	checkEventsOnce(t, b.ns, name, meshv1.ReasonWeightIncreased, meshv1.ReasonPromoting, meshv1.ReasonPromoted, meshv1.ReasonSucceeded)
	if image, _ := deploymentImage(t, b.ns, render.PrimaryName(name)); image != "bookinfo/reviews:v2" || c.Status.LastPromotedRevision != c.Status.CurrentRevision {
		t.Errorf("primary on %q, last promoted %q, current %q", image, c.Status.LastPromotedRevision, c.Status.CurrentRevision)
	}
}

func TestKilledAtEachPhaseOfAPromotion(t *testing.T) {
	for k := int32(1); k*stepWeight <= maxWeight; k++ {
		t.Run(fmt.Sprintf("right after the status shows step %d", k), func(t *testing.T) {
			t.Parallel()
			promoteKilled(t, func(b *bed) <-chan struct{} {
				return b.rec.whenStatus(func(st meshv1.CanaryStatus) bool {
					return st.Phase == meshv1.PhaseProgressing && st.StepIndex == k
				})
			})
		})
	}
	t.Run("during the analysis of step 2, before the webhook answers", func(t *testing.T) {
		t.Parallel()
		promoteKilled(t, func(b *bed) <-chan struct{} {
			fired := make(chan struct{})
			var once sync.Once
			b.hooks.onCall(func(p hooks.Payload) {
				if p.Type == meshv1.WebhookRollout && p.Weight == 2*stepWeight {
					once.Do(func() {
						// The call is in flight: the operator dies waiting for the answer.
						if err := b.op.proc.Kill(); err != nil {
							t.Errorf("operator: %v", err)
						}
						close(fired)
					})
				}
			})
			return fired
		})
	})
	for _, p := range []meshv1.CanaryPhase{meshv1.PhasePromoting, meshv1.PhaseFinalising} {
		t.Run("right after the status shows "+string(p), func(t *testing.T) {
			t.Parallel()
			promoteKilled(t, func(b *bed) <-chan struct{} { return b.rec.whenPhase(p) })
		})
	}
}

// Killed right after the VirtualService took a new weight, a few milliseconds later or
// not: before or after the status recorded the step. Seeds pick the step and the delay.
func TestKilledBetweenTheRoutingAndTheStatus(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 6))
			k := int32(rng.IntN(maxWeight/stepWeight)) + 1
			delay := time.Duration(rng.IntN(20)) * time.Millisecond
			killed := promoteKilled(t, func(b *bed) <-chan struct{} {
				fired := make(chan struct{})
				written := b.rec.whenWeight(k * stepWeight)
				go func() {
					<-written
					time.Sleep(delay)
					close(fired)
				}()
				return fired
			})
			t.Logf("killed %s after the VirtualService routed %d%% to the canary; the status had recorded it: %v",
				delay, k*stepWeight, killed.Status.CanaryWeight == k*stepWeight)
		})
	}
}

// A failing revision whose operator is killed while it rolls back ends Failed with the
// primary untouched; one killed between two failed checks counts each check once.
func TestKilledWhileRollingBack(t *testing.T) {
	for _, tc := range []struct {
		name      string
		threshold int32
		arm       func(b *bed) <-chan struct{}
	}{
		{"right after the status shows RollingBack", 1, func(b *bed) <-chan struct{} { return b.rec.whenPhase(meshv1.PhaseRollingBack) }},
		{"between two failed checks", 2, func(b *bed) <-chan struct{} {
			return b.rec.whenStatus(func(st meshv1.CanaryStatus) bool { return st.FailedChecks == 1 })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBed(t, tc.threshold, false)
			b.start()
			b.waitPhase(meshv1.PhaseInitialized)
			fired := tc.arm(b)
			fixture.SetImage(t, env.Client, b.ns, name, "bookinfo/reviews:bad-v2")
			b.killAndRestart(fired)

			c := b.waitPhase(meshv1.PhaseFailed)
			b.rec.checkWeights(t, rollback)
			b.rec.checkSteps(t, rolledBackPhases)
			checkEventsOnce(t, b.ns, name, meshv1.ReasonWeightIncreased, meshv1.ReasonCheckFailed, meshv1.ReasonRollingBack)
			if c.Status.FailedChecks != tc.threshold {
				t.Errorf("rolled back after %d failed checks, want exactly the threshold %d", c.Status.FailedChecks, tc.threshold)
			}
			if c.Status.LastFailedRevision != c.Status.CurrentRevision {
				t.Errorf("last failed revision %q, current %q", c.Status.LastFailedRevision, c.Status.CurrentRevision)
			}
			if image, _ := deploymentImage(t, b.ns, render.PrimaryName(name)); image != "bookinfo/reviews:v1" {
				t.Errorf("primary on %q after the rollback, want v1 untouched", image)
			}
			testenv.Eventually(t, time.Minute, func() error {
				if _, target := deploymentImage(t, b.ns, name); workload.Replicas(target) != 0 {
					return fmt.Errorf("the failed canary still runs %d replicas", workload.Replicas(target))
				}
				return nil
			})
		})
	}
}

// A deleted Canary handing the service back to its target, its operator killed once the
// target was scaled back up: the restarted operator finishes the hand-over, and only then
// does the Canary go.
func TestKilledWhileRevertingADeletedCanary(t *testing.T) {
	t.Parallel()
	b := newBed(t, 2, true)
	b.start()
	b.waitPhase(meshv1.PhaseInitialized)
	testenv.Eventually(t, time.Minute, func() error {
		if _, target := deploymentImage(t, b.ns, name); workload.Replicas(target) != 0 {
			return fmt.Errorf("target runs %d replicas, waiting for 0", workload.Replicas(target))
		}
		return nil
	})
	fired := b.rec.when(func(ev event) bool {
		d := ev.deployment
		return d != nil && !ev.deleted && d.Name == name && workload.Replicas(d) > 0
	})
	if err := env.Client.Delete(t.Context(), &meshv1.Canary{ObjectMeta: metav1.ObjectMeta{Namespace: b.ns, Name: name}}); err != nil {
		t.Fatal(err)
	}
	killed := b.killAndRestart(fired)
	if killed.DeletionTimestamp.IsZero() {
		t.Fatalf("killed before the deletion was seen")
	}

	testenv.Eventually(t, time.Minute, func() error {
		err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: b.ns, Name: name}, &meshv1.Canary{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("the Canary is still there (%v)", err)
		}
		return nil
	})
	b.rec.checkSplits(t)
	_, target := deploymentImage(t, b.ns, name)
	if ready, why := workload.Ready(target); !ready || workload.Replicas(target) != 2 {
		t.Errorf("target runs %d replicas, ready %v (%s); want the primary's 2, ready", workload.Replicas(target), ready, why)
	}
	apex := &corev1.Service{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: b.ns, Name: name}, apex); err != nil {
		t.Fatal(err)
	}
	if apex.Spec.Selector["app"] != name || len(apex.OwnerReferences) != 0 {
		t.Errorf("apex Service selects %v with owners %v; want the target's pods, no owner", apex.Spec.Selector, apex.OwnerReferences)
	}
	for _, o := range []client.Object{
		&istionetv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: name}},
		&istionetv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: render.PrimaryName(name)}},
		&istionetv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: render.CanaryName(name)}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: render.PrimaryName(name)}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: render.CanaryName(name)}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: render.PrimaryName(name)}},
	} {
		err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: b.ns, Name: o.GetName()}, o)
		if !apierrors.IsNotFound(err) && o.GetDeletionTimestamp().IsZero() {
			t.Errorf("%T %s is still there after the revert (%v)", o, o.GetName(), err)
		}
	}
}

// One rollout, its operator killed right after every status it writes: each new process
// takes one step and dies, and the rollout still goes 20, 40, 60, promoted, one step at a
// time.
func TestKilledAfterEveryStatusOfARollout(t *testing.T) {
	t.Parallel()
	b := newBed(t, 2, false)
	b.start()
	b.waitPhase(meshv1.PhaseInitialized)
	statuses := b.statuses()
	last := statuses[len(statuses)-1]
	fixture.SetImage(t, env.Client, b.ns, name, "bookinfo/reviews:v2")
	var kills []string
	for last.Phase != meshv1.PhaseSucceeded {
		from := last
		fired := b.rec.whenStatus(func(st meshv1.CanaryStatus) bool { return stepOf(st) != from })
		killed := b.killAndRestart(fired)
		last = stepOf(killed.Status)
		kills = append(kills, last.String())
	}
	t.Logf("killed after each of %v", kills)

	b.checkPromoted()
}

// A new revision waiting for its confirm-rollout gate when the operator is killed still
// waits after the restart (the gate is asked again, nothing moves), and rolls out once
// confirmed.
func TestKilledWhileWaitingForConfirmation(t *testing.T) {
	t.Parallel()
	b := newBed(t, 2, false, func(c *meshv1.Canary) {
		analysis := c.Spec.Analysis.Webhooks[0]
		c.Spec.Analysis.Webhooks = append(c.Spec.Analysis.Webhooks, meshv1.CanaryWebhook{
			Name: "confirm", Type: meshv1.WebhookConfirmRollout, URL: analysis.URL, Timeout: analysis.Timeout, Retries: analysis.Retries,
		})
	})
	b.start()
	b.waitPhase(meshv1.PhaseInitialized)
	fired := b.rec.whenPhase(meshv1.PhaseWaiting)
	fixture.SetImage(t, env.Client, b.ns, name, "bookinfo/reviews:v2")
	b.killAndRestart(fired)

	asked := b.hooks.confirmAsked()
	testenv.Eventually(t, time.Minute, func() error {
		if n := b.hooks.confirmAsked(); n <= asked {
			return fmt.Errorf("the restarted operator has not asked the gate yet (%d calls)", n)
		}
		return nil
	})
	if c := fixture.Canary(t, env.Client, b.ns, name); c.Status.Phase != meshv1.PhaseWaiting || c.Status.CanaryWeight != 0 {
		t.Fatalf("after the restart, with the gate closed, the Canary is at %s/%d%%; want Waiting/0%%", c.Status.Phase, c.Status.CanaryWeight)
	}
	b.hooks.confirm()
	b.waitPhase(meshv1.PhaseSucceeded)
	b.rec.checkWeights(t, promotion)
	b.rec.checkSteps(t, []meshv1.CanaryPhase{
		meshv1.PhaseInitializing, meshv1.PhaseInitialized, meshv1.PhaseWaiting, meshv1.PhaseProgressing,
		meshv1.PhasePromoting, meshv1.PhaseFinalising, meshv1.PhaseSucceeded,
	})
	checkEventsOnce(t, b.ns, name, meshv1.ReasonWeightIncreased, meshv1.ReasonWaitingForGate, meshv1.ReasonPromoting, meshv1.ReasonSucceeded)
}
