package meshsim

// TEMPORARY: until testenv.Options{Istio: true} starts istiod (the lead's work), the
// cluster tests of this package start pilot-discovery themselves, once, against the
// package's local cluster. Remove this file when testenv has it.

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"canopy.dev/canopy/test/testenv"
)

var (
	istiodOnce sync.Once
	istiodAddr string
	istiodErr  error
)

// xdsAddress starts istiod on first use and returns its plaintext xDS address.
func xdsAddress(t *testing.T) string {
	t.Helper()
	istiodOnce.Do(func() { istiodAddr, istiodErr = startIstiod(t) })
	if istiodErr != nil {
		t.Fatalf("starting istiod: %v", istiodErr)
	}
	return istiodAddr
}

func startIstiod(t *testing.T) (string, error) {
	dir, err := testenv.BinDir()
	if err != nil {
		return "", err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system"}}
	if err := env.Client.Create(t.Context(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", err
	}
	var ports [4]int
	for i := range ports {
		if ports[i], err = testenv.FreePort(); err != nil {
			return "", err
		}
	}
	addr := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
	p, err := env.StartProcess("pilot-discovery", "/usr/bin/env", "POD_NAMESPACE=istio-system",
		filepath.Join(dir, "pilot-discovery"), "discovery", "--kubeconfig", env.Kubeconfig,
		"--httpAddr", addr(ports[0]), "--grpcAddr", addr(ports[1]), "--secureGRPCAddr", "",
		"--httpsAddr", addr(ports[2]), "--monitoringAddr", addr(ports[3]), "--meshConfig", "/dev/null")
	if err != nil {
		return "", err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get("http://" + addr(ports[0]) + "/ready")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr(ports[1]), nil
			}
		}
		if done, err := p.Exited(); done {
			return "", fmt.Errorf("pilot-discovery exited: %v\n%s", err, p.Tail(30))
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("pilot-discovery not ready after a minute\n%s", p.Tail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
