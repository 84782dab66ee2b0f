package workload

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The kinds of config a pod spec reads, as they appear in a tracked entry ("configmap/NAME=DIGEST").
const (
	KindConfigMap = "configmap"
	KindSecret    = "secret"
)

// Annotations that opt a ConfigMap or Secret out of copying: the primary and the canary then
// share it, as they did before canopy made copies, and a change of it is not a new revision.
// canopy's own is AnnotationConfigCopy: "false"; Flagger's "flagger.app/config-tracking:
// disabled" is honoured too, so that configs annotated for Flagger keep their meaning.
const (
	AnnotationConfigCopy      = "mesh.canopy.dev/config-copy"
	annotationFlaggerTracking = "flagger.app/config-tracking"
)

// ConfigRef is a ConfigMap or Secret a pod spec reads.
type ConfigRef struct {
	Kind string // KindConfigMap or KindSecret
	Name string
	// Optional: every reference to it is marked optional, so that a pod starts without it.
	Optional bool
}

func (r ConfigRef) String() string {
	if r.Kind == KindSecret {
		return "Secret " + r.Name
	}
	return "ConfigMap " + r.Name
}

// EachConfigRef calls fn for every reference of spec to a ConfigMap or Secret: environment
// variables, envFrom, volumes and projected volume sources, of init containers and
// containers. name points into spec, so that a caller may rewrite the reference. Image pull
// Secrets and the Secrets of CSI or other volume plugins are credentials of the kubelet,
// not the application's configuration, and are not references here.
func EachConfigRef(spec *corev1.PodSpec, fn func(ref ConfigRef, name *string)) {
	visit := func(kind string, name *string, optional *bool) {
		fn(ConfigRef{Kind: kind, Name: *name, Optional: optional != nil && *optional}, name)
	}
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range cs {
			c := &cs[i]
			for j := range c.EnvFrom {
				if r := c.EnvFrom[j].ConfigMapRef; r != nil {
					visit(KindConfigMap, &r.Name, r.Optional)
				}
				if r := c.EnvFrom[j].SecretRef; r != nil {
					visit(KindSecret, &r.Name, r.Optional)
				}
			}
			for j := range c.Env {
				from := c.Env[j].ValueFrom
				if from == nil {
					continue
				}
				if r := from.ConfigMapKeyRef; r != nil {
					visit(KindConfigMap, &r.Name, r.Optional)
				}
				if r := from.SecretKeyRef; r != nil {
					visit(KindSecret, &r.Name, r.Optional)
				}
			}
		}
	}
	for i := range spec.Volumes {
		v := &spec.Volumes[i]
		if r := v.ConfigMap; r != nil {
			visit(KindConfigMap, &r.Name, r.Optional)
		}
		if r := v.Secret; r != nil {
			visit(KindSecret, &r.SecretName, r.Optional)
		}
		if v.Projected == nil {
			continue
		}
		for j := range v.Projected.Sources {
			src := &v.Projected.Sources[j]
			if r := src.ConfigMap; r != nil {
				visit(KindConfigMap, &r.Name, r.Optional)
			}
			if r := src.Secret; r != nil {
				visit(KindSecret, &r.Name, r.Optional)
			}
		}
	}
}

