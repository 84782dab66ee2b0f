// Package argocd runs the Argo CD health checks of docs/argocd with gopher-lua, the Lua
// interpreter Argo CD embeds, against Canary and MeshPolicy statuses.
package argocd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	lua "github.com/yuin/gopher-lua"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// health runs a health script on obj as Argo CD does: obj as a global table, the returned
// table's status and message.
func health(t *testing.T, script string, obj any) (string, string) {
	t.Helper()
	code, err := os.ReadFile(filepath.Join("..", "..", "docs", "argocd", script))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	L := lua.NewState()
	defer L.Close()
	L.SetGlobal("obj", toLua(L, m))
	if err := L.DoString(string(code)); err != nil {
		t.Fatalf("%s: %v", script, err)
	}
	hs, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatalf("%s returned %s, want a table", script, L.Get(-1).Type())
	}
	return hs.RawGetString("status").String(), hs.RawGetString("message").String()
}

func toLua(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case map[string]any:
		t := L.NewTable()
		for k, e := range v {
			t.RawSetString(k, toLua(L, e))
		}
		return t
	case []any:
		t := L.NewTable()
		for _, e := range v {
			t.Append(toLua(L, e))
		}
		return t
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case bool:
		return lua.LBool(v)
	default:
		return lua.LNil
	}
}

func canary(phase meshv1.CanaryPhase, observed int64, conds ...metav1.Condition) *meshv1.Canary {
	c := &meshv1.Canary{}
	c.Generation = 2
	c.Status.Phase = phase
	c.Status.ObservedGeneration = observed
	c.Status.Conditions = conds
	return c
}

func cond(t string, s metav1.ConditionStatus, msg string) metav1.Condition {
	return metav1.Condition{Type: t, Status: s, Reason: "Test", Message: msg}
}

func TestCanaryHealth(t *testing.T) {
	paused := canary(meshv1.PhaseProgressing, 2)
	paused.Status.Paused = true
	suspended := canary(meshv1.PhaseSucceeded, 2)
	suspended.Spec.Suspend = true
	for _, tc := range []struct {
		name   string
		c      *meshv1.Canary
		status string
	}{
		{"not observed yet", canary(meshv1.PhaseSucceeded, 1), "Progressing"},
		{"initializing", canary(meshv1.PhaseInitializing, 2), "Progressing"},
		{"initialized", canary(meshv1.PhaseInitialized, 2, cond("Ready", "True", "Primary serves")), "Healthy"},
		{"progressing", canary(meshv1.PhaseProgressing, 2, cond("Ready", "False", "weight 20")), "Progressing"},
		{"promoted", canary(meshv1.PhaseSucceeded, 2, cond("Ready", "True", "Promoted")), "Healthy"},
		{"rolled back", canary(meshv1.PhaseFailed, 2, cond("Ready", "False", "request-success-rate 80 < 99")), "Degraded"},
		{"stalled", canary(meshv1.PhaseInitializing, 2, cond("Stalled", "True", "primary never ready")), "Degraded"},
		{"paused", paused, "Suspended"},
		{"suspended", suspended, "Suspended"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, msg := health(t, "health-canary.lua", tc.c)
			if got != tc.status {
				t.Fatalf("health %s (%q), want %s", got, msg, tc.status)
			}
		})
	}
	_, msg := health(t, "health-canary.lua", canary(meshv1.PhaseFailed, 2, cond("Ready", "False", "request-success-rate 80 < 99")))
	if msg != "request-success-rate 80 < 99" {
		t.Fatalf("message %q, want the Ready condition's", msg)
	}
}

func TestMeshPolicyHealth(t *testing.T) {
	policy := func(observed int64, conds ...metav1.Condition) *meshv1.MeshPolicy {
		p := &meshv1.MeshPolicy{}
		p.Generation = 3
		p.Status.ObservedGeneration = observed
		p.Status.Conditions = conds
		return p
	}
	for _, tc := range []struct {
		name   string
		p      *meshv1.MeshPolicy
		status string
	}{
		{"not observed yet", policy(2, cond("Ready", "True", "")), "Progressing"},
		{"ready", policy(3, cond("Ready", "True", "Applied 7 objects")), "Healthy"},
		{"waiting for a certificate", policy(3, cond("Ready", "False", "Certificate pending")), "Progressing"},
		{"conflict", policy(3, cond("Ready", "False", "older policy"), cond("Stalled", "True", "older policy")), "Degraded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, msg := health(t, "health-meshpolicy.lua", tc.p); got != tc.status {
				t.Fatalf("health %s (%q), want %s", got, msg, tc.status)
			}
		})
	}
}
