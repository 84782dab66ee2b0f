package main

import (
	"os"
	"syscall"
)

// stopWithParent asks the kernel to send SIGTERM when our parent dies. `go run` does not
// pass SIGTERM on to the program it runs, so a script that stops `go run ./hack/localcluster`
// would otherwise leave the cluster running.
func stopWithParent() {
	_, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0)
	if errno == 0 && os.Getppid() == 1 {
		// The parent died before the request took effect.
		_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
	}
}
