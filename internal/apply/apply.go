// Package apply writes generated objects with server-side apply and removes them again.
// Everything canopy generates goes through Applier, with one field owner, so that exactly
// one manager owns each generated field and a user's other fields are left alone.
package apply

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// FieldOwner is the server-side apply field manager of everything canopy generates.
const FieldOwner = "canopy"

// AnnotationAppliedHash records a digest of the last applied configuration. A change of our
// desired state (including a field we stop sending, such as an Istio weight that became 0 and
// is omitted) changes the digest, so the apply is not skipped.
const AnnotationAppliedHash = "mesh.canopy.dev/applied-hash"

// Applier applies desired objects, skipping requests that would change nothing.
type Applier struct {
	// Client writes; Reader reads the live object (the manager's cache), to skip no-op applies.
	Client client.Client
	Reader client.Reader
	// Tracker is the memory of canopy's writes this applier records its applies in and reads
	// (see Writes); nil: one of its own, on the real clock, made on first use.
	Tracker *Writes

	once sync.Once
}

// Writes returns the memory of canopy's own writes the applier records in.
func (a *Applier) Writes() *Writes {
	a.once.Do(func() {
		if a.Tracker == nil {
			a.Tracker = NewWrites(a.Client.Scheme(), nil)
		}
	})
	return a.Tracker
}

// Apply server-side applies obj (with ForceOwnership) unless the live object already carries
// exactly this desired state. It reports whether a request was sent.
func (a *Applier) Apply(ctx context.Context, obj client.Object) (bool, error) {
	gvk, err := apiutil.GVKForObject(obj, a.Client.Scheme())
	if err != nil {
		return false, err
	}
	desired, err := toMap(obj)
	if err != nil {
		return false, fmt.Errorf("encoding %s %s: %w", gvk.Kind, obj.GetName(), err)
	}
	desired["apiVersion"], desired["kind"] = gvk.GroupVersion().String(), gvk.Kind
	meta, _ := desired["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		desired["metadata"] = meta
	}
	delete(meta, "creationTimestamp")
	delete(meta, "resourceVersion")
	delete(meta, "managedFields")
	delete(desired, "status")
	hash := digest(desired)
	annotations, _ := meta["annotations"].(map[string]any)
	if annotations == nil {
		annotations = map[string]any{}
	}
	annotations[AnnotationAppliedHash] = hash
	meta["annotations"] = annotations

	live, err := a.Client.Scheme().New(gvk)
	if err != nil {
		return false, err
	}
	liveObj := live.(client.Object)
	writes := a.Writes()
	key := writeKey{gvk.GroupKind(), client.ObjectKeyFromObject(obj)}
	switch err := a.Reader.Get(ctx, key.key, liveObj); {
	case err == nil:
		switch writes.holds(liveObj, hash) {
		case holdsDesired:
			return false, nil
		case holdsOther: // the stale copy cannot tell: apply
		case unknown:
			// Typed clients drop apiVersion and kind on read; desired has them.
			liveObj.GetObjectKind().SetGroupVersionKind(gvk)
			if liveObj.GetAnnotations()[AnnotationAppliedHash] == hash {
				liveMap, err := toMap(liveObj)
				if err == nil && Contains(liveMap, desired) {
					writes.remember(key, liveObj.GetUID(), liveObj.GetResourceVersion(), hash)
					return false, nil
				}
			}
		}
	case apierrors.IsNotFound(err):
	default:
		return false, fmt.Errorf("reading %s %s: %w", gvk.Kind, obj.GetName(), err)
	}

	u := &unstructured.Unstructured{Object: desired}
	if err := a.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return false, fmt.Errorf("applying %s %s/%s: %w", gvk.Kind, obj.GetNamespace(), obj.GetName(), err)
	}
	writes.remember(key, u.GetUID(), u.GetResourceVersion(), hash)
	return true, nil
}

// liveState is what the applier knows of the live object beyond the cache's copy.
type liveState int

const (
	unknown      liveState = iota // the cache's copy is as new as anything this applier wrote
	holdsDesired                  // it holds the desired state: this applier wrote or checked it
	holdsOther                    // this applier wrote another state since the cache's copy
)

// holds compares the cache's copy of an object with the version canopy last wrote or checked.
// When the copy is that version or an older one (the cache has not caught up with the write
// yet), what the object holds is what was written: the desired state again (no request is
// needed), or another one (the desired state must be applied, whatever the stale copy says). A
// newer copy is someone else's write, compared in full.
func (w *Writes) holds(live client.Object, hash string) liveState {
	k, ok := w.recent(live)
	if !ok || k.hash == "" {
		return unknown
	}
	switch c, ok := compare(live.GetResourceVersion(), k.rv); {
	case !ok || c > 0:
		return unknown
	case k.hash == hash:
		return holdsDesired
	default:
		return holdsOther
	}
}

func toMap(obj runtime.Object) (map[string]any, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	m := map[string]any{}
	return m, json.Unmarshal(b, &m)
}

func digest(m map[string]any) string {
	b, _ := json.Marshal(m) // map keys are sorted by encoding/json: the digest is stable
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Contains reports whether every field of want is in have with the same value. Maps may have
// more keys in have (defaults, other managers' fields); lists must match element by element.
// It is how the applier decides an apply would change nothing.
func Contains(have, want any) bool {
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			return false
		}
		for k, wv := range w {
			hv, ok := h[k]
			if !ok || !Contains(hv, wv) {
				return false
			}
		}
		return true
	case []any:
		h, ok := have.([]any)
		if !ok || len(h) != len(w) {
			return false
		}
		for i := range w {
			if !Contains(h[i], w[i]) {
				return false
			}
		}
		return true
	default:
		return reflect.DeepEqual(have, want)
	}
}
