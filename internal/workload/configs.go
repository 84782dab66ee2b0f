package workload

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ConfigMapRefs lists the ConfigMaps a pod spec reads (environment, envFrom, volumes and
// projected volumes), sorted and without repeats. A change to any of them is a new revision.
//
// Secrets are deliberately not tracked: following them would mean watching every Secret in
// the cluster. Roll a Secret out by changing an annotation of the pod template (e.g. a
// checksum of the Secret), which is a new revision like any template change.
func ConfigMapRefs(spec *corev1.PodSpec) []string {
	var names []string
	containers := slices.Concat(spec.InitContainers, spec.Containers)
	for _, c := range containers {
		for _, e := range c.EnvFrom {
			if e.ConfigMapRef != nil {
				names = append(names, e.ConfigMapRef.Name)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
				names = append(names, e.ValueFrom.ConfigMapKeyRef.Name)
			}
		}
	}
	for _, v := range spec.Volumes {
		if v.ConfigMap != nil {
			names = append(names, v.ConfigMap.Name)
		}
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.ConfigMap != nil {
					names = append(names, src.ConfigMap.Name)
				}
			}
		}
	}
	sort.Strings(names)
	return slices.Compact(names)
}

// TrackedConfigs returns one "configmap/NAME=DIGEST" entry per ConfigMap the pod spec reads,
// for render.Revision. A ConfigMap that does not exist (an optional one) is left out.
func TrackedConfigs(ctx context.Context, r client.Reader, namespace string, spec *corev1.PodSpec) ([]string, error) {
	var out []string
	for _, name := range ConfigMapRefs(spec) {
		cm := &corev1.ConfigMap{}
		if err := r.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, cm); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return nil, fmt.Errorf("reading ConfigMap %s: %w", name, err)
		}
		out = append(out, "configmap/"+name+"="+configDigest(cm))
	}
	return out, nil
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
	if !ok {
		return obj, nil
	}
	digest := dataDigest(cm)
	cm.Data, cm.BinaryData = nil, nil
	if cm.Annotations == nil {
		cm.Annotations = map[string]string{}
	}
	cm.Annotations[annotationDataDigest] = digest
	return cm, nil
}

// configDigest is the digest of a ConfigMap's data, read from the cache's copy or computed
// from a full one.
func configDigest(cm *corev1.ConfigMap) string {
	if d, ok := cm.Annotations[annotationDataDigest]; ok && cm.Data == nil && cm.BinaryData == nil {
		return d
	}
	return dataDigest(cm)
}

func dataDigest(cm *corev1.ConfigMap) string {
	h := sha256.New()
	for _, k := range sortedKeys(cm.Data) {
		_, _ = fmt.Fprintf(h, "%q=%q\n", k, cm.Data[k])
	}
	for _, k := range sortedKeys(cm.BinaryData) {
		_, _ = fmt.Fprintf(h, "%q=%x\n", k, cm.BinaryData[k])
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
