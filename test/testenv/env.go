package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Options configure Start.
type Options struct {
	// LocalCluster adds kube-controller-manager, kube-scheduler and kwok with one fake
	// Node to the apiserver, so that workloads really roll out.
	LocalCluster bool
	// StateDir keeps the logs, the kubeconfig and etcd's data. By default a new temporary
	// directory, removed by Stop; a given directory is kept after Stop (for its logs) and
	// emptied of a previous cluster's data on Start.
	StateDir string
	// WithoutIstio leaves Istio's CRDs out, as on a cluster where Istio is not installed
	// (yet): IstioCRDPath installs them later.
	WithoutIstio bool
	// WithoutCertManager leaves cert-manager's CRDs out likewise (CertManagerCRDPath
	// installs them later); it excludes CertManager.
	WithoutCertManager bool
	// WithoutGatewayAPI leaves the Gateway API's CRDs out likewise (GatewayAPICRDPath
	// installs them later).
	WithoutGatewayAPI bool
	// CRDPaths are installed besides canopy's, Istio's and cert-manager's CRDs.
	CRDPaths []string
	// CertManager runs cert-manager's controllers (see StartCertManager) with the
	// default options.
	CertManager bool
	// Istio runs istiod (see StartIstiod) as istio-system's control plane, with its
	// validating webhook and sidecar injector registered; it excludes WithoutIstio.
	Istio bool
	// Webhooks installs canopy's admission webhook configurations (config/webhook/
	// manifests.yaml, as generated) pointing at a local server: run the manager with
	// Env.WebhookServing's host, port and certificates to serve them. Until it serves,
	// every write of a Canary, MeshPolicy or MetricTemplate fails.
	Webhooks bool
	// NodePods is the fake Node's pod capacity (default 500); the benchmarks need more.
	NodePods int
	// ServiceIPRange replaces the apiserver's Service IP range (envtest's 10.0.0.0/24 holds
	// 256 Services; the benchmarks need thousands), e.g. "10.96.0.0/16".
	ServiceIPRange string
	// ComponentQPS is the API queries per second of the controller-manager and the
	// scheduler (burst twice as much); 0 keeps their defaults (20 and 50).
	ComponentQPS int
	// ComponentWorkers is how many objects the controller-manager's Deployment, ReplicaSet
	// and endpoint controllers sync at once, and how many pod stages kwok plays at once; 0
	// keeps their defaults (5, and kwok's 4). Large clusters raise them as the benchmarks do:
	// with the defaults, a thousand Deployments rolling at once queue behind five workers.
	ComponentWorkers int
}

// WebhookServing is where the apiserver calls the admission webhooks when Options.Webhooks
// is set: the manager's webhook server must listen there with the certificates in CertDir
// (tls.crt and tls.key, signed by a CA the apiserver trusts).
type WebhookServing struct {
	Host    string
	Port    int
	CertDir string
}

// Env is a running cluster: envtest's kube-apiserver and etcd, and for a local cluster
// the controllers, the scheduler and kwok.
type Env struct {
	// Config reaches the apiserver as a member of system:masters.
	Config *rest.Config
	// Client uses Scheme.
	Client client.Client
	// Scheme is Scheme(): built-in types, canopy, Istio and cert-manager.
	Scheme *runtime.Scheme
	// StateDir holds the logs (logs/*.log), the kubeconfig and etcd's data.
	StateDir string
	// Kubeconfig is the path of a kubeconfig file for the admin user (system:masters), the
	// one the child processes use.
	Kubeconfig string
	// NodeName is the fake Node of a local cluster; empty on envtest.
	NodeName string
	// Webhook is where the admission webhooks are served, with Options.Webhooks; else nil.
	Webhook *WebhookServing
	// Istio is istiod, with Options.Istio; else nil.
	Istio *Istiod

	env         *envtest.Environment
	envtestPids []int
	envtestLogs []*os.File
	ownStateDir bool
	mu          sync.Mutex
	children    []*process // stopped in reverse order
	stopped     bool
	// expectedFindings are the Istio analyzers' codes a test expects in a namespace.
	expectedFindings map[string][]string
}

