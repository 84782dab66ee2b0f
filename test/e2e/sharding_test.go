package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/test/testenv"
)

// shardLabel divides the Canaries of this test between two shards.
const shardLabel = "canopy.dev/shard"

// Two canopy instances, each with its own shard selector and leader election Lease, run
// side by side on the local cluster: each carries only its own Canaries through a rollout
// and never writes the other's objects (the write requests each instance sends are
// recorded by its HTTP transport); a Canary relabelled into the other shard is handed
// over and rolls out there.
func TestShardsOnLocalCluster(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	shards := map[string]*writeLog{"a": {}, "b": {}}
	for _, name := range []string{"a", "b"} {
		startOperatorWith(t, shards[name].wrap(env.Config), manager.Options{
			Analyzer:         imageAnalyzer{env.Client},
			ShardSelector:    shardLabel + "=" + name,
			LeaderElect:      true,
			LeaderElectionID: "canopy-shard-" + name,
			LeaderElectionNS: ns,
		})
	}
	owner := map[string]string{"alpha": "a", "beta": "b"}
	for name, shard := range owner {
		if err := env.Client.Create(t.Context(), newDeployment(ns, name, "bookinfo/"+name+":v1", 1)); err != nil {
			t.Fatal(err)
		}
		c := newCanary(ns, name, 20, 40)
		c.Labels = map[string]string{shardLabel: shard}
		if err := env.Client.Create(t.Context(), c); err != nil {
			t.Fatal(err)
		}
	}
	for name := range owner {
		waitPhase(t, ns, name, meshv1.PhaseInitialized)
		setImage(t, ns, name, "bookinfo/"+name+":v2")
	}
	for name := range owner {
		waitPhase(t, ns, name, meshv1.PhaseSucceeded)
	}
	// Each shard wrote its own Canary's objects, and none of the other's.
	for name, shard := range owner {
		other := map[string]string{"a": "b", "b": "a"}[shard]
		if w := shards[shard].naming(ns, name); len(w) == 0 {
			t.Errorf("shard %s sent no write for Canary %s, which it owns", shard, name)
		}
		if w := shards[other].naming(ns, name); len(w) > 0 {
			t.Errorf("shard %s wrote objects of Canary %s, which shard %s owns: %v", other, name, shard, w)
		}
	}
	for _, l := range shards {
		l.reset()
	}

	// alpha moves to shard b. A Canary created in shard a afterwards is a barrier: once
	// shard a reconciled it, its Canary informer has seen the move too, and no later event
	// can bring alpha back to shard a.
	c := getCanary(t, ns, "alpha")
	patch := client.MergeFrom(c.DeepCopy())
	c.Labels[shardLabel] = "b"
	if err := env.Client.Patch(t.Context(), c, patch); err != nil {
		t.Fatal(err)
	}
	barrier := newCanary(ns, "barrier", 20, 40)
	barrier.Labels = map[string]string{shardLabel: "a"}
	if err := env.Client.Create(t.Context(), barrier); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, func() error {
		if b := getCanary(t, ns, "barrier"); len(b.Status.Conditions) == 0 {
			return fmt.Errorf("shard a has not reconciled Canary barrier yet")
		}
		return nil
	})
	promoted := getCanary(t, ns, "alpha").Status.LastPromotedRevision
	setImage(t, ns, "alpha", "bookinfo/alpha:v3")
	testenv.Eventually(t, 3*time.Minute, func() error {
		c := getCanary(t, ns, "alpha")
		if c.Status.Phase != meshv1.PhaseSucceeded || c.Status.LastPromotedRevision == promoted {
			return fmt.Errorf("alpha: phase %q, last promoted %q (was %q)", c.Status.Phase, c.Status.LastPromotedRevision, promoted)
		}
		return nil
	})
	if w := shards["b"].naming(ns, "alpha"); len(w) == 0 {
		t.Errorf("shard b sent no write for Canary alpha after it moved there")
	}
	if w := shards["a"].naming(ns, "alpha"); len(w) > 0 {
		t.Errorf("shard a still wrote objects of Canary alpha after it moved to shard b: %v", w)
	}
	if w := shards["a"].naming(ns, "beta"); len(w) > 0 {
		t.Errorf("shard a wrote objects of Canary beta: %v", w)
	}
}

// writeLog records the write requests (every method but GET) a client sends.
type writeLog struct {
	mu     sync.Mutex
	writes []string
}

func (l *writeLog) wrap(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			if req.Method != http.MethodGet {
				l.mu.Lock()
				l.writes = append(l.writes, req.Method+" "+req.URL.Path)
				l.mu.Unlock()
			}
			return rt.RoundTrip(req)
		})
	})
	return cfg
}

func (l *writeLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes = nil
}

// naming returns the writes to the objects of the Canary name in ns: the Canary itself and
// what it generates (name, name-primary, name-canary).
func (l *writeLog) naming(ns, name string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, w := range l.writes {
		_, tail, ok := strings.Cut(w, "/namespaces/"+ns+"/")
		if !ok {
			continue
		}
		parts := strings.Split(tail, "/") // resource, name[, subresource]
		if len(parts) < 2 || parts[0] == "events" || parts[0] == "leases" {
			continue
		}
		if slices.Contains([]string{name, name + "-primary", name + "-canary"}, parts[1]) {
			out = append(out, w)
		}
	}
	return out
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
