package meshsim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/go-logr/logr"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// The xDS resource types the simulated proxies subscribe to.
const (
	typeListener = "type.googleapis.com/envoy.config.listener.v3.Listener"
	typeRoute    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	typeCluster  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	typeEndpoint = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
)

// node is a proxy the simulator connects to istiod as.
type node struct {
	// Type is "sidecar" or "router" (a gateway).
	Type string
	// Namespace and Name are the pod's; Name is made up, no such pod exists.
	Namespace, Name string
	// IP is the proxy's address in istiod's eyes. It is an address of TEST-NET-1
	// (192.0.2.0/24), so that it matches no pod and nothing is ever sent to it.
	IP string
	// Labels are the workload labels istiod selects by (sourceLabels, Gateway selectors,
	// Sidecar workloadSelector).
	Labels map[string]string
	// ServiceAccount is the proxy's identity (default "default").
	ServiceAccount string
}

// ID is the node id Envoy presents: type~ip~pod.namespace~namespace.svc.cluster.local.
func (n node) ID() string {
	return n.Type + "~" + n.IP + "~" + n.Name + "." + n.Namespace + "~" + n.Namespace + "." + clusterDomain
}

func (n node) envoyNode() (*corev3.Node, error) {
	labels := map[string]any{}
	for k, v := range n.Labels {
		labels[k] = v
	}
	sa := n.ServiceAccount
	if sa == "" {
		sa = "default"
	}
	md, err := structpb.NewStruct(map[string]any{
		"NAMESPACE":       n.Namespace,
		"CLUSTER_ID":      "Kubernetes",
		"MESH_ID":         "cluster.local",
		"LABELS":          labels,
		"WORKLOAD_NAME":   n.Name,
		"SERVICE_ACCOUNT": sa,
		"INSTANCE_IPS":    n.IP,
		"ISTIO_VERSION":   "1.31.0",
		"NAME":            n.Name,
	})
	if err != nil {
		return nil, err
	}
	return &corev3.Node{Id: n.ID(), Cluster: n.Name + "." + n.Namespace, Metadata: md}, nil
}

// envoyConfig is what istiod has sent one proxy: the state Envoy would run with.
// Its maps are never changed once built; a new response builds a new envoyConfig.
type envoyConfig struct {
	Listeners map[string]*listenerv3.Listener
	Routes    map[string]*routev3.RouteConfiguration
	Clusters  map[string]*clusterv3.Cluster
	Endpoints map[string]*endpointv3.ClusterLoadAssignment
}

func (c *envoyConfig) clone() *envoyConfig {
	if c == nil {
		return &envoyConfig{}
	}
	return &envoyConfig{
		Listeners: c.Listeners,
		Routes:    c.Routes,
		Clusters:  c.Clusters,
		Endpoints: c.Endpoints,
	}
}

// adsClient is one proxy's aggregated discovery stream to istiod, subscribed (state of
// the world) to every listener and cluster, to the endpoints of every EDS cluster, and to
// the route configurations the simulator asked for (Envoy asks for those its listeners
// name; a sidecar's HTTP listener on port P names route configuration "P").
type adsClient struct {
	node  node
	log   logr.Logger
	close context.CancelFunc // ends the stream and the connection

	mu     sync.Mutex
	cfg    *envoyConfig
	routes []string // route configurations subscribed, sorted
	eds    []string // EDS service names subscribed, sorted
	// answered says which types istiod has answered since the last change of their
	// subscription: a subscription is in force once its answer came.
	answered map[string]bool
	ready    bool // listeners, clusters and endpoints have all been answered once
	err      error
	changed  chan struct{} // closed and replaced on every change of cfg or err
	send     chan *discoveryv3.DiscoveryRequest
}

