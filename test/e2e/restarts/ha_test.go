package restarts

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/test/e2e/fixture"
	"canopy.dev/canopy/test/testenv"
)

// Two replicas share the Lease, as the Deployment in config/manager runs them. The leader,
// found from the Lease's holder, is killed mid-rollout (or stopped gracefully, releasing the
// Lease); the standby takes the Lease over and finishes the rollout with no step skipped or
// repeated. Until then the standby writes nothing: no status names it as its writer.
func TestLeaderKilledMidRollout(t *testing.T) {
	atStep2 := func(st meshv1.CanaryStatus) bool { return st.Phase == meshv1.PhaseProgressing && st.StepIndex == 2 }
	for _, tc := range []struct {
		name     string
		at       func(meshv1.CanaryStatus) bool
		graceful bool
	}{
		{"at step 2", atStep2, false},
		{"while promoting", func(st meshv1.CanaryStatus) bool { return st.Phase == meshv1.PhasePromoting }, false},
		// SIGTERM, as in a rolling update: the leader releases the Lease as it exits.
		{"stopped gracefully at step 2", atStep2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			leaderKilled(t, tc.at, tc.graceful)
		})
	}
}

func leaderKilled(t *testing.T, at func(meshv1.CanaryStatus) bool, graceful bool) {
	b := newBed(t, 2, false)
	ops := []*operator{startOperator(t, "canopy-a-"+b.ns, b.ns), startOperator(t, "canopy-b-"+b.ns, b.ns)}
	keepLogs(t, ops...)
	b.waitPhase(meshv1.PhaseInitialized)
	leader, standby, lease := findLeader(t, b.ns, ops)
	t.Logf("%s leads as %s; %s stands by", leader.name, *lease.Spec.HolderIdentity, standby.name)

	fired := b.rec.whenStatus(at)
	fixture.SetImage(t, env.Client, b.ns, name, "bookinfo/reviews:v2")
	select {
	case <-fired:
	case <-time.After(3 * time.Minute):
		t.Fatalf("the moment to kill never came; statuses %v", b.statuses())
	}
	tookOver := b.rec.when(func(ev event) bool {
		return ev.canary != nil && slices.ContainsFunc(ev.canary.ManagedFields, func(f metav1.ManagedFieldsEntry) bool {
			return f.Manager == standby.name && f.Subresource == "status"
		})
	})
	// Counted before the leader is told to go: a graceful leader releases its Lease before
	// its process has exited (slower under the race detector), and the standby may write
	// before Stop returns.
	killedAt := len(b.statuses())
	killed := time.Now()
	if graceful {
		if err := leader.proc.Stop(10 * time.Second); err != nil {
			t.Fatalf("stopping %s: %v", leader.name, err)
		}
	} else {
		leader.kill(t)
	}
	select {
	case <-tookOver:
	case <-time.After(3 * time.Minute):
		t.Fatalf("the standby never wrote the status; statuses %v", b.statuses())
	}
	t.Logf("the standby's first status write came %s after the leader was told to go (graceful %v; lease %s, retry %s)",
		time.Since(killed).Round(10*time.Millisecond), graceful, leaseDuration, retryPeriod)

	b.checkPromoted()

	after := getLease(t, b.ns)
	if *after.Spec.HolderIdentity == *lease.Spec.HolderIdentity || ptrValue(after.Spec.LeaseTransitions) <= ptrValue(lease.Spec.LeaseTransitions) {
		t.Errorf("the Lease is held by %s after %d transitions; before the kill %s after %d",
			*after.Spec.HolderIdentity, ptrValue(after.Spec.LeaseTransitions), *lease.Spec.HolderIdentity, ptrValue(lease.Spec.LeaseTransitions))
	}
	if leads, err := standby.isLeader(); err != nil || !leads {
		t.Errorf("%s does not report itself the leader (%v)", standby.name, err)
	}

	// Who wrote the status: its field managers are the replicas' names (their user agents).
	_, _, writers := b.rec.snapshot()
	for i, managers := range writers {
		if i < killedAt && slices.Contains(managers, standby.name) {
			t.Errorf("status %d, before the leader was killed, was written by the standby: managers %v", i, managers)
		}
	}
	if last := writers[len(writers)-1]; !slices.Contains(last, standby.name) {
		t.Errorf("the last status has managers %v, want %s among them", last, standby.name)
	}
	checkReconcilesOnlyAsLeader(t, standby)
}

// findLeader waits until the Lease has a holder and exactly one replica says it leads.
func findLeader(t *testing.T, ns string, ops []*operator) (leader, standby *operator, lease *coordinationv1.Lease) {
	t.Helper()
	testenv.Eventually(t, time.Minute, func() error {
		lease = getLease(t, ns)
		if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
			return errors.New("the Lease has no holder")
		}
		var leaders []*operator
		for _, o := range ops {
			leads, err := o.isLeader()
			if err != nil {
				return err
			}
			if leads {
				leaders = append(leaders, o)
			} else {
				standby = o
			}
		}
		if len(leaders) != 1 {
			return fmt.Errorf("%d replicas say they lead", len(leaders))
		}
		leader = leaders[0]
		return nil
	})
	// The holder must not have changed while the replicas were asked.
	if again := getLease(t, ns); *again.Spec.HolderIdentity != *lease.Spec.HolderIdentity {
		t.Fatalf("the Lease moved from %s to %s while looking for the leader", *lease.Spec.HolderIdentity, *again.Spec.HolderIdentity)
	}
	return leader, standby, lease
}

func getLease(t *testing.T, ns string) *coordinationv1.Lease {
	t.Helper()
	lease := &coordinationv1.Lease{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "canopy-" + ns}, lease); err != nil {
		t.Fatal(err)
	}
	return lease
}

func ptrValue(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}

// checkReconcilesOnlyAsLeader fails the test if the replica's log shows a reconcile of a
// Canary before it acquired the Lease.
func checkReconcilesOnlyAsLeader(t *testing.T, o *operator) {
	t.Helper()
	data, err := os.ReadFile(o.proc.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	acquired := slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, "Successfully acquired lease") })
	reconciled := slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, `"msg":"Reconciled"`) })
	switch {
	case acquired < 0:
		t.Errorf("%s never logged that it acquired the Lease", o.name)
	case reconciled < 0:
		t.Errorf("%s never logged a reconcile", o.name)
	case reconciled < acquired:
		t.Errorf("%s reconciled (line %d) before it acquired the Lease (line %d)", o.name, reconciled, acquired)
	}
}
