// Package restarts kills canopy's real process (SIGKILL, as a node failure or the OOM
// killer would) at every phase of a rollout, and kills the leader of two replicas, on the
// local cluster: the manager binary built from main.go runs as child processes with leader
// election on, as in its Deployment, and each rollout must still finish in the right state
// with no step skipped or taken twice.
//
// The analysis is canopy's rollout webhook, served by the test: it is judged by the
// operator's real HTTP client and URL policy, and it lets a test decide a revision's fate
// and even kill the operator in the middle of a check. The Prometheus path has its own
// tests in test/e2e; here only what a restart can break is at stake.
package restarts

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/hooks"
	"canopy.dev/canopy/test/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	testenv.Main(m, testenv.Options{LocalCluster: true, Istio: true}, &env)
}

// Lease timings of the test operators: a killed leader's lease expires after 4s, so a
// restarted or standby process takes over within seconds (the defaults are 15s/10s/2s).
const (
	leaseDuration = "4s"
	renewDeadline = "3s"
	retryPeriod   = "500ms"
)

var built struct {
	once sync.Once
	path string
	err  error
}

// managerBinary builds main.go once per run, into the cluster's state directory (removed
// with it); the Go build cache makes it quick after the first time.
func managerBinary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		root, err := testenv.RepoRoot()
		if err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(env.StateDir, "canopy-manager")
		args := []string{"build", "-o", built.path}
		if testenv.Race {
			args = append(args, "-race") // the race detector watches the manager too
		}
		cmd := exec.Command("go", append(args, ".")...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("building the manager: %w\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

// operator is one replica of canopy: the real binary, with leader election on, scoped to
// one test namespace (which also holds its Lease).
type operator struct {
	name        string // argv[0]: the field manager of its writes, and its log's name
	ns          string
	proc        *testenv.Process
	metricsAddr string
}

// startOperator starts a replica named name for namespace ns. Replicas of one namespace
// share the Lease.
func startOperator(t *testing.T, name, ns string) *operator {
	t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	o := &operator{name: name, ns: ns, metricsAddr: "127.0.0.1:" + strconv.Itoa(port)}
	o.proc, err = env.StartProcess(name, managerBinary(t),
		"--kubeconfig="+env.Kubeconfig,
		"--watch-namespaces="+ns,
		"--leader-elect",
		// The apiserver of the test bed has no webhook configurations for this process.
		"--enable-webhooks=false",
		"--leader-election-namespace="+ns,
		"--leader-election-id=canopy-"+ns,
		"--leader-elect-lease-duration="+leaseDuration,
		"--leader-elect-renew-deadline="+renewDeadline,
		"--leader-elect-retry-period="+retryPeriod,
		"--metrics-bind-address="+o.metricsAddr,
		"--health-probe-bind-address=0",
		"--webhook-allowed-cidrs=127.0.0.1/32", // the analysis is served by this test
		"--kube-api-qps=200", "--kube-api-burst=400",
		"--zap-log-level=debug", // "Reconciled" lines show who reconciles
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := o.proc.Stop(10 * time.Second); err != nil {
			t.Errorf("operator %s: %v\n%s", name, err, o.proc.Tail(40))
		}
	})
	return o
}

// kill sends SIGKILL; the operator must not have exited on its own before.
func (o *operator) kill(t *testing.T) {
	t.Helper()
	if err := o.proc.Kill(); err != nil {
		t.Fatalf("operator %s: %v\n%s", o.name, err, o.proc.Tail(40))
	}
}

// isLeader reads the operator's leader_election_master_status gauge.
func (o *operator) isLeader() (bool, error) {
	resp, err := http.Get("http://" + o.metricsAddr + "/metrics")
	if err != nil {
		return false, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "leader_election_master_status{") {
			return strings.HasSuffix(line, " 1"), nil
		}
	}
	return false, nil
}

// analysis is the rollout webhook the Canaries call at every step: it answers 200 unless
// the target runs an image whose tag starts with "bad". During a call, a test can act in
// the middle of a check (kill the operator before the answer arrives). It also serves the
// confirm-rollout gate, closed until confirm.
type analysis struct {
	srv *httptest.Server

	mu        sync.Mutex
	during    func(hooks.Payload)
	confirmed bool
	asked     int // confirm-rollout calls
}

func startAnalysis(t *testing.T) *analysis {
	t.Helper()
	a := &analysis{}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p hooks.Payload
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		during, confirmed := a.during, a.confirmed
		if p.Type == meshv1.WebhookConfirmRollout {
			a.asked++
		}
		a.mu.Unlock()
		if during != nil {
			during(p)
		}
		if p.Type == meshv1.WebhookConfirmRollout && !confirmed {
			http.Error(w, "not confirmed yet", http.StatusForbidden)
			return
		}
		d := &appsv1.Deployment{}
		if err := env.Client.Get(r.Context(), client.ObjectKey{Namespace: p.Namespace, Name: p.Name}, d); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if strings.Contains(d.Spec.Template.Spec.Containers[0].Image, ":bad") {
			http.Error(w, "the revision is bad", http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// onCall runs f at the start of every call until it is replaced.
func (a *analysis) onCall(f func(hooks.Payload)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.during = f
}

// confirm opens the confirm-rollout gate.
func (a *analysis) confirm() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.confirmed = true
}

// confirmAsked counts the calls of the confirm-rollout gate so far.
func (a *analysis) confirmAsked() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.asked
}

// The rollouts: 20% steps to 60%, one-second interval.
const (
	stepWeight = 20
	maxWeight  = 60
)

// The canary's weights from the Canary's creation: the target serves alone while the
// primary starts (100), then the primary (0) until a rollout moves traffic step by step.
var (
	promotion = []int32{100, 0, 20, 40, 60, 0}
	rollback  = []int32{100, 0, 20, 0}
)

func newCanary(ns, name, hookURL string, threshold int32) *meshv1.Canary {
	return &meshv1.Canary{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: meshv1.CanarySpec{
			TargetRef: meshv1.TargetRef{APIVersion: "apps/v1", Kind: "Deployment", Name: name},
			Service:   meshv1.CanaryService{Port: 9080},
			Analysis: meshv1.CanaryAnalysis{
				Interval: "1s", Threshold: threshold, StepWeight: ptr.To[int32](stepWeight), MaxWeight: maxWeight,
				Webhooks: []meshv1.CanaryWebhook{{
					Name: "analysis", Type: meshv1.WebhookRollout, URL: hookURL, Timeout: "5s", Retries: ptr.To[int32](0),
				}},
			},
		},
	}
}

// deploymentImage is the image a Deployment's template runs, "" when it does not exist.
func deploymentImage(t *testing.T, ns, name string) (string, *appsv1.Deployment) {
	t.Helper()
	d := &appsv1.Deployment{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, d); err != nil {
		if client.IgnoreNotFound(err) == nil {
			return "", nil
		}
		t.Fatal(err)
	}
	return d.Spec.Template.Spec.Containers[0].Image, d
}

// keepLogs tells where a failed test's operator logs are (the state directory is removed
// at the end of the run, so their tails are printed too).
func keepLogs(t *testing.T, ops ...*operator) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, o := range ops {
			t.Logf("operator %s log (%s):\n%s", o.name, o.proc.LogPath(), o.proc.Tail(80))
		}
	})
}
