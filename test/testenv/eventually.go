package testenv

import (
	"testing"
	"time"
)

// Eventually calls check until it returns nil, and fails the test with check's last error
// if that takes longer than timeout. Timeouts here are generous limits against hangs,
// not assertions about speed: pick them for a slow, busy CI machine.
func Eventually(t testing.TB, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %s: %v", timeout, err)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("test ended while waiting: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
