package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// The reaper is a shell process that outlives the test binary: once the binary is gone
// (a panic, a `go test -timeout`, Ctrl-C, SIGKILL), it kills the process groups and
// removes the directories still registered with it. Pdeathsig covers the children we
// start; the reaper also covers the etcd and kube-apiserver that envtest starts, which we
// cannot configure, and the state directories nobody stopped.
//
// One reaper serves the whole test binary. Entries are removed as soon as their process
// stops, so a process group id reused later by an unrelated process is never killed.
var reaper struct {
	mu      sync.Mutex
	started bool
	list    string // file the shell reads after the test binary is gone
	groups  map[int]bool
	dirs    map[string]bool
}

const reaperScript = `
parent=$1 list=$2
while kill -0 "$parent" 2>/dev/null; do sleep 1; done
[ -f "$list" ] || exit 0
while read -r kind arg; do
  [ "$kind" = group ] && kill -KILL "-$arg" 2>/dev/null  # dash's kill takes no "--"
done < "$list"
sleep 1
while read -r kind arg; do
  [ "$kind" = dir ] && rm -rf -- "$arg"
done < "$list"
rm -rf -- "$(dirname "$list")"
`

// reapGroup registers a process group to kill if the test binary dies; unreap removes it.
func reapGroup(pgid int) error { return reaperUpdate(func() { reaper.groups[pgid] = true }) }

func unreapGroup(pgid int) { _ = reaperUpdate(func() { delete(reaper.groups, pgid) }) }

// reapDir registers a directory to remove if the test binary dies.
func reapDir(dir string) error { return reaperUpdate(func() { reaper.dirs[dir] = true }) }

func unreapDir(dir string) { _ = reaperUpdate(func() { delete(reaper.dirs, dir) }) }

func reaperUpdate(change func()) error {
	reaper.mu.Lock()
	defer reaper.mu.Unlock()
	if !reaper.started {
		if err := startReaper(); err != nil {
			return err
		}
	}
	change()
	var b strings.Builder
	for g := range reaper.groups {
		fmt.Fprintf(&b, "group %d\n", g)
	}
	for d := range reaper.dirs {
		fmt.Fprintf(&b, "dir %s\n", d)
	}
	// Write and rename, so the shell never reads a half-written list.
	tmp := reaper.list + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, reaper.list)
}

func startReaper() error {
	dir, err := os.MkdirTemp("", "canopy-reaper-")
	if err != nil {
		return err
	}
	list := filepath.Join(dir, "list")
	cmd := exec.Command("/bin/sh", "-c", reaperScript, "reaper", strconv.Itoa(os.Getpid()), list)
	// Its own process group, so that a Ctrl-C meant for `go test` does not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the reaper: %w", err)
	}
	go func() { _ = cmd.Wait() }() // it exits on its own once we are gone
	reaper.started = true
	reaper.list = list
	reaper.groups = map[int]bool{}
	reaper.dirs = map[string]bool{}
	return nil
}

// childrenNamed returns the pids of this process's children whose command name is one of
// names: how we find the processes envtest started.
func childrenNamed(names ...string) []int {
	entries, _ := os.ReadDir("/proc")
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ...": comm may contain spaces and parentheses.
		s := string(stat)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		fields := strings.Fields(s[closing+1:])
		if len(fields) < 2 || fields[1] != strconv.Itoa(self) {
			continue
		}
		for _, n := range names {
			// The kernel truncates comm to 15 bytes.
			if s[open+1:closing] == n[:min(len(n), 15)] {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}
