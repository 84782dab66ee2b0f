//go:build linux

package bench

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// The watch probe measures how late the apiserver delivers a Canary's change to its watchers,
// canopy's cache among them: the apiserver decodes a resource's watch events from etcd one at
// a time, and under load its Canaries reach every watcher (canopy, `kubectl get -w`, the
// benchmark's informer) seconds after they were written. The probe is a Canary of its own
// (its target does not exist), whose label probeSeq the benchmark writes every probeEvery: a
// change of labels wakes no reconcile, so canopy leaves the probe alone after its first, and
// the probe's writes are told apart from canopy's status writes in the apiserver's metrics.
const (
	probeLabel = "bench.canopy.dev/probe"
	probeSeq   = "bench.canopy.dev/probe-seq"
	probeEvery = 500 * time.Millisecond
)

type watchProbe struct {
	c      client.Client
	canary *meshv1.Canary

	mu      sync.Mutex
	written map[string]time.Time // sequence number -> when its write returned (zero until then)
	lags    []probeLag
}

// probeLag is one write seen by the informer: at is when.
type probeLag struct {
	at  time.Time
	lag time.Duration
}

// startWatchProbe creates the probe Canary in namespace ns and watches it.
func startWatchProbe(ctx context.Context, cfg *rest.Config, c client.Client, ns string) (*watchProbe, error) {
	p := &watchProbe{c: c, written: map[string]time.Time{}}
	p.canary = &meshv1.Canary{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "watch-probe", Labels: map[string]string{probeLabel: "yes"}},
		Spec: meshv1.CanarySpec{
			TargetRef: meshv1.TargetRef{APIVersion: "apps/v1", Kind: "Deployment", Name: "watch-probe-absent"},
			Service:   meshv1.CanaryService{Port: 9080},
			Analysis:  meshv1.CanaryAnalysis{Interval: "1m", Threshold: 1, StepWeight: ptr.To[int32](10), MaxWeight: 50},
		},
	}
	if err := c.Create(ctx, p.canary); err != nil {
		return nil, fmt.Errorf("creating the watch probe: %w", err)
	}
	seen := func(obj any) {
		if c, ok := obj.(*meshv1.Canary); ok {
			p.seen(c)
		}
	}
	if err := watchLabelled(ctx, cfg, &meshv1.Canary{}, probeLabel+"=yes", "watch probe", toolscache.ResourceEventHandlerFuncs{AddFunc: seen, UpdateFunc: func(_, obj any) { seen(obj) }}); err != nil {
		return nil, err
	}
	go p.run(ctx)
	return p, nil
}

// run writes the probe's sequence label every probeEvery.
func (p *watchProbe) run(ctx context.Context) {
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for seq := 1; ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		v := strconv.Itoa(seq)
		patch := fmt.Appendf(nil, `{"metadata":{"labels":{%q:%q}}}`, probeSeq, v)
		p.mu.Lock()
		p.written[v] = time.Time{} // sent; the informer may see it before the write returns
		p.mu.Unlock()
		err := p.c.Patch(ctx, p.canary.DeepCopy(), client.RawPatch(types.MergePatchType, patch))
		p.mu.Lock()
		if _, unseen := p.written[v]; unseen && err == nil {
			p.written[v] = time.Now()
		} else {
			delete(p.written, v)
		}
		p.mu.Unlock()
	}
}

// seen records how long after its write returned the informer saw the probe's label, and the
// label's earlier values with it (a watch that reopens skips versions). A write the informer
// sees before the write returned counts as no lag.
func (p *watchProbe) seen(c *meshv1.Canary) {
	now := time.Now()
	seq, err := strconv.Atoi(c.Labels[probeSeq])
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for v, at := range p.written {
		if n, err := strconv.Atoi(v); err != nil || n > seq {
			continue
		}
		lag := time.Duration(0)
		if !at.IsZero() {
			lag = max(now.Sub(at), 0)
		}
		p.lags = append(p.lags, probeLag{at: now, lag: lag})
		delete(p.written, v)
	}
}

// lagsBetween are the lags seen between t0 and t1, sorted; writes still unseen at t1 count
// with their lag so far (a watch that falls far behind must show).
func (p *watchProbe) lagsBetween(t0, t1 time.Time) []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []time.Duration
	for _, l := range p.lags {
		if !l.at.Before(t0) && !l.at.After(t1) {
			out = append(out, l.lag)
		}
	}
	for _, at := range p.written {
		if !at.IsZero() && !at.Before(t0) && at.Before(t1) {
			out = append(out, t1.Sub(at))
		}
	}
	slices.Sort(out)
	return out
}
