package render

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utiljson "k8s.io/apimachinery/pkg/util/json"
)

// Object is what every rendered object is; it is the same method set as
// controller-runtime's client.Object, without importing the client here.
type Object interface {
	metav1.Object
	runtime.Object
}

type durationPB = durationpb.Duration

func isNil(m proto.Message) bool { return m == nil || !m.ProtoReflect().IsValid() }

func cloneMsg[T proto.Message](m T) T {
	if isNil(m) {
		return m
	}
	return proto.Clone(m).(T)
}

func cloneDuration(d *durationPB) *durationPB { return cloneMsg(d) }

// overrideMsg returns own when it is set, else pol; when both are set and differ it
// warns that own (a Canary field) overrides pol (a MeshPolicy field).
func overrideMsg[T proto.Message](e *errs, ownPath string, pe *errs, polPath string, own, pol T) T {
	if isNil(own) {
		return pol
	}
	if !isNil(pol) && !proto.Equal(own, pol) {
		e.warn(ownPath, "overrides %s", pe.describe(polPath))
	}
	return own
}

// Revision is a short, stable hash of a pod template and of the tracked inputs the pods
// depend on (for example "configmap/app-config=<hash of its data>"; their order does not
// matter). The revision annotation the renderer sets on the primary's template is left
// out, so a template and the primary rendered from it have the same revision.
func Revision(template *corev1.PodTemplateSpec, tracked ...string) string {
	t := template.DeepCopy()
	delete(t.Annotations, AnnotationRevision)
	if len(t.Annotations) == 0 {
		t.Annotations = nil
	}
	if len(t.Labels) == 0 {
		t.Labels = nil
	}
	t.CreationTimestamp = metav1.Time{}
	b, err := json.Marshal(t)
	if err != nil { // a PodTemplateSpec always marshals
		panic(fmt.Sprintf("render: marshal pod template: %v", err))
	}
	h := sha256.New()
	h.Write(b)
	extra := append([]string(nil), tracked...)
	sort.Strings(extra)
	for _, s := range extra {
		h.Write([]byte{0})
		h.Write([]byte(s))
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// Hash is a hash of the JSON an object is applied with. Rendering the same inputs gives
// the same hash, so a controller can skip an apply when the hash equals the one it last
// applied to the same object (same UID and resourceVersion, as Cluster API's SSA cache
// does): comparing with the live object instead fails, since the API server adds defaults.
func Hash(obj Object) (string, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return "", fmt.Errorf("hash %T %s: %w", obj, obj.GetName(), err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16]), nil
}

// ToUnstructured converts a rendered object to the unstructured form apply clients take
// (Istio's typed apply configurations do not implement runtime.ApplyConfiguration). It
// drops status and null values: an apply only sends fields it has an opinion on.
func ToUnstructured(obj Object) (*unstructured.Unstructured, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("convert %T %s: %w", obj, obj.GetName(), err)
	}
	// Whole numbers become int64, as the API server and unstructured objects expect.
	var m map[string]any
	if err := utiljson.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("convert %T %s: %w", obj, obj.GetName(), err)
	}
	delete(m, "status")
	dropNulls(m)
	return &unstructured.Unstructured{Object: m}, nil
}

func dropNulls(v any) {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			if x == nil {
				delete(t, k)
				continue
			}
			dropNulls(x)
		}
	case []any:
		for _, x := range t {
			dropNulls(x)
		}
	}
}