// Start starts an envtest apiserver, or with opts.LocalCluster a local cluster, and
// installs the CRDs. The binaries come from BinDir; a missing one is an error that says
// to run `make components`.
func Start(opts Options) (_ *Env, err error) {
	e := &Env{Scheme: Scheme(), StateDir: opts.StateDir}
	if e.StateDir == "" {
		if e.StateDir, err = os.MkdirTemp("", "canopy-env-"); err != nil {
			return nil, err
		}
		e.ownStateDir = true
		if err := reapDir(e.StateDir); err != nil {
			return nil, err
		}
	}
	// Every start is a fresh cluster: a previous run's data and certificates would not
	// match the new ports and CA. envtest generates the certificates only into an
	// existing directory.
	for _, dir := range []string{e.logDir(), filepath.Join(e.StateDir, "apiserver"), filepath.Join(e.StateDir, "etcd")} {
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
	}
	defer func() {
		if err != nil {
			var logs bytes.Buffer
			dumpLogs(&logs, e.logDir(), 30)
			err = fmt.Errorf("%w\n%s", err, logs.String())
			_ = e.Stop()
		}
	}()

	if err := e.startAPIServer(opts); err != nil {
		return nil, err
	}
	if opts.LocalCluster {
		if err := e.startLocalCluster(opts); err != nil {
			return nil, err
		}
	}
	if opts.CertManager {
		if _, err := e.StartCertManager(CertManagerOptions{}); err != nil {
			return nil, err
		}
	}
	if opts.Istio {
		if opts.WithoutIstio {
			return nil, errors.New("testenv: Options.Istio needs Istio's CRDs, which WithoutIstio leaves out")
		}
		if e.Istio, err = e.StartIstiod(); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func (e *Env) logDir() string { return filepath.Join(e.StateDir, "logs") }

func (e *Env) startAPIServer(opts Options) error {
	// Check every binary first, so that one message lists what to build.
	names := []string{"etcd", "kube-apiserver"}
	if opts.LocalCluster {
		names = append(names, "kube-controller-manager", "kube-scheduler", "kwok")
	}
	if opts.CertManager {
		names = append(names, "cert-manager")
	}
	if opts.Istio {
		names = append(names, "pilot-discovery", "helm")
	}
	bins, err := binaries(names...)
	if err != nil {
		return err
	}
	crds, err := CRDPaths()
	if err != nil {
		return err
	}
	if opts.WithoutIstio {
		istio, err := IstioCRDPath()
		if err != nil {
			return err
		}
		crds = slices.DeleteFunc(crds, func(p string) bool { return p == istio })
	}
	if opts.WithoutCertManager {
		certManager, err := CertManagerCRDPath()
		if err != nil {
			return err
		}
		crds = slices.DeleteFunc(crds, func(p string) bool { return p == certManager })
	}
	if opts.WithoutGatewayAPI {
		gatewayAPI, err := GatewayAPICRDPath()
		if err != nil {
			return err
		}
		crds = slices.DeleteFunc(crds, func(p string) bool { return p == gatewayAPI })
	}
	crds = append(crds, opts.CRDPaths...)

	etcd, err := e.etcd(bins["etcd"])
	if err != nil {
		return err
	}
	apiServer, err := e.apiServer(bins["kube-apiserver"])
	if err != nil {
		return err
	}
	if opts.LocalCluster {
		// Service account tokens need an issuer the controller-manager accepts.
		apiServer.Configure().Append("service-account-issuer", "https://kubernetes.default.svc")
	}
	if opts.LocalCluster && opts.Istio {
		// istiod's injector gives every pod the projected token its proxy would present
		// (istio-token), which the apiserver accepts only for a pod with a ServiceAccount: as
		// in a real cluster, the ServiceAccount admission plugin (envtest turns it off) gives
		// pods the namespace's "default", which the controller-manager creates.
		apiServer.Configure().Disable("disable-admission-plugins")
	}
	if opts.ServiceIPRange != "" {
		apiServer.Configure().Set("service-cluster-ip-range", opts.ServiceIPRange)
	}
	var webhooks envtest.WebhookInstallOptions
	if opts.Webhooks {
		root, err := RepoRoot()
		if err != nil {
			return err
		}
		webhooks.Paths = []string{filepath.Join(root, "config", "webhook", "manifests.yaml")}
	}
	binDir, _ := BinDir()
	e.env = &envtest.Environment{
		WebhookInstallOptions:    webhooks,
		ControlPlane:             envtest.ControlPlane{Etcd: etcd, APIServer: apiServer},
		BinaryAssetsDirectory:    binDir,
		Scheme:                   e.Scheme,
		CRDInstallOptions:        envtest.CRDInstallOptions{Paths: crds, ErrorIfPathMissing: true},
		ErrorIfCRDPathMissing:    true,
		UseExistingCluster:       ptr.To(false), // whatever USE_EXISTING_CLUSTER says
		ControlPlaneStartTimeout: time.Minute,   // two busy cores can be slow
		ControlPlaneStopTimeout:  30 * time.Second,
	}

	before := childrenNamed("etcd", "kube-apiserver")
	cfg, err := e.env.Start()
	// envtest starts them without Pdeathsig: hand them to the reaper, even if Start failed.
	for _, pid := range childrenNamed("etcd", "kube-apiserver") {
		if !slices.Contains(before, pid) {
			e.envtestPids = append(e.envtestPids, pid)
			_ = reapGroup(pid)
		}
	}
	if err != nil {
		return fmt.Errorf("starting kube-apiserver and etcd: %w", err)
	}
	e.Config = cfg
	if opts.Webhooks {
		w := e.env.WebhookInstallOptions
		e.Webhook = &WebhookServing{Host: w.LocalServingHost, Port: w.LocalServingPort, CertDir: w.LocalServingCertDir}
	}
	if e.Client, err = client.New(cfg, client.Options{Scheme: e.Scheme}); err != nil {
		return err
	}

	admin, err := e.env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("adding the admin user: %w", err)
	}
	e.Kubeconfig = filepath.Join(e.StateDir, "kubeconfig")
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		return err
	}
	return os.WriteFile(e.Kubeconfig, kubeconfig, 0o600)
}

