//go:build !linux

package testenv

import "syscall"

// childProcAttr puts a child in its own process group. Without Pdeathsig outside Linux,
// only the reaper kills it if the test binary dies first.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
