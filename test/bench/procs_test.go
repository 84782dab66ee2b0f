//go:build linux

package bench

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// componentCPU is the CPU seconds each process of a run has used so far, by component:
// every process whose command line names the run's state directory (etcd, the apiserver,
// the controller-manager, the scheduler, kwok, the manager, Prometheus), and the benchmark
// itself. Where the machine's two cores went says whose pace a phase had.
func componentCPU(stateDir string) map[string]float64 {
	out := map[string]float64{}
	if s, err := procCPU("self"); err == nil {
		out["benchmark (driver, simulator)"] = s
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	self := strconv.Itoa(os.Getpid())
	for _, e := range entries {
		pid := e.Name()
		if pid == self || pid[0] < '0' || pid[0] > '9' {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
		if err != nil || !strings.Contains(string(cmdline), stateDir) {
			continue
		}
		argv0, _, _ := strings.Cut(string(cmdline), "\x00")
		if s, err := procCPU(pid); err == nil {
			out[filepath.Base(argv0)] += s
		}
	}
	return out
}

// procCPU is the user and system CPU seconds of /proc/<pid>.
func procCPU(pid string) (float64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndex(s, ")")+1:])
	if len(fields) < 13 {
		return 0, os.ErrInvalid
	}
	utime, err1 := strconv.ParseFloat(fields[11], 64)
	stime, err2 := strconv.ParseFloat(fields[12], 64)
	if err1 != nil || err2 != nil {
		return 0, os.ErrInvalid
	}
	return (utime + stime) / clockTicks, nil
}
