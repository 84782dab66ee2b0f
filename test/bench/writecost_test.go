//go:build linux

package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/apply"
	"canopy.dev/canopy/internal/progress"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/test/testenv"
)

// writeCostObjects is how many objects of each kind one pass of BenchmarkAPIServerWrite
// writes (32 at a time, as the benchmark's clients do).
const writeCostObjects = 500

// BenchmarkAPIServerWrite measures what one write of each kind a weight step makes costs
// the apiserver, in its CPU milliseconds (from /proc): a Canary status merge patch (what
// canopy sends), the same as an update, a VirtualService server-side apply (what canopy
// sends), the same as a merge patch, an event, and a ConfigMap merge patch (a built-in
// type, for comparison). It explains the rollout phase of BenchmarkScale: with a 1 s
// interval, N Canaries stepping at once need N x (status + VirtualService + event) of the
// apiserver's CPU a second. The apiserver is envtest's (the local cluster's, without the
// controllers): the writes are the only work it has.
func BenchmarkAPIServerWrite(b *testing.B) {
	testenv.SkipIfShort(b)
	dir := b.TempDir()
	env, err := testenv.Start(testenv.Options{StateDir: dir})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = env.Stop() })
	ctx := context.Background()
	w, err := newWriteCost(ctx, env)
	if err != nil {
		b.Fatal(err)
	}
	for _, k := range w.kinds() {
		b.Run(k.name, func(b *testing.B) {
			cpu, writes := 0.0, 0
			start := time.Now()
			for b.Loop() {
				c0 := componentCPU(dir)["kube-apiserver"]
				w.round++
				if err := parallel(writeCostObjects, k.write); err != nil {
					b.Fatal(err)
				}
				cpu += componentCPU(dir)["kube-apiserver"] - c0
				writes += writeCostObjects
			}
			b.ReportMetric(cpu*1000/float64(writes), "apiserver-ms/write")
			b.ReportMetric(float64(writes)/time.Since(start).Seconds(), "writes/s")
			b.ReportMetric(0, "ns/op")
		})
	}
	if os.Getenv("BENCH_WRITE_PROFILE") != "" {
		if err := w.profile(ctx, env); err != nil {
			b.Fatal(err)
		}
	}
}

// profile records the apiserver's CPU profile while it takes writes of each kind for a few
// seconds (BENCH_WRITE_PROFILE=1), into bin/bench/write-cost: where a write's time goes.
func (w *writeCost) profile(ctx context.Context, env *testenv.Env) error {
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		return err
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		return err
	}
	out := filepath.Join(root, "bin", "bench", "write-cost")
	const seconds = 5
	for _, k := range w.kinds() {
		pctx, cancel := context.WithCancel(ctx)
		writing := make(chan error, 1)
		go func() {
			for pctx.Err() == nil {
				w.round++
				if err := parallel(writeCostObjects, k.write); err != nil && pctx.Err() == nil {
					writing <- err
					return
				}
			}
			writing <- nil
		}()
		cp, err := profileAPIServerCPU(ctx, cs, out, k.name, seconds)
		cancel()
		if werr := <-writing; err == nil {
			err = werr
		}
		if err != nil {
			return err
		}
		fmt.Printf("apiserver CPU while writing %s (%s):\n%s\n\n", k.name, cp.Path, cp.Top)
	}
	return nil
}

type writeCost struct {
	c        client.Client
	applier  *apply.Applier
	canaries []*meshv1.Canary
	targets  []*appsv1.Deployment
	round    int32
}

type writeKind struct {
	name  string
	write func(i int) error
}