// etcd listens on 127.0.0.1 only, for clients and peers, with its data in the state dir.
func (e *Env) etcd(path string) (*envtest.Etcd, error) {
	clientPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	peerPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(e.logDir(), "etcd.log"))
	if err != nil {
		return nil, err
	}
	e.envtestLogs = append(e.envtestLogs, log)
	etcd := &envtest.Etcd{
		Path:    path,
		DataDir: filepath.Join(e.StateDir, "etcd"),
		URL:     &url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(clientPort)},
		Out:     log,
		Err:     log,
	}
	etcd.Configure().Set("listen-peer-urls", "http://127.0.0.1:"+strconv.Itoa(peerPort))
	return etcd, nil
}

func (e *Env) apiServer(path string) (*envtest.APIServer, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(e.logDir(), "kube-apiserver.log"))
	if err != nil {
		return nil, err
	}
	e.envtestLogs = append(e.envtestLogs, log)
	apiServer := &envtest.APIServer{
		Path:    path,
		CertDir: filepath.Join(e.StateDir, "apiserver"),
		Out:     log,
		Err:     log,
	}
	// The secure serving address (APIServer embeds SecureServing, which embeds ListenAddr).
	apiServer.Address = "127.0.0.1"
	apiServer.Port = strconv.Itoa(port)
	// Otherwise the apiserver advertises the machine's first address in the default
	// "kubernetes" Service's endpoints.
	apiServer.Configure().Set("advertise-address", "127.0.0.1")
	return apiServer, nil
}

// addChild registers a child process stopped by Stop.
func (e *Env) addChild(p *process) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.children = append(e.children, p)
}

// Stop stops every child process, then the apiserver and etcd, and removes a temporary
// state directory. It returns an error if a child had exited on its own. Calling it again
// does nothing.
func (e *Env) Stop() error {
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return nil
	}
	e.stopped = true
	children := e.children
	e.mu.Unlock()

	var errs []error
	for i := len(children) - 1; i >= 0; i-- {
		errs = append(errs, children[i].stop(10*time.Second))
	}
	if e.env != nil {
		if err := e.env.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stopping kube-apiserver and etcd: %w", err))
		}
	}
	for _, pid := range e.envtestPids {
		unreapGroup(pid)
	}
	for _, f := range e.envtestLogs {
		_ = f.Close()
	}
	if e.ownStateDir {
		if err := os.RemoveAll(e.StateDir); err != nil {
			errs = append(errs, err)
		}
		unreapDir(e.StateDir)
	}
	return errors.Join(errs...)
}

// WriteKubeconfig writes a kubeconfig for the admin user (system:masters) to path, for
// kubectl or an operator run outside the test.
func (e *Env) WriteKubeconfig(path string) error {
	data, err := os.ReadFile(e.Kubeconfig)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}

// DumpLogs writes the last lines of every component's log to w.
func (e *Env) DumpLogs(w io.Writer) { dumpLogs(w, e.logDir(), 60) }
