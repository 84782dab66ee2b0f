package testenv

import "syscall"

// childProcAttr puts a child in its own process group, so that stopping it reaches any
// helpers it forks and a Ctrl-C meant for `go test` does not, and has the kernel kill it
// if the test binary dies first.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
