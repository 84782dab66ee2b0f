package meshsim

import (
	"context"
	"fmt"
	"slices"

	"github.com/go-logr/logr"
	"google.golang.org/protobuf/proto"
)

// ConfigSize is how much configuration istiod sends one sidecar: what every proxy of the
// mesh holds in memory and receives again on each full push.
type ConfigSize struct {
	Listeners, Clusters, RouteConfigs, VirtualHosts, Routes, Endpoints int
	// Bytes is the size of all of it, serialized as istiod sends it (protobuf).
	Bytes int
	// BytesByType splits Bytes: listeners, clusters, routes, endpoints.
	ListenerBytes, ClusterBytes, RouteBytes, EndpointBytes int
}

func (s ConfigSize) String() string {
	return fmt.Sprintf("%d listeners, %d clusters, %d route configurations (%d virtual hosts, %d routes), %d endpoints, %d bytes",
		s.Listeners, s.Clusters, s.RouteConfigs, s.VirtualHosts, s.Routes, s.Endpoints, s.Bytes)
}

// SidecarConfigSize connects to istiod at xdsAddress as the sidecar of a pod (that does not
// exist) in namespace, takes every listener, cluster and endpoint istiod sends it and every
// route configuration its listeners name, as Envoy would, and measures them.
func SidecarConfigSize(ctx context.Context, xdsAddress, namespace string) (ConfigSize, error) {
	n := node{Type: "sidecar", Namespace: namespace, Name: "meshsim-size-probe", IP: "192.0.2.250",
		Labels: map[string]string{"app": "meshsim-size-probe"}}
	c, err := dialADS(ctx, xdsAddress, n, logr.Discard())
	if err != nil {
		return ConfigSize{}, err
	}
	defer c.close()
	if err := c.waitSynced(ctx); err != nil {
		return ConfigSize{}, fmt.Errorf("meshsim: waiting for istiod's configuration: %w", err)
	}
	cfg, _ := c.config()
	var routes []string
	for _, names := range cfg.httpRouteNames() {
		for _, name := range names {
			if !slices.Contains(routes, name) {
				routes = append(routes, name)
			}
		}
	}
	c.want(routes)
	if err := c.waitSynced(ctx); err != nil {
		return ConfigSize{}, fmt.Errorf("meshsim: waiting for istiod's routes: %w", err)
	}
	cfg, _ = c.config()
	var s ConfigSize
	s.Listeners, s.Clusters, s.RouteConfigs = len(cfg.Listeners), len(cfg.Clusters), len(cfg.Routes)
	for _, l := range cfg.Listeners {
		s.ListenerBytes += proto.Size(l)
	}
	for _, cl := range cfg.Clusters {
		s.ClusterBytes += proto.Size(cl)
	}
	for _, rc := range cfg.Routes {
		s.RouteBytes += proto.Size(rc)
		s.VirtualHosts += len(rc.GetVirtualHosts())
		for _, vh := range rc.GetVirtualHosts() {
			s.Routes += len(vh.GetRoutes())
		}
	}
	for _, e := range cfg.Endpoints {
		s.EndpointBytes += proto.Size(e)
		for _, le := range e.GetEndpoints() {
			s.Endpoints += len(le.GetLbEndpoints())
		}
	}
	s.Bytes = s.ListenerBytes + s.ClusterBytes + s.RouteBytes + s.EndpointBytes
	return s, nil
}