// ConfigRefs lists the ConfigMaps and Secrets a pod spec reads, ConfigMaps first, each sorted
// by name and listed once; one is optional when every reference to it is.
func ConfigRefs(spec *corev1.PodSpec) []ConfigRef {
	type key struct{ kind, name string }
	optional := map[key]bool{}
	EachConfigRef(spec, func(ref ConfigRef, _ *string) {
		k := key{ref.Kind, ref.Name}
		if prev, seen := optional[k]; seen {
			optional[k] = prev && ref.Optional
			return
		}
		optional[k] = ref.Optional
	})
	out := make([]ConfigRef, 0, len(optional))
	for k, opt := range optional {
		out = append(out, ConfigRef{Kind: k.kind, Name: k.name, Optional: opt})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// ConfigMapRefs lists the names of the ConfigMaps a pod spec reads, sorted, without repeats.
func ConfigMapRefs(spec *corev1.PodSpec) []string {
	var names []string
	for _, r := range ConfigRefs(spec) {
		if r.Kind == KindConfigMap {
			names = append(names, r.Name)
		}
	}
	return names
}

// Config is a ConfigMap or Secret a pod spec reads, as found in the cluster.
type Config struct {
	ConfigRef
	// Found: it exists. A missing one is in no revision and is not copied.
	Found bool
	// Digest is a digest of its data (and a Secret's type).
	Digest string
	// Shared, when set, says why the primary reads the object itself rather than a copy:
	// it is opted out, or it is a credential the cluster issues. It is then not part of the
	// revision either.
	Shared string
}

// Copied says whether the primary reads a copy of the config: it exists and is not shared.
func (c Config) Copied() bool { return c.Found && c.Shared == "" }

// Entry is the config's part of a revision (see render.Revision): "kind/name=digest".
func (c Config) Entry() string { return c.Kind + "/" + c.Name + "=" + c.Digest }

// ReadConfigs reads the ConfigMaps and Secrets spec reads, in ConfigRefs' order. r may be
// canopy's cache for ConfigMaps (CacheConfigMap keeps their digest); Secrets must come from
// an uncached reader, one Get by name each, since canopy holds no Secret informer.
func ReadConfigs(ctx context.Context, r client.Reader, namespace string, spec *corev1.PodSpec) ([]Config, error) {
	refs := ConfigRefs(spec)
	out := make([]Config, 0, len(refs))
	for _, ref := range refs {
		key := types.NamespacedName{Namespace: namespace, Name: ref.Name}
		cfg := Config{ConfigRef: ref}
		var err error
		switch ref.Kind {
		case KindSecret:
			s := &corev1.Secret{}
			if err = r.Get(ctx, key, s); err == nil {
				cfg.Found, cfg.Digest, cfg.Shared = true, SecretDigest(s), secretShared(s)
			}
		default:
			cm := &corev1.ConfigMap{}
			if err = r.Get(ctx, key, cm); err == nil {
				cfg.Found, cfg.Digest, cfg.Shared = true, configDigest(cm), optedOut(cm.Annotations)
			}
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("reading %s: %w", ref, err)
		}
		out = append(out, cfg)
	}
	return out, nil
}

// Tracked returns the revision entries of the configs the primary reads copies of.
func Tracked(configs []Config) []string {
	var out []string
	for _, c := range configs {
		if c.Copied() {
			out = append(out, c.Entry())
		}
	}
	return out
}

// TrackedConfigs returns one "configmap/NAME=DIGEST" or "secret/NAME=DIGEST" entry per
// config the pod spec reads and the primary reads a copy of, for render.Revision: a change
// of its data is a new revision. Missing (optional) configs and shared ones are left out.
func TrackedConfigs(ctx context.Context, r client.Reader, namespace string, spec *corev1.PodSpec) ([]string, error) {
	configs, err := ReadConfigs(ctx, r, namespace, spec)
	if err != nil {
		return nil, err
	}
	return Tracked(configs), nil
}

// optedOut says why a config annotated out of copying is shared, or "" when it is not.
func optedOut(annotations map[string]string) string {
	if strings.EqualFold(annotations[AnnotationConfigCopy], "false") {
		return "annotated " + AnnotationConfigCopy + "=false"
	}
	if strings.EqualFold(annotations[annotationFlaggerTracking], "disabled") {
		return "annotated " + annotationFlaggerTracking + "=disabled"
	}
	return ""
}

// secretShared says why a Secret is never copied, or "" when it may be. Service account
// tokens and bootstrap tokens are credentials the cluster issues and revokes: a copy would
// be a second credential canopy made, outliving the revocation of neither (docs/security.md).
func secretShared(s *corev1.Secret) string {
	switch s.Type {
	case corev1.SecretTypeServiceAccountToken, corev1.SecretTypeBootstrapToken:
		return "a " + string(s.Type) + " Secret, a credential the cluster issues, is never copied"
	}
	return optedOut(s.Annotations)
}

// annotationDataDigest carries, on a ConfigMap in canopy's cache, the digest of the data the
// cache dropped (CacheConfigMap).
const annotationDataDigest = "mesh.canopy.dev/cached-data-digest"

// CacheConfigMap is the cache's transform of ConfigMaps: a revision needs only the digest
// of a ConfigMap's data, so the cache keeps the digest and drops the data. With a cluster-wide
// ConfigMap informer (the target's ConfigMaps start rollouts), the data of every ConfigMap in
// the cluster (dashboards, Helm 2 releases, CA bundles) would otherwise be held in memory.
// Other objects pass unchanged.
func CacheConfigMap(obj any) (any, error) {
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok || FromCache(cm) {
		// Transformed already: an informer may give the transform an object from its own
		// store again (a resync), whose digest must not become the empty data's.
		return obj, nil
	}
	digest := dataDigest(cm.Data, cm.BinaryData)
	cm.Data, cm.BinaryData = nil, nil
	if cm.Annotations == nil {
		cm.Annotations = map[string]string{}
	}
	cm.Annotations[annotationDataDigest] = digest
	return cm, nil
}

// FromCache says whether cm is the cache's copy, without its data: its data must be read
// from the API server to be copied.
func FromCache(cm *corev1.ConfigMap) bool {
	_, ok := cm.Annotations[annotationDataDigest]
	return ok && cm.Data == nil && cm.BinaryData == nil
}

// ConfigMapDigest is the digest of a ConfigMap's data, read from the cache's copy or computed
// from a full one.
func ConfigMapDigest(cm *corev1.ConfigMap) string { return configDigest(cm) }

func configDigest(cm *corev1.ConfigMap) string {
	if FromCache(cm) {
		return cm.Annotations[annotationDataDigest]
	}
	return dataDigest(cm.Data, cm.BinaryData)
}

// SecretDigest is a digest of a Secret's type and data, keyed with the Secret's UID. Only
// the digest enters a revision, which the Canary's status and the primary Deployment show to
// anyone who may read them, Secrets or not: unkeyed, it would let them test guesses of a weak
// password offline. The UID is known only to those who may read the Secret. A Secret deleted
// and created again with the same data has another digest: a new revision.
func SecretDigest(s *corev1.Secret) string {
	h := hmac.New(sha256.New, []byte(s.UID))
	_, _ = fmt.Fprintf(h, "type=%q\n", s.Type)
	writeData(h, nil, s.Data)
	return hex.EncodeToString(h.Sum(nil)[:8])
}

func dataDigest(data map[string]string, binary map[string][]byte) string {
	h := sha256.New()
	writeData(h, data, binary)
	return hex.EncodeToString(h.Sum(nil)[:8])
}

func writeData(w io.Writer, data map[string]string, binary map[string][]byte) {
	for _, k := range sortedKeys(data) {
		_, _ = fmt.Fprintf(w, "%q=%q\n", k, data[k])
	}
	for _, k := range sortedKeys(binary) {
		_, _ = fmt.Fprintf(w, "%q=%x\n", k, binary[k])
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
