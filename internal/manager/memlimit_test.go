package manager

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"runtime/debug"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

func TestApplyMemoryLimitRefusesABadRatio(t *testing.T) {
	for _, r := range []float64{-0.1, 1.5} {
		if _, err := ApplyMemoryLimit(t.Context(), r, slog.Default()); err == nil {
			t.Errorf("ratio %v accepted", r)
		}
	}
}

// The soft limit follows the provider's limit at the ratio; no limit or no cgroup leaves it
// unset. (The cgroup reading itself, v1 and v2, pod and container limits, is automemlimit's,
// with its own tests.)
func TestApplyMemoryLimitFollowsTheProvider(t *testing.T) {
	for _, env := range []string{"GOMEMLIMIT", "AUTOMEMLIMIT"} {
		t.Setenv(env, "") // restored at the end
		if err := os.Unsetenv(env); err != nil {
			t.Fatal(err)
		}
	}
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	for _, tc := range []struct {
		name     string
		provider memlimit.Provider
		want     int64
	}{
		{"a limit", memlimit.Limit(1 << 30), int64(0.5 * (1 << 30))},
		{"no limit", func() (uint64, error) { return 0, memlimit.ErrNoLimit }, 0},
		{"no cgroup", func() (uint64, error) { return 0, memlimit.ErrNoCgroup }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			got, err := applyMemoryLimit(ctx, 0.5, slog.Default(), tc.provider)
			if err != nil || got != tc.want {
				t.Fatalf("limit %d (%v), want %d", got, err, tc.want)
			}
		})
	}
	_, err := applyMemoryLimit(t.Context(), 0.5, slog.Default(), func() (uint64, error) { return 0, errors.New("boom") })
	if err == nil {
		t.Error("a provider error is not reported")
	}
}
