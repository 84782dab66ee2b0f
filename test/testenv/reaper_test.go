package testenv_test

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"testing"
	"time"

	"canopy.dev/canopy/test/testenv"
)

// TestReaperCleansUpAfterACrash runs this test binary as a child that starts an
// environment and exits without Stop: the apiserver and etcd (which envtest starts without
// Pdeathsig) must still be killed, and the state directory removed.
func TestReaperCleansUpAfterACrash(t *testing.T) {
	testenv.SkipIfShort(t)
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashingChildEnv+"=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the child failed: %v", err)
	}
	var stateDir, host string
	if _, err := fmt.Sscan(string(out), &stateDir, &host); err != nil {
		t.Fatalf("the child printed %q: %v", out, err)
	}
	apiserver, err := url.Parse(host)
	if err != nil {
		t.Fatal(err)
	}

	testenv.Eventually(t, time.Minute, func() error {
		if _, err := os.Stat(stateDir); !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("state dir %s is still there (%v)", stateDir, err)
		}
		conn, err := net.DialTimeout("tcp", apiserver.Host, time.Second)
		if err == nil {
			_ = conn.Close()
			return fmt.Errorf("the apiserver still listens on %s", apiserver.Host)
		}
		return nil
	})
}
