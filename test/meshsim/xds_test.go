package meshsim

import (
	"context"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// fakeADS is a state-of-the-world ADS server holding one configuration: it answers every
// request that changes a subscription (or has no nonce) with the resources asked for
// (all of them for listeners and clusters), and pushes on set.
type fakeADS struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer

	mu       sync.Mutex
	cfg      *envoyConfig
	version  int
	streams  []chan struct{}
	requests []*discoveryv3.DiscoveryRequest
}

func (f *fakeADS) set(cfg *envoyConfig) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cfg = cfg
	f.version++
	for _, ch := range f.streams {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (f *fakeADS) resources(typ string, names []string) []*anypb.Any {
	var msgs []proto.Message
	want := func(name string) bool { return contains(names, name) }
	switch typ {
	case typeListener:
		for _, l := range f.cfg.Listeners {
			msgs = append(msgs, l)
		}
	case typeCluster:
		for _, c := range f.cfg.Clusters {
			msgs = append(msgs, c)
		}
	case typeRoute:
		for name, rc := range f.cfg.Routes {
			if want(name) {
				msgs = append(msgs, rc)
			}
		}
	case typeEndpoint:
		for name, cla := range f.cfg.Endpoints {
			if want(name) {
				msgs = append(msgs, cla)
			}
		}
	}
	var out []*anypb.Any
	for _, m := range msgs {
		a, err := anypb.New(m)
		if err != nil {
			panic(err)
		}
		out = append(out, a)
	}
	return out
}

func (f *fakeADS) StreamAggregatedResources(s discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	push := make(chan struct{}, 1)
	f.mu.Lock()
	f.streams = append(f.streams, push)
	f.mu.Unlock()
	reqs := make(chan *discoveryv3.DiscoveryRequest)
	go func() {
		for {
			r, err := s.Recv()
			if err != nil {
				close(reqs)
				return
			}
			reqs <- r
		}
	}()
	watched := map[string][]string{}
	nonce := 0
	send := func(typ string) error {
		f.mu.Lock()
		res := f.resources(typ, watched[typ])
		v := strconv.Itoa(f.version)
		f.mu.Unlock()
		nonce++
		return s.Send(&discoveryv3.DiscoveryResponse{TypeUrl: typ, VersionInfo: v, Nonce: strconv.Itoa(nonce), Resources: res})
	}
	for {
		select {
		case r, ok := <-reqs:
			if !ok {
				return nil
			}
			f.mu.Lock()
			f.requests = append(f.requests, r)
			f.mu.Unlock()
			prev, seen := watched[r.TypeUrl]
			watched[r.TypeUrl] = r.ResourceNames
			if r.ResponseNonce == "" || !seen || !slices.Equal(prev, r.ResourceNames) {
				if err := send(r.TypeUrl); err != nil {
					return err
				}
			}
		case <-push:
			for typ := range watched {
				if err := send(typ); err != nil {
					return err
				}
			}
		}
	}
}

// TestADSClient subscribes a proxy to a fake ADS server: it asks for listeners and
// clusters, then the endpoints of the EDS clusters and the route configurations wanted,
// ACKs, and follows a push.
func TestADSClient(t *testing.T) {
	ads := &fakeADS{}
	cfg := reviewsConfig(split(cluster("reviews-primary", ""), 90, cluster("reviews-canary", ""), 10))
	cfg.Listeners["0.0.0.0_9080"] = httpListener(9080, "9080")
	ads.set(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(srv, ads)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	px := newXDSProxies(ctx, ln.Addr().String(), logr.Discard())
	n := node{Type: "sidecar", Namespace: "shop", Name: "client", IP: "192.0.2.1", Labels: map[string]string{"app": "client"}}
	if got := px.config(n, []string{"9080"}); got != nil {
		t.Fatalf("a configuration before istiod answered: %v", got)
	}
	if err := px.waitSynced(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	got := px.config(n, []string{"9080"})
	if got == nil || got.Routes["9080"] == nil || len(got.Listeners) != 1 || len(got.Clusters) != 3 || len(got.Endpoints) != 3 {
		t.Fatalf("configuration %v", got)
	}
	if eps, _ := got.clusterEndpoints(cluster("reviews-primary", "")); len(eps) != 2 {
		t.Fatalf("primary endpoints %v", eps)
	}

	// A push of new weights reaches the proxy.
	next := reviewsConfig(split(cluster("reviews-primary", ""), 50, cluster("reviews-canary", ""), 50))
	next.Listeners = cfg.Listeners
	ads.set(next)
	deadline := time.Now().Add(10 * time.Second)
	for {
		rc := px.config(n, []string{"9080"}).Routes["9080"]
		if w := rc.GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetWeightedClusters().GetClusters()[1].GetWeight().GetValue(); w == 50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the push never arrived: %v", rc)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A proxy asked for since the last sweep stays; one that was not is disconnected.
	px.sweep()
	if len(px.clients) != 1 {
		t.Fatalf("a proxy in use was swept")
	}
	px.sweep()
	if len(px.clients) != 0 {
		t.Fatalf("an unused proxy was kept")
	}

	// Every response was ACKed with its nonce; the node came with each request.
	ads.mu.Lock()
	defer ads.mu.Unlock()
	acked := map[string]bool{}
	for _, r := range ads.requests {
		if r.GetNode().GetId() != n.ID() || r.GetNode().GetMetadata().GetFields()["NAMESPACE"].GetStringValue() != "shop" {
			t.Fatalf("request without the node: %v", r.GetNode())
		}
		if r.ResponseNonce != "" {
			acked[r.TypeUrl] = true
		}
		if r.ErrorDetail != nil {
			t.Errorf("NACK: %v", r.ErrorDetail)
		}
	}
	for _, typ := range []string{typeListener, typeCluster, typeEndpoint, typeRoute} {
		if !acked[typ] {
			t.Errorf("no ACK of %s", typ)
		}
	}
}

// TestPartialPushes: istiod pushes the endpoints of the clusters that changed only (and
// may do so for route configurations); the others stay as they were, and those of a
// cluster that is gone are dropped.
func TestPartialPushes(t *testing.T) {
	c := &adsClient{log: logr.Discard(), cfg: &envoyConfig{}, answered: map[string]bool{}, changed: make(chan struct{})}
	respond := func(typ string, msgs ...proto.Message) {
		t.Helper()
		resp := &discoveryv3.DiscoveryResponse{TypeUrl: typ, Nonce: "n"}
		for _, m := range msgs {
			a, err := anypb.New(m)
			if err != nil {
				t.Fatal(err)
			}
			resp.Resources = append(resp.Resources, a)
		}
		if ack, _ := c.apply(resp); ack.ErrorDetail != nil {
			t.Fatalf("NACK: %v", ack.ErrorDetail)
		}
	}
	primary, canary := cluster("reviews-primary", ""), cluster("reviews-canary", "")
	respond(typeCluster, edsCluster(primary), edsCluster(canary))
	respond(typeEndpoint, assignment(primary, "10.0.0.2"), assignment(canary, "10.0.0.4"))
	respond(typeEndpoint, assignment(canary, "10.0.0.5"))
	if eps, _ := c.cfg.clusterEndpoints(primary); len(eps) != 1 || eps[0].IP != "10.0.0.2" {
		t.Fatalf("the primary's endpoints after a push of the canary's: %v", eps)
	}
	if eps, _ := c.cfg.clusterEndpoints(canary); len(eps) != 1 || eps[0].IP != "10.0.0.5" {
		t.Fatalf("the canary's endpoints after its push: %v", eps)
	}
	respond(typeCluster, edsCluster(primary))
	if _, ok := c.cfg.Endpoints[canary]; ok {
		t.Fatalf("the endpoints of a gone cluster were kept")
	}
}
