package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The local cluster's single fake Node, managed by kwok. It is roomy so that tests never
// wait for capacity.
const nodeName = "kwok-node-0"

// maxServiceEndpointSyncs is the most --concurrent-service-endpoint-syncs the
// controller-manager accepts.
const maxServiceEndpointSyncs = 50

// startLocalCluster adds the components that make workloads run, following TESTBED.md:
// kube-controller-manager (Deployments -> ReplicaSets -> Pods, EndpointSlices),
// kube-scheduler (binds Pods to the Node) and kwok (plays the kubelet: the Node is Ready,
// Pods become Running and Ready).
func (e *Env) startLocalCluster(opts Options) error {
	ctx := context.Background()
	kubeconfig := "--kubeconfig=" + e.Kubeconfig
	stages, err := e.writeKwokConfig(opts.ComponentWorkers)
	if err != nil {
		return err
	}
	var qps []string
	if opts.ComponentQPS > 0 {
		qps = []string{fmt.Sprintf("--kube-api-qps=%d", opts.ComponentQPS), fmt.Sprintf("--kube-api-burst=%d", 2*opts.ComponentQPS)}
	}
	var workers []string
	if n := opts.ComponentWorkers; n > 0 {
		for _, c := range []string{"deployment", "replicaset", "endpoint"} {
			workers = append(workers, fmt.Sprintf("--concurrent-%s-syncs=%d", c, n))
		}
		// The EndpointSlice controller refuses more than 50 workers.
		workers = append(workers, fmt.Sprintf("--concurrent-service-endpoint-syncs=%d", min(n, maxServiceEndpointSyncs)))
	}
	components := []struct {
		name string
		args []string
	}{
		{"kube-controller-manager", []string{kubeconfig,
			// There is no service-account signing key for the token controller. Without
			// istiod the admission plugin that needs service accounts is off (envtest's
			// default), and so is the controller that creates each namespace's "default".
			"--controllers=" + controllers(opts),
			"--leader-elect=false", "--use-service-account-credentials=false",
			"--bind-address=127.0.0.1", "--secure-port=0"}},
		{"kube-scheduler", []string{kubeconfig,
			"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=0"}},
		{"kwok", []string{kubeconfig,
			"--manage-all-nodes=true", "--cidr=10.0.0.1/24", "--node-ip=10.0.0.1",
			"--server-address=127.0.0.1:0", "--config=" + stages}},
	}
	components[0].args = append(append(components[0].args, qps...), workers...)
	components[1].args = append(components[1].args, qps...)
	var procs []*process
	for _, c := range components {
		path, err := binary(c.name)
		if err != nil {
			return err
		}
		p, err := startProcess(c.name, filepath.Join(e.logDir(), c.name+".log"), path, c.args...)
		if err != nil {
			return err
		}
		e.addChild(p)
		procs = append(procs, p)
	}

	if err := e.Client.Create(ctx, fakeNode(opts.NodePods)); err != nil {
		return fmt.Errorf("creating the fake node: %w", err)
	}
	e.NodeName = nodeName
	return e.waitForLocalCluster(ctx, procs)
}

// waitForLocalCluster returns once each component has shown it works: kwok made the Node
// Ready, the controller-manager published the root CA in "default", and a Pod was
// scheduled and reported Running. Tests then never wait on a half-started cluster.
func (e *Env) waitForLocalCluster(ctx context.Context, procs []*process) error {
	c := e.Client
	err := waitFor("the node to be Ready", func() error {
		var node corev1.Node
		if err := c.Get(ctx, client.ObjectKey{Name: nodeName}, &node); err != nil {
			return err
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return errors.New("node is not Ready")
	}, procs...)
	if err != nil {
		return err
	}
	err = waitFor("the controller-manager to publish kube-root-ca.crt", func() error {
		return c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "kube-root-ca.crt"}, &corev1.ConfigMap{})
	}, procs...)
	if err != nil {
		return err
	}

	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "testenv-probe", Namespace: metav1.NamespaceSystem},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: "probe"}}},
	}
	err = waitFor("a pod to be scheduled and Running", func() error {
		err := c.Get(ctx, client.ObjectKeyFromObject(probe), probe)
		if apierrors.IsNotFound(err) {
			// With the ServiceAccount admission plugin (Options.Istio), a pod is refused
			// until the controller-manager created kube-system's default ServiceAccount.
			if err := c.Create(ctx, probe); err != nil {
				return fmt.Errorf("creating the probe pod: %w", err)
			}
			return errors.New("probe pod created")
		}
		if err != nil {
			return err
		}
		if probe.Spec.NodeName == "" || probe.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("probe pod: node %q, phase %q", probe.Spec.NodeName, probe.Status.Phase)
		}
		return nil
	}, procs...)
	if err != nil {
		return err
	}
	if err := c.Delete(ctx, probe, client.GracePeriodSeconds(0)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the probe pod: %w", err)
	}
	return nil
}

// controllers are the controller-manager's controllers: all but the service account token
// controller, and the service account controller only where the ServiceAccount admission
// plugin runs (with istiod; see startAPIServer).
func controllers(opts Options) string {
	if opts.Istio {
		return "*,-serviceaccount-token"
	}
	return "*,-serviceaccount-token,-serviceaccount"
}

func fakeNode(pods int) *corev1.Node {
	if pods <= 0 {
		pods = 500
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("64"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   *resource.NewQuantity(int64(pods), resource.DecimalSI),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: nodeName,
			Labels: map[string]string{
				"kubernetes.io/hostname": nodeName,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"type":                   "kwok",
			},
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
		},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}
}

// writeKwokConfig concatenates the Stage manifests kwok needs (node/fast: the Node
// becomes Ready; node/heartbeat: it stays Ready; pod/fast: Pods run and become Ready at
// once) from the kwok module that hack/tools/kwok pins, the source of bin/kwok, and with
// workers a KwokConfiguration that plays that many pod stages at once.
func (e *Env) writeKwokConfig(workers int) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	kwok, err := ModuleDir(filepath.Join(root, "hack", "tools", "kwok"), "sigs.k8s.io/kwok")
	if err != nil {
		return "", err
	}
	var docs []string
	for _, dir := range []string{"node/fast", "node/heartbeat", "pod/fast"} {
		files, err := filepath.Glob(filepath.Join(kwok, "kustomize", "stage", dir, "*.yaml"))
		if err != nil {
			return "", err
		}
		for _, f := range files {
			if filepath.Base(f) == "kustomization.yaml" {
				continue
			}
			data, err := os.ReadFile(f)
			if err != nil {
				return "", err
			}
			docs = append(docs, strings.TrimPrefix(string(data), "---\n"))
		}
	}
	if len(docs) == 0 {
		return "", fmt.Errorf("no kwok stages found under %s/kustomize/stage", kwok)
	}
	if workers > 0 {
		// A configuration given replaces kwok's defaults as a whole: the options the flags
		// do not set are kwok's defaults, but for the pod stages played at once.
		docs = append(docs, fmt.Sprintf(`apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  podPlayStageParallelism: %d
  nodePlayStageParallelism: 4
  nodeLeaseParallelism: 4
  podsOnNodeSyncParallelism: 1
  enablePodsOnNodeSyncListPager: true
  enablePodsOnNodeSyncStreamWatch: false
  enableDebuggingHandlers: true
  enableProfilingHandler: true
`, workers))
	}
	path := filepath.Join(e.StateDir, "kwok-stages.yaml")
	return path, os.WriteFile(path, []byte(strings.Join(docs, "\n---\n")), 0o600)
}
