package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// DefaultMemoryLimitRatio is the share of the container's memory limit the Go heap aims to
// stay under when GOMEMLIMIT is not set.
const DefaultMemoryLimitRatio = 0.9

// memoryLimitRefresh is how often the limit is read again: a pod resized in place gets a
// new limit without a restart.
const memoryLimitRefresh = time.Minute

// ApplyMemoryLimit sets the Go runtime's soft memory limit to ratio times the memory limit
// of the process's cgroup (the container's or the pod's resources.limits.memory, cgroup v2
// or v1's hierarchy), unless GOMEMLIMIT is set or there is no limit, and reads the limit
// again every minute until ctx ends, so that an in-place resize is followed. Near its limit
// the collector then works harder instead of letting the heap grow to twice the live
// objects (GOGC=100) and the kernel kill the process: a manager holding thousands of
// Canaries in its caches stays within the memory it was given. It returns the limit set,
// 0 for none. It is process-wide, so main calls it, not Run. The cgroup reading is
// automemlimit's (github.com/KimMachineGun/automemlimit).
func ApplyMemoryLimit(ctx context.Context, ratio float64, log *slog.Logger) (int64, error) {
	if ratio < 0 || ratio > 1 || math.IsNaN(ratio) {
		return 0, fmt.Errorf("--memory-limit-ratio: %v is not between 0 and 1", ratio)
	}
	if ratio == 0 {
		return 0, nil
	}
	return applyMemoryLimit(ctx, ratio, log, memlimit.FromCgroup)
}

func applyMemoryLimit(ctx context.Context, ratio float64, log *slog.Logger, provider memlimit.Provider) (int64, error) {
	limit, err := memlimit.Set(
		memlimit.WithRatio(ratio),
		memlimit.WithProvider(provider),
		memlimit.WithLogger(log),
		memlimit.WithRefreshInterval(ctx, memoryLimitRefresh),
	)
	switch {
	case errors.Is(err, memlimit.ErrNoCgroup), errors.Is(err, memlimit.ErrNoLimit):
		return 0, nil // not Linux, or no cgroup limit: nothing to follow
	case err != nil:
		return 0, fmt.Errorf("reading the cgroup memory limit: %w", err)
	case limit == math.MaxInt64:
		return 0, nil // unlimited
	}
	return limit, nil
}
