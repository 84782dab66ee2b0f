package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/test/e2e/fixture"
	"canopy.dev/canopy/test/meshsim"
	"canopy.dev/canopy/test/testenv"
)

// BenchmarkMeshCost measures what Canaries cost the mesh, with istiod running: every Service
// and route canopy generates lands in every sidecar's configuration. For N Canaries (N from
// BENCH_MESH_SIZES, default 10 and 50; each with its Deployment and Service, Initialized by
// the operator) it reports the configuration istiod sends one sidecar of another namespace
// (listeners, clusters, route configurations, virtual hosts, routes, endpoints, bytes), the
// same for the alternative of one Service with DestinationRule subsets per service (what a
// rollout tool routing by subsets writes), and istiod's heap, resident memory and push time
// (its own metrics), each against the empty mesh. It writes docs/benchmarks-mesh.md
// (BENCH_MESH_OUT, relative to the repository root, overrides).
func BenchmarkMeshCost(b *testing.B) {
	testenv.SkipIfShort(b)
	sizes, err := meshSizes(os.Getenv("BENCH_MESH_SIZES"))
	if err != nil {
		b.Fatal(err)
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(root, "docs", "benchmarks-mesh.md")
	if s := os.Getenv("BENCH_MESH_OUT"); s != "" {
		out = filepath.Join(root, s)
		if filepath.IsAbs(s) {
			out = s
		}
	}
	var rows []meshRow
	for range b.N {
		for _, n := range sizes {
			r, err := measureMesh(n)
			if err != nil {
				b.Fatal(err)
			}
			rows = append(rows, r...)
		}
	}
	md := meshReport(rows)
	b.Log("\n" + md)
	if err := os.WriteFile(out, []byte(md), 0o644); err != nil {
		b.Fatal(err)
	}
}

// meshSizes parses BENCH_MESH_SIZES.
func meshSizes(s string) ([]int, error) {
	if s == "" {
		return []int{10, 50}, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("BENCH_MESH_SIZES: %q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// meshRow is one measurement: a shape of N services, the sidecar's configuration and istiod.
type meshRow struct {
	Shape  string
	N      int
	Config meshsim.ConfigSize
	Istiod istiodStats
}

type istiodStats struct {
	HeapBytes, RSSBytes float64
	// Pushes and PushSeconds are pilot_xds_push_time's count and sum (every type).
	Pushes, PushSeconds float64
}

// measureMesh starts a local cluster with istiod and canopy, and measures the empty mesh,
// then n Canaries, then n more services routed by DestinationRule subsets.
func measureMesh(n int) ([]meshRow, error) {
	env, err := testenv.Start(testenv.Options{LocalCluster: true, Istio: true, ServiceIPRange: "10.96.0.0/16", NodePods: 4*n + 100})
	if err != nil {
		return nil, err
	}
	defer func() { _ = env.Stop() }()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	probe, err := createNamespace(ctx, env, "mesh-client")
	if err != nil {
		return nil, err
	}
	measure := func(shape string, count int) (meshRow, error) {
		size, err := settledConfig(ctx, env, probe)
		if err != nil {
			return meshRow{}, fmt.Errorf("%s: %w", shape, err)
		}
		st, err := scrapeIstiod(ctx, env.Istio.MonitoringAddress)
		return meshRow{Shape: shape, N: count, Config: size, Istiod: st}, err
	}
	var rows []meshRow
	empty, err := measure("empty mesh", 0)
	if err != nil {
		return nil, err
	}
	rows = append(rows, empty)

	opCtx, stopOperator := context.WithCancel(ctx)
	opDone := make(chan error, 1)
	go func() {
		opDone <- manager.Run(opCtx, env.Config, manager.Options{InProcess: true, MetricsAddr: "0", ProbeAddr: "0", MaxConcurrent: 8, QPS: 200, Burst: 400})
	}()
	defer func() { stopOperator(); <-opDone }()
	canaries, err := createNamespace(ctx, env, "canaries")
	if err != nil {
		return nil, err
	}
	for i := range n {
		name := fmt.Sprintf("svc-%03d", i)
		objs := []client.Object{fixture.Deployment(canaries, name, "bench/"+name+":v1", 1), meshService(canaries, name, map[string]string{"app": name}), benchCanary(canaries, name)}
		for _, o := range objs {
			if err := env.Client.Create(ctx, o); err != nil {
				return nil, err
			}
		}
	}
	if err := waitInitialized(ctx, env, canaries, n); err != nil {
		return nil, err
	}
	withCanaries, err := measure("canopy: N Canaries", n)
	if err != nil {
		return nil, err
	}
	rows = append(rows, withCanaries)

	subsets, err := createNamespace(ctx, env, "subsets")
	if err != nil {
		return nil, err
	}
	for i := range n {
		for _, o := range subsetRouting(subsets, fmt.Sprintf("svc-%03d", i)) {
			if err := env.Client.Create(ctx, o); err != nil {
				return nil, err
			}
		}
	}
	withSubsets, err := measure("subsets: N more Services with DestinationRule subsets", n)
	if err != nil {
		return nil, err
	}
	return append(rows, withSubsets), nil
}

func createNamespace(ctx context.Context, env *testenv.Env, prefix string) (string, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-", Labels: map[string]string{testenv.InjectionLabel: "enabled"}}}
	if err := env.Client.Create(ctx, ns); err != nil {
		return "", err
	}
	return ns.Name, nil
}

func meshService(ns, name string, selector map[string]string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Selector: selector, Ports: []corev1.ServicePort{
			{Name: "http", Port: 9080, TargetPort: intstr.FromInt32(9080)},
		}},
	}
}

func benchCanary(ns, name string) *meshv1.Canary {
	return &meshv1.Canary{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: meshv1.CanarySpec{
			TargetRef: meshv1.TargetRef{APIVersion: "apps/v1", Kind: "Deployment", Name: name},
			Service:   meshv1.CanaryService{Port: 9080},
			Analysis:  meshv1.CanaryAnalysis{Interval: "1m", Threshold: 1, StepWeight: ptr.To[int32](10), MaxWeight: 50},
		},
	}
}

// subsetRouting is the one-Service design: the Service of two versions' pods, a
// DestinationRule with a subset per version and a VirtualService splitting between them.
func subsetRouting(ns, name string) []client.Object {
	dr := &istionetv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	dr.Spec.Host = name
	dr.Spec.Subsets = []*networkingv1alpha3.Subset{
		{Name: "stable", Labels: map[string]string{"version": "stable"}},
		{Name: "canary", Labels: map[string]string{"version": "canary"}},
	}
	vs := &istionetv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	vs.Spec.Hosts = []string{name}
	vs.Spec.Http = []*networkingv1alpha3.HTTPRoute{{Route: []*networkingv1alpha3.HTTPRouteDestination{
		{Destination: &networkingv1alpha3.Destination{Host: name, Subset: "stable", Port: &networkingv1alpha3.PortSelector{Number: 9080}}, Weight: 90},
		{Destination: &networkingv1alpha3.Destination{Host: name, Subset: "canary", Port: &networkingv1alpha3.PortSelector{Number: 9080}}, Weight: 10},
	}}}
	d1 := fixture.Deployment(ns, name+"-stable", "bench/"+name+":v1", 1)
	d2 := fixture.Deployment(ns, name+"-canary", "bench/"+name+":v2", 1)
	d1.Spec.Template.Labels["version"], d2.Spec.Template.Labels["version"] = "stable", "canary"
	d1.Spec.Template.Labels["app"], d2.Spec.Template.Labels["app"] = name, name
	return []client.Object{d1, d2, meshService(ns, name, map[string]string{"app": name}), dr, vs}
}

func waitInitialized(ctx context.Context, env *testenv.Env, ns string, n int) error {
	for {
		list := &meshv1.CanaryList{}
		if err := env.Client.List(ctx, list, client.InNamespace(ns)); err != nil {
			return err
		}
		done := 0
		for _, c := range list.Items {
			if c.Status.Phase == meshv1.PhaseInitialized {
				done++
			}
		}
		if done == n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d Canaries Initialized: %w", done, n, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// settledConfig measures the probe sidecar's configuration until two measurements a few
// seconds apart agree: istiod debounces and pushes changes over a few hundred milliseconds.
func settledConfig(ctx context.Context, env *testenv.Env, ns string) (meshsim.ConfigSize, error) {
	var last meshsim.ConfigSize
	for i := 0; ; i++ {
		s, err := meshsim.SidecarConfigSize(ctx, env.Istio.XDSAddress, ns)
		if err != nil {
			return s, err
		}
		if i > 0 && s == last {
			return s, nil
		}
		last = s
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-time.After(3 * time.Second):
		}
	}
}

// scrapeIstiod reads istiod's heap, resident memory and push time from its metrics.
func scrapeIstiod(ctx context.Context, addr string) (istiodStats, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return istiodStats{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return istiodStats{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return istiodStats{}, fmt.Errorf("reading istiod's metrics: %w", err)
	}
	gauge := func(name string) float64 {
		f := families[name]
		if f == nil || len(f.GetMetric()) == 0 {
			return 0
		}
		return f.GetMetric()[0].GetGauge().GetValue()
	}
	var st istiodStats
	st.HeapBytes, st.RSSBytes = gauge("go_memstats_heap_inuse_bytes"), gauge("process_resident_memory_bytes")
	f := families["pilot_xds_push_time"]
	if f == nil {
		return st, errors.New("istiod's metrics have no pilot_xds_push_time")
	}
	for _, m := range f.GetMetric() {
		h := m.GetHistogram()
		st.Pushes += float64(h.GetSampleCount())
		st.PushSeconds += h.GetSampleSum()
	}
	return st, nil
}

func meshReport(rows []meshRow) string {
	var sb strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&sb, format, args...) }
	p("# What Canaries cost the mesh\n\n")
	p("Written by `go test ./test/bench -run '^$' -bench MeshCost -benchtime 1x` (BenchmarkMeshCost; `make bench` runs it too). ")
	p("A local cluster with istiod (test/testenv), canopy in process; the sidecar measured is a client of another namespace, which sees every Service of the mesh (no Sidecar resource narrows it). ")
	p("Sizes are the protobuf bytes istiod sends that sidecar, as `meshsim.SidecarConfigSize` receives them over xDS. ")
	p("\"subsets\" adds, on top of the Canaries, as many services routed the other way: one Service over two Deployments, a DestinationRule with a subset per version and a VirtualService splitting 90/10 between the subsets.\n\n")
	p("| shape | N | listeners | clusters | route configs | virtual hosts | routes | endpoints | bytes | istiod heap | istiod RSS | pushes | push time (avg) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		avg := "-"
		if r.Istiod.Pushes > 0 {
			avg = fmt.Sprintf("%.1f ms", 1000*r.Istiod.PushSeconds/r.Istiod.Pushes)
		}
		c := r.Config
		p("| %s | %d | %d | %d | %d | %d | %d | %d | %d | %.0f MiB | %.0f MiB | %.0f | %s |\n", r.Shape, r.N, c.Listeners, c.Clusters, c.RouteConfigs, c.VirtualHosts, c.Routes, c.Endpoints, c.Bytes,
			r.Istiod.HeapBytes/(1<<20), r.Istiod.RSSBytes/(1<<20), r.Istiod.Pushes, avg)
	}
	p("\n## Per service\n\n| shape | N | clusters | virtual hosts | routes | bytes | istiod heap |\n|---|---|---|---|---|---|---|\n")
	// Each size's rows are the empty mesh, then the Canaries, then the subsets on top: each
	// is measured against the row before it.
	for i := 1; i < len(rows); i++ {
		prev, r := rows[i-1], rows[i]
		if r.N == 0 {
			continue
		}
		n := float64(r.N)
		p("| %s | %d | %.1f | %.1f | %.1f | %.0f | %.0f KiB |\n", r.Shape, r.N,
			float64(r.Config.Clusters-prev.Config.Clusters)/n, float64(r.Config.VirtualHosts-prev.Config.VirtualHosts)/n,
			float64(r.Config.Routes-prev.Config.Routes)/n, float64(r.Config.Bytes-prev.Config.Bytes)/n,
			(r.Istiod.HeapBytes-prev.Istiod.HeapBytes)/n/1024)
	}
	return sb.String()
}

// TestMeshCostSmoke runs BenchmarkMeshCost's measurement with two Canaries in go test ./...,
// so that it cannot rot, and checks what it shows: a sidecar of another namespace gets three
// clusters for each Canary (its apex, primary and canary Services) and three for each service
// routed by subsets (the Service and its two subsets).
func TestMeshCostSmoke(t *testing.T) {
	testenv.SkipIfShort(t)
	rows, err := measureMesh(2)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("%d rows, want the empty mesh, the Canaries and the subsets", len(rows))
	}
	for i, want := range []int{6, 6} { // 3 clusters a service, 2 services
		if got := rows[i+1].Config.Clusters - rows[i].Config.Clusters; got != want {
			t.Errorf("%s: %d more clusters than the row before, want %d", rows[i+1].Shape, got, want)
		}
	}
	if md := meshReport(rows); !strings.Contains(md, "| canopy: N Canaries | 2 | 3.0 |") {
		t.Errorf("the report's per-service table lacks the Canaries' 3 clusters:\n%s", md)
	}
}

func TestMeshSizes(t *testing.T) {
	if got, err := meshSizes(""); err != nil || len(got) != 2 {
		t.Errorf("default sizes %v, %v", got, err)
	}
	if got, err := meshSizes("5, 20"); err != nil || got[0] != 5 || got[1] != 20 {
		t.Errorf("5, 20: %v, %v", got, err)
	}
	for _, bad := range []string{"0", "x", "10,"} {
		if _, err := meshSizes(bad); err == nil || !strings.HasPrefix(err.Error(), "BENCH_MESH_SIZES: ") {
			t.Errorf("%q: %v, want an error naming BENCH_MESH_SIZES", bad, err)
		}
	}
}
