// Package e2e runs canopy against the local cluster: a real kube-apiserver, etcd,
// kube-controller-manager, kube-scheduler and kwok, so Deployments really roll out and their
// pods become Ready. The operator runs in-process and is stopped and started again by the
// tests that need a restart.
package e2e

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/test/e2e/fixture"
	"canopy.dev/canopy/test/testenv"
)

var env *testenv.Env

// TestMain starts the local cluster with cert-manager's controllers (for the Certificate
// tests; they cost a second or two to start) and istiod: its webhook judges every Istio
// object canopy writes, its injector puts sidecars into the test namespaces' pods, and its
// analyzers judge each test's namespace when the test ends (testenv.CreateNamespace).
func TestMain(m *testing.M) {
	testenv.Main(m, testenv.Options{LocalCluster: true, CertManager: true, Istio: true}, &env)
}

// operator is canopy running in this process against the local cluster.
type operator struct {
	cancel context.CancelFunc
	done   chan error
}

// startOperator runs the manager as the cluster's admin until stop is called (or the test
// ends).
func startOperator(t *testing.T, opts manager.Options) *operator {
	t.Helper()
	return startOperatorWith(t, env.Config, opts)
}

// startOperatorWith runs the manager with the client config cfg (e.g. one that impersonates
// a ServiceAccount).
func startOperatorWith(t *testing.T, cfg *rest.Config, opts manager.Options) *operator {
	t.Helper()
	if opts.MetricsAddr == "" {
		opts.MetricsAddr = "0"
	}
	if opts.ProbeAddr == "" {
		opts.ProbeAddr = "0"
	}
	if opts.MaxConcurrent == 0 {
		opts.MaxConcurrent = 4
	}
	opts.QPS, opts.Burst = 200, 400
	opts.InProcess = true
	ctx, cancel := context.WithCancel(context.Background())
	op := &operator{cancel: cancel, done: make(chan error, 1)}
	go func() { op.done <- manager.Run(ctx, cfg, opts) }()
	t.Cleanup(func() { op.stop(t) })
	return op
}

// stop stops the operator; it fails the test if the operator had exited with an error.
func (o *operator) stop(t *testing.T) {
	if o.cancel == nil {
		return
	}
	o.cancel()
	if err := <-o.done; err != nil {
		t.Errorf("the operator exited with an error: %v", err)
	}
	o.cancel = nil
}

// imageAnalyzer judges a revision by its image: a tag starting with "bad" fails every check.
// It stands in for Prometheus in the tests of the rollout mechanics; the analysis tests use
// the real Prometheus and the mesh simulator.
type imageAnalyzer struct{ c client.Client }

func (a imageAnalyzer) Run(ctx context.Context, c *meshv1.Canary) []meshv1.CheckStatus {
	d := &appsv1.Deployment{}
	outcome, value := meshv1.OutcomePass, "100"
	if err := a.c.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: c.Spec.TargetRef.Name}, d); err != nil {
		outcome, value = meshv1.OutcomeError, ""
	} else if strings.Contains(d.Spec.Template.Spec.Containers[0].Image, ":bad") {
		outcome, value = meshv1.OutcomeFail, "42"
	}
	return checksOf(c, outcome, value)
}

// checksOf gives every check of c the outcome and value, as a stand-in analyzer's answer.
func checksOf(c *meshv1.Canary, outcome meshv1.CheckOutcome, value string) []meshv1.CheckStatus {
	now := metav1.Now()
	var out []meshv1.CheckStatus
	for _, m := range c.Spec.Analysis.Metrics {
		out = append(out, meshv1.CheckStatus{Name: m.Name, Outcome: outcome, Value: value, Threshold: ">= 99", LastMeasured: &now})
	}
	return out
}

// weightLog records every split the apex VirtualService had, from a watch.
type weightLog struct {
	mu  sync.Mutex
	log []int32
}

func watchWeights(t *testing.T, ns, name string) *weightLog {
	return watchSplit(t, ns, &istionetv1.VirtualServiceList{}, func(o client.Object) (int32, bool) {
		vs, ok := o.(*istionetv1.VirtualService)
		if !ok || vs.Name != name {
			return 0, false
		}
		_, c, ok := render.ObservedWeights(vs, name)
		return c, ok
	})
}

// watchSplit records every canary weight canaryOf reads from the objects of list's kind in
// ns (ok false: not the route, or no split).
func watchSplit(t *testing.T, ns string, list client.ObjectList, canaryOf func(client.Object) (int32, bool)) *weightLog {
	t.Helper()
	l := &weightLog{}
	watchEach(t, ns, list, func(o client.Object) {
		c, ok := canaryOf(o)
		if !ok {
			return
		}
		l.mu.Lock()
		if n := len(l.log); n == 0 || l.log[n-1] != c {
			l.log = append(l.log, c)
		}
		l.mu.Unlock()
	})
	return l
}

// watchEach calls seen with every version of the objects of list's kind in ns, from a watch
// that lasts as long as the test.
func watchEach(t *testing.T, ns string, list client.ObjectList, seen func(client.Object)) {
	t.Helper()
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w, err := wc.Watch(ctx, list, client.InNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			if o, ok := ev.Object.(client.Object); ok {
				seen(o)
			}
		}
	}()
}

func (l *weightLog) values() []int32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.log)
}

func newDeployment(ns, name, image string, replicas int32) *appsv1.Deployment {
	return fixture.Deployment(ns, name, image, replicas)
}

func newCanary(ns, name string, stepWeight, maxWeight int32) *meshv1.Canary {
	return &meshv1.Canary{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: meshv1.CanarySpec{
			TargetRef: meshv1.TargetRef{APIVersion: "apps/v1", Kind: "Deployment", Name: name},
			Service:   meshv1.CanaryService{Port: 9080},
			Analysis: meshv1.CanaryAnalysis{
				Interval: "1s", Threshold: 2, StepWeight: &stepWeight, MaxWeight: maxWeight,
				Metrics: []meshv1.CanaryMetric{{Name: "request-success-rate", ThresholdRange: meshv1.ThresholdRange{Min: ptr.To(99.0)}}},
			},
		},
	}
}

func getCanary(t *testing.T, ns, name string) *meshv1.Canary {
	t.Helper()
	return fixture.Canary(t, env.Client, ns, name)
}

// waitPhase waits until the Canary is in phase.
func waitPhase(t *testing.T, ns, name string, phase meshv1.CanaryPhase) *meshv1.Canary {
	t.Helper()
	return fixture.WaitPhase(t, env.Client, ns, name, phase)
}

// setImage changes a Deployment's image: a new revision.
func setImage(t *testing.T, ns, name, image string) {
	t.Helper()
	fixture.SetImage(t, env.Client, ns, name, image)
}

// readyPods counts the Running and Ready pods of a Deployment's selector that run image.
func readyPods(t *testing.T, ns string, selector map[string]string, image string) int {
	t.Helper()
	pods := &corev1.PodList{}
	if err := env.Client.List(t.Context(), pods, client.InNamespace(ns), client.MatchingLabels(selector)); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning || p.Spec.Containers[0].Image != image {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				n++
			}
		}
	}
	return n
}
