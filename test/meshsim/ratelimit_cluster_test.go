package meshsim

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/test/testenv"
)

// TestIstiodLocalRateLimit: the EnvoyFilter canopy renders for a MeshPolicy's rate limit,
// translated by a real istiod into the inbound listener of the Service's pod, limits the
// requests as Envoy would: a burst gets the bucket's tokens through and 429 for the rest,
// service-wide and, on a path with a limit of its own, by that one. istioctl analyze finds
// nothing in the namespace (testenv runs it at the end).
func TestIstiodLocalRateLimit(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	ctx := t.Context()
	createReviews(t, ns, 100, 0)
	svc := &corev1.Service{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "reviews-primary"}, svc); err != nil {
		t.Fatal(err)
	}
	p := &meshv1.MeshPolicy{}
	p.Name, p.Namespace = "reviews-primary", ns
	p.Spec.TargetRef.Name = "reviews-primary"
	p.Spec.RateLimit = &meshv1.RateLimit{Requests: 10, Interval: "1h", Paths: []meshv1.PathRateLimit{{Prefix: "/search", Requests: 3}}}
	set, err := render.MeshPolicyObjects(p, svc, render.MeshPolicyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ef := range set.EnvoyFilters {
		if err := env.Client.Create(ctx, ef); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		path   string
		tokens int64
	}{{"/", 10}, {"/search?q=shoes", 3}} {
		t.Run(tc.path, func(t *testing.T) {
			// A simulator of its own: buckets start full.
			sim := startSim(t, Options{TickInterval: -1, Namespaces: []string{ns}, InboundSidecars: true, Path: tc.path})
			testenv.Eventually(t, time.Minute, func() error {
				if err := sim.Tick(ctx, 0); err != nil {
					return err
				}
				return sim.inboundRateLimit(ns, "reviews-primary-", 9080)
			})
			if err := sim.Tick(ctx, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			s := sim.Stats()
			ok := s.Requests(func(k RouteKey) bool { return k.Code == 200 && k.Workload == "reviews-primary" })
			limited := s.Requests(func(k RouteKey) bool { return k.Code == 429 && k.Workload == "reviews-primary" })
			if ok != tc.tokens || limited != 500-tc.tokens {
				t.Errorf("of 500 requests to %s, %d answered 200 and %d 429, want %d and %d\n%+v", tc.path, ok, limited, tc.tokens, 500-tc.tokens, s.Routes)
			}
		})
	}
}

// inboundRateLimit accepts what istiod sent the sidecar of the Pod named with prefix in
// ns once its inbound HTTP chain for port carries the local rate limit filter.
func (s *Sim) inboundRateLimit(ns, prefix string, port uint32) error {
	s.xds.mu.Lock()
	defer s.xds.mu.Unlock()
	for _, c := range s.xds.clients {
		if c.node.Namespace != ns || !strings.HasPrefix(c.node.Name, prefix) {
			continue
		}
		cfg, _ := c.config()
		if cfg == nil {
			return fmt.Errorf("the sidecar of %s has no configuration yet", c.node.Name)
		}
		hcm := inboundHCM(cfg, port)
		if hcm == nil {
			return fmt.Errorf("the sidecar of %s has no inbound HTTP chain for port %d", c.node.Name, port)
		}
		if rl, _ := localRateLimit(hcm, request{Authority: "reviews", Path: "/"}); rl == nil {
			return fmt.Errorf("the inbound chain of %s has no local rate limit yet", c.node.Name)
		}
		return nil
	}
	return fmt.Errorf("no sidecar for a Pod %s* in %s yet", prefix, ns)
}
