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
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
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

	// known remembers, object by object, the version this process last wrote, or found to
	// hold the desired state, for knownFor (see holds and Own).
	known  sync.Map // objectKey -> knownVersion
	stored atomic.Uint64
}

// knownFor is how long a known version is remembered. Both of its uses (a cache that has not
// caught up with a write yet, the watch event of a write) come within seconds of the write.
const knownFor = 10 * time.Minute

type objectKey struct {
	gvk schema.GroupVersionKind
	key client.ObjectKey
}

type knownVersion struct {
	rv uint64
	// hash is the digest of the desired state the version holds; empty for a write that was
	// not an apply (a scale).
	hash string
	at   time.Time
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
	key := objectKey{gvk, client.ObjectKeyFromObject(obj)}
	switch err := a.Reader.Get(ctx, key.key, liveObj); {
	case err == nil:
		switch a.behind(key, liveObj, hash) {
		case holdsDesired:
			return false, nil
		case holdsOther: // the stale copy cannot tell: apply
		case unknown:
			// Typed clients drop apiVersion and kind on read; desired has them.
			liveObj.GetObjectKind().SetGroupVersionKind(gvk)
			if liveObj.GetAnnotations()[AnnotationAppliedHash] == hash {
				liveMap, err := toMap(liveObj)
				if err == nil && Contains(liveMap, desired) {
					a.remember(key, liveObj.GetResourceVersion(), hash)
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
	a.remember(key, u.GetResourceVersion(), hash)
	return true, nil
}

// liveState is what the applier knows of the live object beyond the cache's copy.
type liveState int

const (
	unknown      liveState = iota // the cache's copy is as new as anything this applier wrote
	holdsDesired                  // it holds the desired state: this applier wrote or checked it
	holdsOther                    // this applier wrote another state since the cache's copy
)

// behind compares the cache's copy of an object with the version this applier last wrote or
// checked. When the copy is that version or an older one (the cache has not caught up with
// the write yet), what the object holds is what was written: the desired state again (no
// request is needed), or another one (the desired state must be applied, whatever the stale
// copy says). A newer copy is someone else's write, compared in full.
func (a *Applier) behind(key objectKey, live client.Object, hash string) liveState {
	k, ok := a.knownVersion(key)
	if !ok || k.hash == "" {
		return unknown
	}
	rv, err := strconv.ParseUint(live.GetResourceVersion(), 10, 64)
	switch {
	case err != nil || rv > k.rv:
		return unknown
	case k.hash == hash:
		return holdsDesired
	default:
		return holdsOther
	}
}

// Wrote records a write of obj that was not an apply (a scale), at obj's resourceVersion,
// so that its watch event is known as this process's own (Own).
func (a *Applier) Wrote(obj client.Object) {
	gvk, err := apiutil.GVKForObject(obj, a.Client.Scheme())
	if err != nil {
		return
	}
	a.remember(objectKey{gvk, client.ObjectKeyFromObject(obj)}, obj.GetResourceVersion(), "")
}

// Own says whether obj, as a watch event brings it, is the version this applier wrote (or
// found to hold what it would have written): an event a reconcile need not follow, since the
// one that wrote it already acted on it. Another writer's change is a newer version.
func (a *Applier) Own(obj client.Object) bool {
	gvk, err := apiutil.GVKForObject(obj, a.Client.Scheme())
	if err != nil {
		return false
	}
	k, ok := a.knownVersion(objectKey{gvk, client.ObjectKeyFromObject(obj)})
	return ok && strconv.FormatUint(k.rv, 10) == obj.GetResourceVersion()
}

func (a *Applier) knownVersion(key objectKey) (knownVersion, bool) {
	v, ok := a.known.Load(key)
	if !ok {
		return knownVersion{}, false
	}
	k := v.(knownVersion)
	return k, time.Since(k.at) < knownFor
}

// remember records the version rv of key, unless a newer one is known; every 1024 records,
// the versions older than knownFor are dropped, so that the objects deleted since are
// forgotten.
func (a *Applier) remember(key objectKey, resourceVersion, hash string) {
	rv, err := strconv.ParseUint(resourceVersion, 10, 64)
	if err != nil {
		return
	}
	if k, ok := a.knownVersion(key); ok && k.rv > rv {
		return
	}
	now := time.Now()
	a.known.Store(key, knownVersion{rv: rv, hash: hash, at: now})
	if a.stored.Add(1)%1024 != 0 {
		return
	}
	a.known.Range(func(k, v any) bool {
		if now.Sub(v.(knownVersion).at) >= knownFor {
			a.known.CompareAndDelete(k, v)
		}
		return true
	})
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
