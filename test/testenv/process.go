package testenv

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is a child server: in its own process group, killed with the test binary (see
// childProcAttr and the reaper), its output in a log file.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	log     *os.File
	done    chan struct{} // closed when the process has exited
	err     error         // exit status, valid once done is closed
	stopped sync.Once
}

// startProcess starts path with args, appending its stdout and stderr to logPath.
func startProcess(name, logPath, path string, args ...string) (*process, error) {
	return startCommand(name, logPath, exec.Command(path, args...))
}

// startCommand starts cmd, appending its stdout and stderr to logPath.
func startCommand(name, logPath string, cmd *exec.Cmd) (*process, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	_, _ = fmt.Fprintf(log, "### %s %s\n", cmd.Path, strings.Join(cmd.Args[1:], " "))
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, logPath: logPath, cmd: cmd, log: log, done: make(chan struct{})}
	if err := reapGroup(cmd.Process.Pid); err != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	go func() {
		p.err = cmd.Wait()
		_ = log.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has exited, and with what error.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		if p.err == nil {
			return true, fmt.Errorf("%s exited", p.name)
		}
		return true, fmt.Errorf("%s exited: %w", p.name, p.err)
	default:
		return false, nil
	}
}

// stop sends SIGTERM to the process group, and SIGKILL if it has not exited within grace.
// It returns an error if the process had exited on its own before: a crashed component
// fails the run even when no test noticed.
func (p *process) stop(grace time.Duration) error {
	var result error
	p.stopped.Do(func() {
		pgid := p.cmd.Process.Pid
		defer unreapGroup(pgid)
		if done, err := p.exited(); done {
			result = fmt.Errorf("%w before it was stopped; see %s", err, p.logPath)
			return
		}
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
		}
		// The group may hold helpers that ignored SIGTERM after the leader exited.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	})
	return result
}

// startTimeout bounds how long a component may take to become ready: minutes, because
// two busy cores running several test packages can be very slow.
const startTimeout = 2 * time.Minute

// waitFor polls ready until it returns nil, failing early if one of procs exits.
func waitFor(what string, ready func() error, procs ...*process) error {
	deadline := time.Now().Add(startTimeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		for _, p := range procs {
			if done, exitErr := p.exited(); done {
				return fmt.Errorf("waiting for %s: %w; its log:\n%s", what, exitErr, tail(p.logPath, 40))
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s: gave up after %s: %w", what, startTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = append([][]byte{[]byte(fmt.Sprintf("... (%d lines before; full log in %s)", len(lines)-n, path))}, lines[len(lines)-n:]...)
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// dumpLogs writes the tail of every *.log file in dir to w.
func dumpLogs(w io.Writer, dir string, lines int) {
	paths, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, path := range paths {
		_, _ = fmt.Fprintf(w, "===== %s =====\n%s\n", path, tail(path, lines))
	}
}

// FreePort returns a TCP port free on 127.0.0.1 right now. The caller's server binds it
// a moment later; another process taking it in between is unlikely on a test machine.
func FreePort() (int, error) {
	ports, err := freePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}