// newWriteCost creates the objects: Canaries with the status of one mid-rollout, their
// VirtualServices as canopy renders them, and ConfigMaps.
func newWriteCost(ctx context.Context, env *testenv.Env) (*writeCost, error) {
	w := &writeCost{c: env.Client, applier: &apply.Applier{Client: env.Client, Reader: env.Client}}
	r := &run{cfg: scaleConfig{N: writeCostObjects, Interval: time.Second, Steps: 5, PerNamespace: writeCostObjects, Prometheus: true}, namespaces: []string{"write-cost"}}
	if err := w.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "write-cost"}}); err != nil {
		return nil, err
	}
	w.canaries = make([]*meshv1.Canary, writeCostObjects)
	w.targets = make([]*appsv1.Deployment, writeCostObjects)
	err := parallel(writeCostObjects, func(i int) error {
		c := r.canary(i, "http://127.0.0.1:9/")
		if err := w.c.Create(ctx, c); err != nil {
			return err
		}
		// The status of a Canary of BenchmarkScale at its first step, as canopy writes it.
		now := metav1.Now()
		c.Status = meshv1.CanaryStatus{
			ObservedGeneration: 1, Phase: meshv1.PhaseProgressing, CanaryWeight: 10, StepIndex: 1, CurrentRevision: "094f9d4ec304", LastPromotedRevision: "ccbd34859f27",
			RolloutStarted: &now, LastStepTime: &now, LastTransitionTime: &now, ServiceAdopted: true,
			Checks: []meshv1.CheckStatus{
				{Name: "bench-check", Outcome: meshv1.OutcomePass, Threshold: "2xx", LastMeasured: &now},
				{Name: "request-success-rate", Outcome: meshv1.OutcomePass, Threshold: ">= 99", Value: "100", LastMeasured: &now},
			},
		}
		for _, cond := range [][3]string{
			{meshv1.ConditionReady, "False", stepMessage(10, 1)},
			{meshv1.ConditionReconciling, "True", stepMessage(10, 1)},
			{meshv1.ConditionStalled, "False", stepMessage(10, 1)},
			{meshv1.ConditionPromoted, "Unknown", "Rollout of revision 094f9d4ec304 in progress"},
			{meshv1.ConditionAnalysis, "True", "Passed at step 1: bench-check, request-success-rate is 100 (threshold >= 99)"},
		} {
			c.Status.Conditions = append(c.Status.Conditions, metav1.Condition{Type: cond[0], Status: metav1.ConditionStatus(cond[1]), Reason: "Progressing",
				Message: cond[2], LastTransitionTime: now, ObservedGeneration: 1})
		}
		if err := w.c.Status().Update(ctx, c); err != nil {
			return err
		}
		w.canaries[i] = c
		w.targets[i] = &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: c.Namespace, Name: c.Spec.TargetRef.Name},
			Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": c.Name}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": c.Name}},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "bench:1", Ports: []corev1.ContainerPort{{ContainerPort: 9080}}}}},
				},
			},
		}
		if err := w.applyRoute(ctx, i, 0); err != nil {
			return err
		}
		return w.c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: c.Namespace, Name: c.Name}, Data: map[string]string{"weight": "0"}})
	})
	return w, err
}

func (w *writeCost) virtualService(i int, weight int32) (*networkingv1.VirtualService, error) {
	set, err := render.CanaryObjects(w.canaries[i], w.targets[i], progress.Routing{PrimaryWeight: 100 - weight, CanaryWeight: weight}, nil)
	return set.VirtualService, err
}

func (w *writeCost) applyRoute(ctx context.Context, i int, weight int32) error {
	vs, err := w.virtualService(i, weight)
	if err != nil {
		return err
	}
	_, err = w.applier.Apply(ctx, vs)
	return err
}

func (w *writeCost) kinds() []writeKind {
	ctx := context.Background()
	weight := func() int32 { return 10 * (w.round%9 + 1) }
	status := func(i int, patch bool) error {
		c := w.canaries[i]
		before := c.DeepCopy()
		now := metav1.Now()
		st := &c.Status
		st.CanaryWeight, st.StepIndex, st.LastStepTime = weight(), st.StepIndex+1, &now
		for i := range st.Checks {
			st.Checks[i].LastMeasured = &now
		}
		for i := range st.Conditions[:3] {
			st.Conditions[i].Message = stepMessage(st.CanaryWeight, st.StepIndex)
		}
		if patch {
			return w.c.Status().Patch(ctx, c, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))
		}
		return w.c.Status().Update(ctx, c)
	}
	return []writeKind{
		{"canary-status-merge-patch", func(i int) error { return status(i, true) }},
		{"canary-status-update", func(i int) error { return status(i, false) }},
		{"virtualservice-apply", func(i int) error { return w.applyRoute(ctx, i, weight()) }},
		{"virtualservice-merge-patch", func(i int) error {
			vs, err := w.virtualService(i, weight())
			if err != nil {
				return err
			}
			live := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: vs.Namespace, Name: vs.Name}}
			patch := client.MergeFrom(live.DeepCopy())
			live.Spec.Http = vs.Spec.Http
			return w.c.Patch(ctx, live, patch, client.FieldOwner("write-cost"))
		}},
		{"event-create", func(i int) error {
			c := w.canaries[i]
			return w.c.Create(ctx, &eventsv1.Event{
				ObjectMeta: metav1.ObjectMeta{Namespace: c.Namespace, Name: fmt.Sprintf("%s.%d", c.Name, w.round)},
				EventTime:  metav1.NowMicro(), ReportingController: "canopy", ReportingInstance: "canopy-bench",
				Action: "Progressing", Reason: "Progressing", Type: corev1.EventTypeNormal,
				Regarding: corev1.ObjectReference{APIVersion: meshv1.GroupVersion.String(), Kind: "Canary", Namespace: c.Namespace, Name: c.Name, UID: c.UID},
				Note:      fmt.Sprintf("Advance weight %d", weight()),
			})
		}},
		{"configmap-merge-patch", func(i int) error {
			c := w.canaries[i]
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: c.Namespace, Name: c.Name}}
			return w.c.Patch(ctx, cm, client.RawPatch("application/merge-patch+json", fmt.Appendf(nil, `{"data":{"weight":"%d"}}`, weight())))
		}},
	}
}

// stepMessage is the message of a Canary's Ready, Reconciling and Stalled conditions at a step.
func stepMessage(weight, step int32) string {
	return fmt.Sprintf("Canary weight %d%% at step %d; 0 of 1 failed checks", weight, step)
}
