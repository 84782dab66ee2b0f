package render

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	pods "canopy.dev/canopy/internal/workload"
)

// AnnotationCopiedFrom names, on a primary's copy of a ConfigMap or Secret, the object it
// was copied from.
const AnnotationCopiedFrom = "mesh.canopy.dev/copied-from"

// ConfigCopyName is the name of the primary's copy of the ConfigMap or Secret name.
func ConfigCopyName(name string) string { return PrimaryName(name) }

// useConfigCopies points every reference of spec to a config the primary reads a copy of
// (workload.Config.Copied) at the copy. Other references (shared configs, missing optional
// ones) are left as they are: the primary reads those objects themselves.
func useConfigCopies(spec *corev1.PodSpec, configs []pods.Config) {
	copied := map[pods.ConfigRef]bool{}
	for _, c := range configs {
		if c.Copied() {
			copied[pods.ConfigRef{Kind: c.Kind, Name: c.Name}] = true
		}
	}
	pods.EachConfigRef(spec, func(ref pods.ConfigRef, name *string) {
		if copied[pods.ConfigRef{Kind: ref.Kind, Name: ref.Name}] {
			*name = ConfigCopyName(*name)
		}
	})
}

// ConfigMapCopy renders the primary's copy of src, a ConfigMap its template reads, with all
// of src's data. The copy is generated (canopy's labels, none of src's, so that a GitOps
// tool tracking src by label or annotation does not take the copy for its own) and never
// immutable, even when src is: it is updated in place on each promotion.
func ConfigMapCopy(c *meshv1.Canary, src *corev1.ConfigMap) (*corev1.ConfigMap, error) {
	if pods.FromCache(src) {
		// The cache keeps a digest instead of the data: a copy of it would be empty.
		return nil, fmt.Errorf("render the copy of ConfigMap %s: it was read without its data (from canopy's cache)", src.Name)
	}
	meta, err := copyMeta(c, "ConfigMap", src.Name)
	if err != nil {
		return nil, err
	}
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: meta,
		Data:       copyMap(src.Data),
		BinaryData: copyBytes(src.BinaryData),
	}, nil
}

// SecretCopy renders the primary's copy of src, a Secret its template reads, as ConfigMapCopy
// does; the copy keeps src's type. A Secret the cluster issues (workload.Config.Shared) is
// never given to it.
func SecretCopy(c *meshv1.Canary, src *corev1.Secret) (*corev1.Secret, error) {
	switch src.Type {
	case corev1.SecretTypeServiceAccountToken, corev1.SecretTypeBootstrapToken:
		return nil, fmt.Errorf("render the copy of Secret %s: a %s Secret is never copied", src.Name, src.Type)
	}
	meta, err := copyMeta(c, "Secret", src.Name)
	if err != nil {
		return nil, err
	}
	typ := src.Type
	if typ == "" {
		typ = corev1.SecretTypeOpaque
	}
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: meta,
		Type:       typ,
		Data:       copyBytes(src.Data),
	}, nil
}

func copyMeta(c *meshv1.Canary, kind, source string) (metav1.ObjectMeta, error) {
	name := ConfigCopyName(source)
	if len(name) > maxObjectName {
		return metav1.ObjectMeta{}, &FieldError{
			Object: kind + "/" + source, Field: "metadata.name", Reason: meshv1.ReasonInvalidSpec,
			Message: fmt.Sprintf("the primary's copy would be named %q, longer than %d characters: shorten the name, or annotate it %s=false to share it", name, maxObjectName, pods.AnnotationConfigCopy),
		}
	}
	return metav1.ObjectMeta{
		Name:        name,
		Namespace:   c.Namespace,
		Labels:      OwnerLabels(KindCanary, c.Namespace, c.Name),
		Annotations: map[string]string{AnnotationCopiedFrom: source},
	}, nil
}

func copyBytes(m map[string][]byte) map[string][]byte {
	if m == nil {
		return nil
	}
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		out[k] = append([]byte(nil), v...)
	}
	return out
}
