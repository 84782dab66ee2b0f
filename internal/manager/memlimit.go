package manager

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
)

// DefaultMemoryLimitRatio is the share of the container's memory limit the Go heap aims to
// stay under when GOMEMLIMIT is not set.
const DefaultMemoryLimitRatio = 0.9

// unlimited is where cgroup v1 reports "no limit" (a page-aligned maximum int64).
const unlimited = 1 << 62

// ApplyMemoryLimit sets the Go runtime's soft memory limit to ratio times the memory limit of
// the process's cgroup (the container's resources.limits.memory), unless GOMEMLIMIT is set or
// there is no limit. Near its limit the collector then works harder instead of letting the
// heap grow to twice the live objects (GOGC=100) and the kernel kill the process: a manager
// holding thousands of Canaries in its caches stays within the memory it was given. It
// returns the limit set, 0 for none. It is process-wide, so main calls it, not Run.
func ApplyMemoryLimit(ratio float64) (int64, error) {
	if ratio < 0 || ratio > 1 {
		return 0, fmt.Errorf("--memory-limit-ratio: %v is not between 0 and 1", ratio)
	}
	if ratio == 0 || os.Getenv("GOMEMLIMIT") != "" {
		return 0, nil
	}
	// Not Linux, or no cgroups (the file cannot be read): no limit to follow.
	var limit int64
	if self, err := os.ReadFile("/proc/self/cgroup"); err == nil {
		limit = cgroupMemoryLimit("/sys/fs/cgroup", string(self))
	}
	if limit <= 0 {
		return 0, nil
	}
	soft := int64(float64(limit) * ratio)
	debug.SetMemoryLimit(soft)
	return soft, nil
}

// cgroupMemoryLimit reads the memory limit of the cgroups that /proc/self/cgroup (self)
// names under root, cgroup v2 or v1; 0 when there is none. Inside a container the path is
// usually "/" (a cgroup namespace); outside it is the process's own cgroup.
func cgroupMemoryLimit(root, self string) int64 {
	for _, line := range strings.Split(strings.TrimSpace(self), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var files []string
		switch {
		case parts[0] == "0" && parts[1] == "":
			files = []string{filepath.Join(root, parts[2], "memory.max"), filepath.Join(root, "memory.max")}
		case hasController(parts[1], "memory"):
			files = []string{filepath.Join(root, "memory", parts[2], "memory.limit_in_bytes"), filepath.Join(root, "memory", "memory.limit_in_bytes")}
		default:
			continue
		}
		for _, f := range files {
			b, err := os.ReadFile(filepath.Clean(f)) //nolint:gosec // a cgroup file under root, named by the kernel
			if err != nil {
				continue
			}
			v := strings.TrimSpace(string(b))
			if v == "max" {
				break
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err == nil && n > 0 && n < unlimited {
				return n
			}
			break
		}
	}
	return 0
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}
