package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"k8s.io/utils/ptr"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/progress"
)

func TestStatusViewGolden(t *testing.T) {
	tests := []struct {
		state string
		want  string
	}{{
		state: "progressing",
		want: `Canary bookinfo/reviews: Progressing
  Revision   7f9c2d1e4b5a (the primary runs 1a2b3c4d5e6f)
  Progress   [########################----------------]  30% to the canary, promoted after 50%
             step 3 of 5: 10 20 [30] 40 50
  Failed     1 check (a rollback at 3)
  Next       the confirm-traffic-increase gate approve holds the rollout until its webhook answers 2xx

Checks
  NAME                   OUTCOME   VALUE   THRESHOLD   MEASURED   MESSAGE
  request-success-rate   Pass      99.87   >= 99       12s ago
  request-duration       Fail      612     <= 500      12s ago    p99 above the threshold

Gates
  NAME       TYPE                       STATE      ATTEMPTS   LAST CALL   MESSAGE
  approve    confirm-traffic-increase   waiting    3          5s ago      gate closed
  incident   rollback                   watching   4          5s ago      no incident open

Conditions
  TYPE          STATUS   REASON        SINCE     MESSAGE
  Ready         False    Progressing   95s ago   Routing 30% of the traffic to the canary
  Reconciling   True     Progressing   95s ago   Rollout of revision 7f9c2d1e4b5a in progress

Events
  LAST SEEN   TYPE      REASON            MESSAGE
  45s ago     Warning   CheckFailed       request-duration 612 outside <= 500
  15s ago     Normal    WeightIncreased   Routing 30% of the traffic to the canary
`,
	}, {
		state: "paused",
		want: `Canary bookinfo/reviews: Progressing (paused)
  Revision   7f9c2d1e4b5a (the primary runs 1a2b3c4d5e6f)
  Progress   [########################----------------]  30% to the canary, promoted after 50%
             step 3 of 5: 10 20 [30] 40 50
  Failed     1 check (a rollback at 3)
  Next       paused: continue with kubectl canopy resume reviews -n bookinfo
`,
	}, {
		state: "abtesting",
		want: `Canary bookinfo/reviews: Progressing
  Revision   7f9c2d1e4b5a (the primary runs 1a2b3c4d5e6f)
  Progress   [################------------------------]  iteration 2 of 5, A/B: matching requests go to the canary
  Failed     0 checks (a rollback at 3)

Checks
  NAME                   OUTCOME   VALUE   THRESHOLD   MEASURED                        MESSAGE
  request-success-rate   NoData    -       -           3s ago, holding since 63s ago   no requests in 1m
`,
	}, {
		state: "failed",
		want: `Canary bookinfo/reviews: Failed
  Revision   7f9c2d1e4b5a (the primary runs 1a2b3c4d5e6f)
  Progress   [----------------------------------------]  revision 7f9c2d1e4b5a rolled back
  Failed     3 checks (a rollback at 3)
  Next       roll the revision out again with kubectl canopy retry reviews -n bookinfo, or change the Deployment

Conditions
  TYPE       STATUS   REASON       SINCE     MESSAGE
  Ready      False    RolledBack   10m ago   Revision 7f9c2d1e4b5a was rolled back after 3 failed checks; request retry to roll it out again
  Promoted   False    RolledBack   10m ago   Revision 7f9c2d1e4b5a was rolled back after 3 failed checks
`,
	}, {
		state: "succeeded",
		want: `Canary bookinfo/reviews: Succeeded
  Revision   7f9c2d1e4b5a
  Progress   [########################################]  revision 7f9c2d1e4b5a promoted
  Failed     0 checks (a rollback at 3)

Conditions
  TYPE    STATUS   REASON      SINCE      MESSAGE
  Ready   True     Succeeded   120m ago   Revision 7f9c2d1e4b5a promoted
`,
	}, {
		state: "deletionblocked",
		want: `Canary bookinfo/reviews: Terminating
  Revision   7f9c2d1e4b5a (the primary runs 1a2b3c4d5e6f)
  Progress   [----------------------------------------]  the Canary is being deleted
  Failed     0 checks (a rollback at 3)
  Next       deletion waits for a promoted revision: set the Deployment back to the primary's revision (in Git), or hand the target over as it is with kubectl canopy confirm-deletion reviews -n bookinfo

Conditions
  TYPE    STATUS   REASON            SINCE     MESSAGE
  Ready   False    DeletionBlocked   60s ago   Deletion waits: Deployment reviews carries revision 7f9c2d1e4b5a (image reviews:v2), which was not promoted
`,
	}, {
		state: "new",
		want: `Canary bookinfo/reviews: Pending
  Revision   -
  Progress   [----------------------------------------]  initializing: the primary Deployment is being created
  Failed     0 checks (a rollback at 3)
`,
	}}
	for _, tt := range tests {
		t.Run(tt.state, func(t *testing.T) {
			c := fixtureCanary(tt.state)
			v := statusView{canary: c, now: fixedNow, maxEvents: 2}
			if tt.state == "progressing" {
				v.events = fixtureEvents(c)
			}
			var b bytes.Buffer
			writeStatus(&b, v, palette{})
			got := b.String()
			// Only the progressing fixture has events; the others end with "none".
			if tt.state != "progressing" {
				tt.want += "\nEvents\n  none\n"
			}
			if got != tt.want {
				t.Errorf("status view:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestStatusViewSaysWhyEventsAreMissing(t *testing.T) {
	var b bytes.Buffer
	writeStatus(&b, statusView{canary: fixtureCanary("succeeded"), now: fixedNow, eventsErr: errString("events.events.k8s.io is forbidden")}, palette{})
	if !strings.HasSuffix(b.String(), "Events\n  cannot read the events: events.events.k8s.io is forbidden\n") {
		t.Errorf("view:\n%s", b.String())
	}
}

// A dry-run check is marked so, and an Inconclusive one is coloured as the outcomes that hold.
func TestStatusViewMarksDryRunAndInconclusive(t *testing.T) {
	c := fixtureCanary("progressing")
	c.Status.Checks[1].DryRun = true
	c.Status.Checks[0].Outcome = meshv1.OutcomeInconclusive
	var b bytes.Buffer
	writeStatus(&b, statusView{canary: c, now: fixedNow}, palette{on: true})
	for _, want := range []string{"request-duration (dry run)", "\x1b[33mInconclusive\x1b[0m"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("view lacks %q:\n%q", want, b.String())
		}
	}
}

// A check compared with the primary shows both values.
func TestStatusViewShowsThePrimarysValue(t *testing.T) {
	c := fixtureCanary("progressing")
	c.Status.Checks[1].Value, c.Status.Checks[1].PrimaryValue = "210", "24"
	var b bytes.Buffer
	writeStatus(&b, statusView{canary: c, now: fixedNow}, palette{})
	if !strings.Contains(b.String(), "210 (primary 24)") {
		t.Errorf("view lacks both values:\n%s", b.String())
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestColoursOnlyWhenOn(t *testing.T) {
	c := fixtureCanary("progressing")
	var plainOut, coloured bytes.Buffer
	writeStatus(&plainOut, statusView{canary: c, now: fixedNow}, palette{})
	writeStatus(&coloured, statusView{canary: c, now: fixedNow}, palette{on: true})
	if strings.Contains(plainOut.String(), "\x1b[") {
		t.Errorf("plain output has escape codes:\n%q", plainOut.String())
	}
	for _, want := range []string{
		"[\x1b[36m########################\x1b[0m----------------]", // the bar, cyan while progressing
		"\x1b[32mPass\x1b[0m      ",                                 // coloured, then padded to the column
		"\x1b[31mFail\x1b[0m      ",
	} {
		if !strings.Contains(coloured.String(), want) {
			t.Errorf("coloured output lacks %q:\n%q", want, coloured.String())
		}
	}
}

func TestProgressBar(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *meshv1.Canary)
		bar    string
		label  string
		steps  string
	}{{
		name:   "first step",
		mutate: func(c *meshv1.Canary) { c.Status.CanaryWeight, c.Status.StepIndex = 10, 1 },
		bar:    "[########--------------------------------]", label: "10% to the canary, promoted after 50%",
		steps: "step 1 of 5: [10] 20 30 40 50",
	}, {
		name: "stepWeights",
		mutate: func(c *meshv1.Canary) {
			c.Spec.Analysis.StepWeight, c.Spec.Analysis.StepWeights, c.Spec.Analysis.MaxWeight = nil, []int32{5, 10, 25, 50}, 50
			c.Status.CanaryWeight, c.Status.StepIndex = 25, 3
		},
		bar: "[####################--------------------]", label: "25% to the canary, promoted after 50%",
		steps: "step 3 of 4: 5 10 [25] 50",
	}, {
		name: "many steps are abbreviated",
		mutate: func(c *meshv1.Canary) {
			c.Spec.Analysis.StepWeight, c.Spec.Analysis.MaxWeight = ptr.To[int32](2), 100
			c.Status.CanaryWeight, c.Status.StepIndex = 40, 20
		},
		bar: "[################------------------------]", label: "40% to the canary, promoted after 100%",
		steps: "step 20 of 50: 2 4 ... 38 [40] 42 ... 98 100",
	}, {
		name: "a step that does not divide maxWeight ends at maxWeight",
		mutate: func(c *meshv1.Canary) {
			c.Spec.Analysis.StepWeight, c.Status.CanaryWeight, c.Status.StepIndex = ptr.To[int32](20), 50, 3
		},
		bar: "[########################################]", label: "50% to the canary, promoted after 50%",
		steps: "step 3 of 3: 20 40 [50]",
	}, {
		name: "waiting for confirm-rollout",
		mutate: func(c *meshv1.Canary) {
			c.Status.Phase, c.Status.CanaryWeight, c.Status.StepIndex = meshv1.PhaseWaiting, 0, 0
		},
		bar: "[----------------------------------------]", label: "waiting for confirm-rollout; 0% to the canary, promoted after 50%",
		steps: "step 0 of 5: 10 20 30 40 50",
	}, {
		name: "blue/green with mirroring",
		mutate: func(c *meshv1.Canary) {
			c.Spec.Analysis.StepWeight, c.Spec.Analysis.Iterations, c.Spec.Analysis.Mirror = nil, ptr.To[int32](4), true
			c.Status.Iterations = 1
		},
		bar: "[##########------------------------------]", label: "iteration 1 of 4, blue/green: mirroring 100% of the traffic to the canary",
	}, {
		name:   "promoting",
		mutate: func(c *meshv1.Canary) { c.Status.Phase = meshv1.PhasePromoting },
		bar:    "[########################################]", label: "promoting revision 7f9c2d1e4b5a: the primary rolls it out",
	}, {
		name: "explicit steps: at a pause until resumed",
		mutate: func(c *meshv1.Canary) {
			c.Spec.Analysis.StepWeight = nil
			c.Spec.Analysis.Steps = []meshv1.CanaryStep{{SetWeight: ptr.To[int32](20)}, {Pause: &meshv1.StepPause{}}, {Analysis: &meshv1.StepAnalysis{Intervals: 3}}, {SetWeight: ptr.To[int32](60)}}
			c.Status.CanaryWeight, c.Status.StepIndex, c.Status.Paused = 20, 2, true
		},
		bar: "[####################--------------------]", label: "20% to the canary",
		steps: "step 2 of 4: pause until resumed",
	}, {
		name: "explicit steps: in an analysis step",
		mutate: func(c *meshv1.Canary) {
			c.Spec.Analysis.StepWeight = nil
			c.Spec.Analysis.Steps = []meshv1.CanaryStep{{SetWeight: ptr.To[int32](20)}, {Pause: &meshv1.StepPause{}}, {Analysis: &meshv1.StepAnalysis{Intervals: 3}}, {SetWeight: ptr.To[int32](60)}}
			c.Status.CanaryWeight, c.Status.StepIndex, c.Status.Iterations = 20, 3, 1
		},
		bar: "[##############################----------]", label: "20% to the canary",
		steps: "step 3 of 4: analysis 2 of 3",
	}, {
		name: "gradual promotion",
		mutate: func(c *meshv1.Canary) {
			c.Status.Phase, c.Status.CanaryWeight = meshv1.PhasePromoting, 30
			c.Status.LastPromotedRevision = c.Status.CurrentRevision
		},
		bar: "[############################------------]", label: "promoting revision 7f9c2d1e4b5a gradually: 30% still on the canary",
	}, {
		name:   "rolling back",
		mutate: func(c *meshv1.Canary) { c.Status.Phase, c.Status.CanaryWeight = meshv1.PhaseRollingBack, 0 },
		bar:    "[----------------------------------------]", label: "rolling back: routing all traffic to the primary",
	}, {
		name: "the defaults of a Canary read without the CRD's (maxWeight 50)",
		mutate: func(c *meshv1.Canary) {
			c.Spec.Analysis.MaxWeight, c.Status.CanaryWeight, c.Status.StepIndex = 0, 20, 2
		},
		bar: "[################------------------------]", label: "20% to the canary, promoted after 50%",
		steps: "step 2 of 5: 10 [20] 30 40 50",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fixtureCanary("progressing")
			tt.mutate(c)
			label, frac, steps := progressOf(c)
			if got := bar(frac, c.Status.Phase, palette{}); got != tt.bar {
				t.Errorf("bar %s, want %s", got, tt.bar)
			}
			if label != tt.label {
				t.Errorf("label %q, want %q", label, tt.label)
			}
			if steps != tt.steps {
				t.Errorf("steps %q, want %q", steps, tt.steps)
			}
		})
	}
}

func TestGetTableGolden(t *testing.T) {
	items := []meshv1.Canary{*fixtureCanary("progressing"), *fixtureCanary("failed"), *fixtureCanary("new")}
	items[1].Name, items[2].Name = "ratings", "details"
	items[2].Namespace = "shop"
	items[0].Spec.Suspend = true

	tests := []struct {
		name      string
		all, wide bool
		want      string
	}{{
		name: "namespace",
		want: `NAME      PHASE                     WEIGHT   STEP   FAILED   AGE
reviews   Progressing (suspended)   30%      3/5    1/3      2d1h
ratings   Failed                    0%       -      3/3      2d1h
details   Pending                   0%       -      0/3      4s
`,
	}, {
		name: "all namespaces, wide",
		all:  true, wide: true,
		want: `NAMESPACE   NAME      PHASE                     WEIGHT   STEP   FAILED   AGE    REVISION       PROMOTED       MESSAGE
bookinfo    reviews   Progressing (suspended)   30%      3/5    1/3      2d1h   7f9c2d1e4b5a   1a2b3c4d5e6f   Routing 30% of the traffic to the canary
bookinfo    ratings   Failed                    0%       -      3/3      2d1h   7f9c2d1e4b5a   1a2b3c4d5e6f   Revision 7f9c2d1e4b5a was rolled back after 3 failed checks; request retry to roll it out again
shop        details   Pending                   0%       -      0/3      4s     -              -
`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			writeCanaryTable(&b, items, tt.all, tt.wide, fixedNow, palette{})
			if b.String() != tt.want {
				t.Errorf("table:\n%s\nwant:\n%s", b.String(), tt.want)
			}
		})
	}
}

func TestRolloutEnded(t *testing.T) {
	const rev, old = "7f9c2d1e4b5a", "1a2b3c4d5e6f"
	tests := []struct {
		name    string
		state   string
		mutate  func(c *meshv1.Canary)
		target  string
		done    bool
		failure string
	}{
		{name: "promoted", state: "succeeded", target: rev, done: true},
		{name: "promoted, target unknown", state: "succeeded", done: true},
		{name: "in progress", state: "progressing", target: rev},
		{
			name: "the previous rollout's success while the new revision is not seen yet", state: "succeeded", target: "0123456789ab",
		},
		{name: "rolled back", state: "failed", target: rev, done: true, failure: "bookinfo/reviews: revision 7f9c2d1e4b5a failed: Revision 7f9c2d1e4b5a was rolled back after 3 failed checks; request retry to roll it out again (3 failed checks)"},
		{name: "rolled back, target unknown", state: "failed", done: true, failure: "revision 7f9c2d1e4b5a failed"},
		{
			name: "the target went back to the promoted revision after a rollback", state: "failed", target: old, done: true,
		},
		{
			name: "a spec the controller has not seen yet", state: "succeeded", target: rev,
			mutate: func(c *meshv1.Canary) { c.Generation = 2 },
		},
		{
			name: "stalled", state: "progressing", target: rev, done: true, failure: "bookinfo/reviews is stalled (InvalidSpec): spec.service.timeout: bad",
			mutate: func(c *meshv1.Canary) {
				c.Status.Conditions = append(c.Status.Conditions, fixtureCondition(meshv1.ConditionStalled, meshv1.ReasonInvalidSpec, "spec.service.timeout: bad"))
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fixtureCanary(tt.state)
			if tt.mutate != nil {
				tt.mutate(c)
			}
			done, err := rolloutEnded(c, tt.target)
			if done != tt.done {
				t.Errorf("done = %v, want %v", done, tt.done)
			}
			switch {
			case tt.failure == "" && err != nil:
				t.Errorf("unexpected failure: %v", err)
			case tt.failure != "" && (err == nil || !strings.Contains(err.Error(), tt.failure)):
				t.Errorf("failure %v, want one with %q", err, tt.failure)
			}
		})
	}
}

func TestRoutingOfFollowsTheStatus(t *testing.T) {
	c := fixtureCanary("progressing")
	if w := progress.RoutingOf(&c.Spec, &c.Status); w.PrimaryWeight != 70 || w.CanaryWeight != 30 || w.Match || w.Mirror {
		t.Errorf("weighted at 30%%: %+v", w)
	}
	ab := fixtureCanary("abtesting")
	if w := progress.RoutingOf(&ab.Spec, &ab.Status); w.PrimaryWeight != 100 || !w.Match {
		t.Errorf("A/B testing under way: %+v", w)
	}
	ab.Status.Phase = meshv1.PhaseSucceeded
	if w := progress.RoutingOf(&ab.Spec, &ab.Status); w.Match {
		t.Errorf("A/B testing at rest routes no match: %+v", w)
	}
	c.Spec.Analysis.Mirror = true
	if w := progress.RoutingOf(&c.Spec, &c.Status); !w.Mirror || w.MirrorWeight != 100 {
		t.Errorf("mirroring: %+v", w)
	}
}

func TestAgesAreKubectls(t *testing.T) {
	for d, want := range map[time.Duration]string{4 * time.Second: "4s", 95 * time.Second: "95s", 49 * time.Hour: "2d1h"} {
		if got := age(*at(d), fixedNow); got != want {
			t.Errorf("age of %s = %s, want %s", d, got, want)
		}
	}
}