// dialADS connects a proxy to istiod's plaintext xDS address and keeps its stream until
// ctx ends, reconnecting after a failure.
func dialADS(ctx context.Context, addr string, n node, log logr.Logger) (*adsClient, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	if err != nil {
		return nil, fmt.Errorf("meshsim: connecting to istiod at %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	c := &adsClient{
		node: n, log: log.WithValues("proxy", n.ID()), close: cancel,
		cfg:      &envoyConfig{},
		answered: map[string]bool{},
		changed:  make(chan struct{}),
	}
	go func() {
		defer func() { _ = conn.Close() }()
		for ctx.Err() == nil {
			err := c.stream(ctx, discoveryv3.NewAggregatedDiscoveryServiceClient(conn))
			if ctx.Err() != nil {
				return
			}
			c.fail(err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	return c, nil
}

func (c *adsClient) fail(err error) {
	c.log.Error(err, "The xDS stream to istiod broke; reconnecting")
	c.mu.Lock()
	defer c.mu.Unlock()
	c.err = err
	c.answered = map[string]bool{}
	c.notifyLocked()
}

func (c *adsClient) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// stream runs one ADS stream until it fails or ctx ends.
func (c *adsClient) stream(ctx context.Context, ads discoveryv3.AggregatedDiscoveryServiceClient) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	envoyNode, err := c.node.envoyNode()
	if err != nil {
		return err
	}
	s, err := ads.StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	send := make(chan *discoveryv3.DiscoveryRequest, 64)
	c.mu.Lock()
	c.send = send
	routes := slices.Clone(c.routes)
	c.eds = nil
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.send = nil
		c.mu.Unlock()
	}()
	sendErr := make(chan error, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case req := <-send:
				req.Node = envoyNode
				if err := s.Send(req); err != nil {
					sendErr <- err
					cancel()
					return
				}
			}
		}
	}()
	enqueue := func(req *discoveryv3.DiscoveryRequest) {
		select {
		case send <- req:
		case <-ctx.Done():
		}
	}
	// Clusters and listeners first, as Envoy does; the endpoints and routes they name
	// follow.
	enqueue(&discoveryv3.DiscoveryRequest{TypeUrl: typeCluster})
	enqueue(&discoveryv3.DiscoveryRequest{TypeUrl: typeListener})
	if len(routes) > 0 {
		enqueue(&discoveryv3.DiscoveryRequest{TypeUrl: typeRoute, ResourceNames: routes})
	}
	for {
		resp, err := s.Recv()
		if err != nil {
			select {
			case e := <-sendErr:
				return e
			default:
			}
			return err
		}
		ack, edsChange := c.apply(resp)
		enqueue(ack)
		if edsChange != nil {
			enqueue(edsChange)
		}
	}
}

// apply stores a response and returns its ACK (a NACK when a resource cannot be read,
// which leaves the previous state in force, as Envoy does) and, when new clusters name
// other endpoints, the changed EDS subscription.
func (c *adsClient) apply(resp *discoveryv3.DiscoveryResponse) (ack, eds *discoveryv3.DiscoveryRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cfg := c.cfg.clone()
	var err error
	switch resp.TypeUrl {
	case typeListener:
		cfg.Listeners, err = unmarshalAll(resp, func(l *listenerv3.Listener) string { return l.Name })
	case typeCluster:
		cfg.Clusters, err = unmarshalAll(resp, func(cl *clusterv3.Cluster) string { return cl.Name })
	case typeRoute:
		var m map[string]*routev3.RouteConfiguration
		if m, err = unmarshalAll(resp, func(rc *routev3.RouteConfiguration) string { return rc.Name }); err == nil {
			cfg.Routes = merge(cfg.Routes, m, c.routes)
		}
	case typeEndpoint:
		var m map[string]*endpointv3.ClusterLoadAssignment
		if m, err = unmarshalAll(resp, func(cla *endpointv3.ClusterLoadAssignment) string { return cla.ClusterName }); err == nil {
			cfg.Endpoints = merge(cfg.Endpoints, m, c.eds)
		}
	}
	ack = &discoveryv3.DiscoveryRequest{TypeUrl: resp.TypeUrl, ResponseNonce: resp.Nonce}
	switch resp.TypeUrl {
	case typeRoute:
		ack.ResourceNames = slices.Clone(c.routes)
	case typeEndpoint:
		ack.ResourceNames = slices.Clone(c.eds)
	}
	if err != nil {
		c.log.Error(err, "Rejecting a response of istiod", "type", resp.TypeUrl)
		ack.ErrorDetail = &status.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
		return ack, nil
	}
	ack.VersionInfo = resp.VersionInfo
	c.cfg = cfg
	c.err = nil
	c.answered[resp.TypeUrl] = true
	defer func() {
		c.ready = c.ready || c.answered[typeCluster] && c.answered[typeListener] && c.answered[typeEndpoint]
	}()
	if resp.TypeUrl == typeCluster {
		if names := edsNames(cfg.Clusters); !slices.Equal(names, c.eds) {
			c.eds = names
			cfg.Endpoints = merge(cfg.Endpoints, nil, names) // those of gone clusters
			c.answered[typeEndpoint] = false
			eds = &discoveryv3.DiscoveryRequest{TypeUrl: typeEndpoint, ResourceNames: slices.Clone(names)}
		}
		if len(c.eds) == 0 {
			c.answered[typeEndpoint] = true
		}
	}
	c.notifyLocked()
	return ack, eds
}

// merge applies a response of a type whose resources are named by the subscription
// (routes, endpoints): unlike listeners and clusters, a response need not carry them all
// (istiod pushes the endpoints of the clusters that changed), so the resources it holds
// replace theirs, the others stay, and those no longer subscribed are dropped.
func merge[T any](old, got map[string]T, subscribed []string) map[string]T {
	out := make(map[string]T, len(subscribed))
	for _, name := range subscribed {
		if v, ok := got[name]; ok {
			out[name] = v
		} else if v, ok := old[name]; ok {
			out[name] = v
		}
	}
	return out
}

