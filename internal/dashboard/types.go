// Package dashboard serves kubectl canopy dashboard: a local web UI of a cluster's Canaries
// and MeshPolicies that updates live from watches and sends the CLI's requests.
//
// One set of watches (Canaries, MeshPolicies, the Canaries' events) feeds an in-memory
// cache shared by every browser tab; tabs read the cache through a JSON API and hear of
// changes through server-sent events, so a tab never makes the apiserver do anything but
// the writes a person asks for. Everything runs as the user of the kubeconfig, so the
// apiserver's RBAC judges every read and every request.
//
// What a Canary's status means in words (phase, step, progress, hints) and how a request
// is written are the kubectl plugin's: internal/cli implements Views, so the dashboard and
// kubectl canopy status never disagree.
package dashboard

import (
	"context"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// Views is what the kubectl plugin lends the dashboard: its words for a Canary's state, its
// requests and its renderer.
type Views interface {
	// Row is a Canary as kubectl canopy get -o wide shows it.
	Row(c *meshv1.Canary, now time.Time) CanaryRow
	// Detail is a Canary as kubectl canopy status shows it, events included.
	Detail(c *meshv1.Canary, events []eventsv1.Event, eventsErr error, now time.Time) CanaryDetail
	// Actions are the manual controls, in the CLI's order.
	Actions() []string
	// Request sends action to the Canary or MeshPolicy obj (its kind, namespace and name
	// set) as kubectl canopy ACTION does, and returns the annotation's value; the
	// apiserver's refusal is returned as it is.
	Request(ctx context.Context, obj client.Object, action string) (string, error)
	// Generated are the objects canopy generates for a Canary or MeshPolicy, as kubectl
	// canopy render prints them (from the cluster's objects).
	Generated(ctx context.Context, obj client.Object) ([]GeneratedObject, error)
}

// CanaryRow is a line of the list.
type CanaryRow struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Phase is status.phase; PhaseText is the CLI's words for it (paused, suspended...).
	Phase     string `json:"phase"`
	PhaseText string `json:"phaseText"`
	Weight    int32  `json:"weight"`
	MaxWeight int32  `json:"maxWeight"`
	Step      string `json:"step"`
	Failed    int32  `json:"failedChecks"`
	Threshold int32  `json:"threshold"`
	// Revision is the revision in analysis (status.currentRevision), Promoted the one the
	// primary runs.
	Revision string `json:"revision"`
	Promoted string `json:"promoted"`
	Message  string `json:"message"`
	Age      string `json:"age"`
	Paused   bool   `json:"paused"`
	Rolling  bool   `json:"rolling"`
}

// CanaryDetail is a Canary's page.
type CanaryDetail struct {
	CanaryRow
	Progress   string      `json:"progress"`
	Steps      string      `json:"steps"`
	Hints      []string    `json:"hints"`
	Checks     []Check     `json:"checks"`
	Gates      []Gate      `json:"gates"`
	Conditions []Condition `json:"conditions"`
	Events     []Event     `json:"events"`
	EventsErr  string      `json:"eventsError,omitempty"`
	// Actions say, per control, why canopy would probably ignore it now ("" when it applies).
	Actions []Action `json:"actions"`
	// History is filled by the dashboard, not by Views.
	History History `json:"history"`
}

// Check is a check's last measurement.
type Check struct {
	Name      string `json:"name"`
	Outcome   string `json:"outcome"`
	Value     string `json:"value"`
	Threshold string `json:"threshold"`
	Measured  string `json:"measured"`
	Message   string `json:"message"`
	DryRun    bool   `json:"dryRun"`
}

// Gate is a gate or rollback webhook and its last answer.
type Gate struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	State    string `json:"state"`
	Attempts int32  `json:"attempts"`
	LastCall string `json:"lastCall"`
	Message  string `json:"message"`
}

// Condition is a status condition.
type Condition struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason"`
	Since   string `json:"since"`
	Message string `json:"message"`
}

// Event is one of the Canary's events.
type Event struct {
	When   string    `json:"when"`
	Time   time.Time `json:"time"`
	Type   string    `json:"type"`
	Reason string    `json:"reason"`
	Note   string    `json:"note"`
}

// Action is a manual control and whether canopy would act on it now.
type Action struct {
	Name  string `json:"name"`
	Short string `json:"short"`
	// Ignored says why canopy would probably ignore it now; it is sent anyway, as the CLI does.
	Ignored string `json:"ignored,omitempty"`
}

// GeneratedObject is an object canopy generates, with its YAML as kubectl canopy render
// prints it.
type GeneratedObject struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Note      string `json:"note"`
	YAML      string `json:"-"`
}

// History is a Canary's weight over time and its checks' measurements.
type History struct {
	// Source is "watch" (kept by this process since it started) or "prometheus"
	// (canopy_canary_weight, with --prometheus-url).
	Source string        `json:"source"`
	Weight []WeightPoint `json:"weight"`
	Checks []CheckPoint  `json:"checks"`
	// Error says why Prometheus could not be read (the watch's history is shown instead).
	Error string `json:"error,omitempty"`
}

// WeightPoint is the canary's weight from T on.
type WeightPoint struct {
	T      time.Time `json:"t"`
	Weight int32     `json:"weight"`
	Phase  string    `json:"phase,omitempty"`
}

// CheckPoint is one measurement of a check.
type CheckPoint struct {
	T         time.Time `json:"t"`
	Name      string    `json:"name"`
	Value     string    `json:"value"`
	Threshold string    `json:"threshold"`
	Outcome   string    `json:"outcome"`
}
