package meshsim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Sim is a running simulator.
type Sim struct {
	ticks  atomic.Int64 // Tick calls
	engine *engine
	xds    *xdsProxies
	reader client.Reader
	// httpRoutes: the cluster serves HTTPRoutes, which the simulator sends traffic through.
	httpRoutes bool
	addr       string
	done       chan struct{}
}

// Start watches the cluster behind cfg and, until ctx ends, sends synthetic traffic to
// its VirtualServices' hosts, routed by the configuration istiod (at opts.XDSAddress)
// sends the simulated proxies, and serves Istio's metrics for it on /metrics.
func Start(ctx context.Context, cfg *rest.Config, opts Options) (*Sim, error) {
	opts = opts.withDefaults()
	if opts.XDSAddress == "" {
		return nil, errors.New("meshsim: Options.XDSAddress is required: the simulator routes by what istiod sends")
	}
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(networkingv1.AddToScheme(s))
	utilruntime.Must(gwapiv1.Install(s))
	copts := cache.Options{Scheme: s}
	if len(opts.Namespaces) > 0 {
		copts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range opts.Namespaces {
			copts.DefaultNamespaces[ns] = cache.Config{}
		}
		// A VirtualService may name a Gateway of another namespace (istio-system's).
		copts.ByObject = map[client.Object]cache.ByObject{
			&networkingv1.Gateway{}: {Namespaces: map[string]cache.Config{cache.AllNamespaces: {}}},
		}
	}
	c, err := cache.New(cfg, copts)
	if err != nil {
		return nil, fmt.Errorf("meshsim: building the cache: %w", err)
	}
	for _, obj := range []client.Object{&networkingv1.VirtualService{}, &networkingv1.Gateway{}, &corev1.Service{}, &appsv1.Deployment{}, &appsv1.ReplicaSet{}, &corev1.Pod{}} {
		if _, err := c.GetInformer(ctx, obj); err != nil {
			return nil, fmt.Errorf("meshsim: watching %T (are Istio's CRDs installed?): %w", obj, err)
		}
	}
	// HTTPRoutes and Gateway API Gateways are optional: without the Gateway API's CRDs
	// only VirtualServices route.
	httpRoutes := true
	for _, obj := range []client.Object{&gwapiv1.HTTPRoute{}, &gwapiv1.Gateway{}} {
		if _, err := c.GetInformer(ctx, obj); meta.IsNoMatchError(err) {
			httpRoutes = false
		} else if err != nil {
			return nil, fmt.Errorf("meshsim: watching %T: %w", obj, err)
		}
	}

	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("meshsim: listening on %s: %w", opts.Addr, err)
	}
	reg := prometheus.NewRegistry()
	sim := &Sim{
		engine: newEngine(opts, reg), xds: newXDSProxies(ctx, opts.XDSAddress, opts.Logger),
		reader: c, httpRoutes: httpRoutes, addr: ln.Addr().String(), done: make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := c.Start(ctx); err != nil {
			opts.Logger.Error(err, "The cache stopped")
		}
	}()
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			opts.Logger.Error(err, "The metrics server stopped")
		}
	}()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
		wg.Wait()
		close(sim.done)
	}()

	if !c.WaitForCacheSync(ctx) {
		_ = srv.Close()
		return nil, errors.New("meshsim: the cache did not sync")
	}
	if opts.TickInterval > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sim.run(ctx, opts.TickInterval)
		}()
	}
	return sim, nil
}

// run ticks until ctx ends, each tick simulating the wall time elapsed since the last.
func (s *Sim) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			// After a stall (a paused process, a slow apiserver) send no burst.
			elapsed := min(now.Sub(last), 5*every)
			last = now
			if err := s.Tick(ctx, elapsed); err != nil && ctx.Err() == nil {
				s.engine.opts.Logger.Error(err, "Skipping a tick")
			}
		}
	}
}

// Tick sends d's worth of traffic to the hosts the cache sees now, routed by what istiod
// has sent. A proxy it has not connected yet connects first, and Tick waits (up to
// syncTimeout) for istiod's answer, so that a tick right after Start is routed; a
// proxy that still has no configuration then sends nothing. Start's ticker calls it;
// with Options.TickInterval < 0 tests call it themselves.
func (s *Sim) Tick(ctx context.Context, d time.Duration) error {
	w, err := listWorld(ctx, s.reader, s.httpRoutes)
	if err != nil {
		return err
	}
	// Twice: a gateway asks for the route configurations its listeners name.
	for range 2 {
		s.engine.subscribe(w, s.xds)
		if err := s.xds.waitSynced(ctx, syncTimeout); err != nil {
			s.engine.opts.Logger.Error(err, "Routing without some proxies' configuration")
		}
	}
	s.engine.simulate(w, s.xds, d)
	if s.ticks.Add(1)%sweepEvery == 0 {
		s.xds.sweep()
	}
	return nil
}

// sweepEvery is how many ticks a proxy no stream needs stays connected, at most.
const sweepEvery = 60

// syncTimeout bounds how long a tick waits for istiod to answer a new subscription.
const syncTimeout = 10 * time.Second

// Addr is the host:port /metrics is served on.
func (s *Sim) Addr() string { return s.addr }

// Stats is a copy of the per-route counters.
func (s *Sim) Stats() Stats { return s.engine.snapshot() }

// Done is closed once the simulator has stopped after its context ended.
func (s *Sim) Done() <-chan struct{} { return s.done }

func listWorld(ctx context.Context, r client.Reader, httpRoutes bool) (*World, error) {
	var (
		hrs  gwapiv1.HTTPRouteList
		kgws gwapiv1.GatewayList
		vss  networkingv1.VirtualServiceList
		gws  networkingv1.GatewayList
		svcs corev1.ServiceList
		deps appsv1.DeploymentList
		rss  appsv1.ReplicaSetList
		pods corev1.PodList
	)
	for _, l := range []client.ObjectList{&vss, &gws, &svcs, &deps, &rss, &pods} {
		if err := r.List(ctx, l); err != nil {
			return nil, fmt.Errorf("meshsim: listing %T: %w", l, err)
		}
	}
	if httpRoutes {
		for _, l := range []client.ObjectList{&hrs, &kgws} {
			if err := r.List(ctx, l); err != nil {
				return nil, fmt.Errorf("meshsim: listing %T: %w", l, err)
			}
		}
	}
	w := &World{}
	w.VirtualServices = append(w.VirtualServices, vss.Items...)
	for i := range hrs.Items {
		w.HTTPRoutes = append(w.HTTPRoutes, &hrs.Items[i])
	}
	w.Gateways = append(w.Gateways, gws.Items...)
	for i := range kgws.Items {
		w.KubeGateways = append(w.KubeGateways, &kgws.Items[i])
	}
	for i := range svcs.Items {
		w.Services = append(w.Services, &svcs.Items[i])
	}
	for i := range deps.Items {
		w.Deployments = append(w.Deployments, &deps.Items[i])
	}
	for i := range rss.Items {
		w.ReplicaSets = append(w.ReplicaSets, &rss.Items[i])
	}
	for i := range pods.Items {
		w.Pods = append(w.Pods, &pods.Items[i])
	}
	return w, nil
}