func unmarshalAll[T proto.Message](resp *discoveryv3.DiscoveryResponse, name func(T) string) (map[string]T, error) {
	m := make(map[string]T, len(resp.Resources))
	for _, a := range resp.Resources {
		msg, err := a.UnmarshalNew()
		if err != nil {
			return nil, fmt.Errorf("reading a %s: %w", resp.TypeUrl, err)
		}
		t, ok := msg.(T)
		if !ok {
			return nil, fmt.Errorf("a %s in a response of %s", a.TypeUrl, resp.TypeUrl)
		}
		m[name(t)] = t
	}
	return m, nil
}

// edsNames are the EDS service names of the EDS clusters, sorted.
func edsNames(clusters map[string]*clusterv3.Cluster) []string {
	var names []string
	for name, cl := range clusters {
		if cl.GetType() != clusterv3.Cluster_EDS {
			continue
		}
		if sn := cl.GetEdsClusterConfig().GetServiceName(); sn != "" {
			name = sn
		}
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// want subscribes to route configurations (adding to those already subscribed).
func (c *adsClient) want(routes []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	added := false
	for _, r := range routes {
		if _, found := slices.BinarySearch(c.routes, r); !found {
			c.routes = append(c.routes, r)
			sort.Strings(c.routes)
			added = true
		}
	}
	if !added {
		return
	}
	c.answered[typeRoute] = false
	if c.send != nil {
		select {
		case c.send <- &discoveryv3.DiscoveryRequest{TypeUrl: typeRoute, ResourceNames: slices.Clone(c.routes)}:
		default:
			// The stream is stuck; its replacement subscribes to c.routes.
		}
	}
}

// configFor is what istiod has sent so far, once it has answered the listeners,
// clusters and endpoints at least once, and each of routes (a route configuration
// istiod has no answer for counts as answered once its subscription is).
func (c *adsClient) configFor(routes []string) *envoyConfig {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ready {
		return nil
	}
	for _, r := range routes {
		if _, ok := c.cfg.Routes[r]; !ok && !c.answered[typeRoute] {
			return nil
		}
	}
	return c.cfg
}

// config is what istiod has sent so far, and whether the proxy is synced: it has had
// listeners, clusters and endpoints once, and an answer to its route subscription since
// that last changed.
func (c *adsClient) config() (*envoyConfig, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Once ready, only a route subscription is waited for: the endpoints of clusters a
	// push adds follow on their own, and a tick need not wait for them.
	synced := c.ready && (len(c.routes) == 0 || c.answered[typeRoute])
	return c.cfg, synced
}

// waitSynced waits until the proxy is synced (see config).
func (c *adsClient) waitSynced(ctx context.Context) error {
	for {
		c.mu.Lock()
		ch, err := c.changed, c.err
		c.mu.Unlock()
		if _, ok := c.config(); ok {
			return nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("%w (the xDS stream: %v)", ctx.Err(), err)
			}
			return ctx.Err()
		case <-ch:
		}
	}
}

// xdsProxies are the simulated proxies, each connected to istiod on first use and kept
// until the simulator stops.
type xdsProxies struct {
	ctx  context.Context
	addr string
	log  logr.Logger

	mu      sync.Mutex
	clients map[string]*adsClient
	used    map[string]bool // proxies asked for since the last sweep
}

func newXDSProxies(ctx context.Context, addr string, log logr.Logger) *xdsProxies {
	return &xdsProxies{ctx: ctx, addr: addr, log: log, clients: map[string]*adsClient{}, used: map[string]bool{}}
}

// sweep disconnects the proxies nobody asked for since the last sweep: a stream that is
// gone (a deleted VirtualService, a test's namespace) leaves no proxy that istiod keeps
// pushing to.
func (x *xdsProxies) sweep() {
	x.mu.Lock()
	defer x.mu.Unlock()
	for id, c := range x.clients {
		if !x.used[id] {
			c.close()
			delete(x.clients, id)
		}
	}
	x.used = map[string]bool{}
}

// config implements proxies: nil until istiod has answered the proxy's subscriptions,
// and while a route configuration asked for has not been answered yet.
func (x *xdsProxies) config(n node, routes []string) *envoyConfig {
	x.mu.Lock()
	c, ok := x.clients[n.ID()]
	if !ok {
		var err error
		if c, err = dialADS(x.ctx, x.addr, n, x.log); err != nil {
			x.mu.Unlock()
			x.log.Error(err, "Cannot connect a proxy to istiod", "proxy", n.ID())
			return nil
		}
		x.clients[n.ID()] = c
	}
	x.used[n.ID()] = true
	x.mu.Unlock()
	c.want(routes)
	return c.configFor(routes)
}

// waitSynced waits until every proxy is synced (see adsClient.config), at most d.
func (x *xdsProxies) waitSynced(ctx context.Context, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	x.mu.Lock()
	clients := make([]*adsClient, 0, len(x.clients))
	for _, c := range x.clients {
		clients = append(clients, c)
	}
	x.mu.Unlock()
	var errs []error
	for _, c := range clients {
		if err := c.waitSynced(ctx); err != nil {
			errs = append(errs, fmt.Errorf("proxy %s: %w", c.node.ID(), err))
		}
	}
	return errors.Join(errs...)
}
