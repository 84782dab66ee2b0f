package testenv

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Process is a program a test runs against the cluster as a child process, the way it
// runs in a pod: the operator's own binary, stopped gracefully or killed outright.
type Process struct{ p *process }

// StartProcess runs path with args, named name: name is its argv[0] (so a Go program
// built with client-go sends it as its user agent, and the apiserver records it as the
// field manager of its writes) and its log is logs/<name>.log in the state directory,
// appended to on every start and printed by DumpLogs. Like the cluster's components it is
// killed if the test binary dies, and stopped by Stop if the test did not.
func (e *Env) StartProcess(name, path string, args ...string) (*Process, error) {
	cmd := exec.Command(path, args...)
	cmd.Args[0] = name
	p, err := startCommand(name, filepath.Join(e.logDir(), name+".log"), cmd)
	if err != nil {
		return nil, err
	}
	e.addChild(p)
	return &Process{p}, nil
}

// Pid is the process id.
func (p *Process) Pid() int { return p.p.cmd.Process.Pid }

// LogPath is the file that receives its output.
func (p *Process) LogPath() string { return p.p.logPath }

// Exited reports whether the process has exited, and with what error.
func (p *Process) Exited() (bool, error) { return p.p.exited() }

// Kill sends SIGKILL to the process group, as when a node dies or the OOM killer strikes:
// no cleanup runs, a held lease is not released. It returns once the process is gone, and
// an error if it had already exited on its own.
func (p *Process) Kill() error {
	var result error
	p.p.stopped.Do(func() {
		pgid := p.Pid()
		defer unreapGroup(pgid)
		if done, err := p.p.exited(); done {
			result = fmt.Errorf("%w before it was killed; see %s", err, p.p.logPath)
			return
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.p.done
	})
	return result
}

// Stop sends SIGTERM, and SIGKILL after grace; it returns an error if the process had
// exited on its own before. Stopping a killed process does nothing.
func (p *Process) Stop(grace time.Duration) error { return p.p.stop(grace) }

// Tail returns the last n lines of its log.
func (p *Process) Tail(n int) string { return tail(p.p.logPath, n) }
