package controllers

import (
	"strconv"
	"sync"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

// staleRetry is how soon a reconcile that met a stale cache tries again.
const staleRetry = 200 * time.Millisecond

// resourceVersions remembers the resourceVersion each object had after this process last
// wrote it. The manager's cache catches up with a write a little later; a reconcile started
// in between (our own child writes trigger one at once) would decide from the old status and
// could take a step twice. Resource versions are etcd revisions here: comparing them is how
// the apiserver itself orders them; when one does not parse, nothing is assumed stale.
type resourceVersions struct{ m sync.Map }

func (v *resourceVersions) wrote(o client.Object) {
	if rv, err := strconv.ParseUint(o.GetResourceVersion(), 10, 64); err == nil {
		v.m.Store(o.GetUID(), rv)
	}
}

func (v *resourceVersions) stale(o client.Object) bool {
	last, ok := v.m.Load(o.GetUID())
	if !ok {
		return false
	}
	rv, err := strconv.ParseUint(o.GetResourceVersion(), 10, 64)
	if err != nil {
		return false
	}
	if rv >= last.(uint64) {
		v.m.Delete(o.GetUID()) // caught up
		return false
	}
	return true
}
