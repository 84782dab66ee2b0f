package workload

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestConfigMapRefsFindsEveryWayAPodReadsAConfigMap(t *testing.T) {
	spec := &corev1.PodSpec{
		InitContainers: []corev1.Container{{EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "init"}}}}}},
		Containers: []corev1.Container{{
			EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "not-tracked"}}}},
			Env: []corev1.EnvVar{
				{Name: "A", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "env"}, Key: "a"}}},
				{Name: "B", Value: "plain"},
			},
		}},
		Volumes: []corev1.Volume{
			{Name: "v", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "vol"}}}},
			{Name: "p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "env"}}},
			}}}},
		},
	}
	if got, want := ConfigMapRefs(spec), []string{"env", "init", "vol"}; !slices.Equal(got, want) {
		t.Fatalf("ConfigMapRefs = %v, want %v", got, want)
	}
}

func TestConfigDigestChangesWithTheData(t *testing.T) {
	a := &corev1.ConfigMap{Data: map[string]string{"k": "1", "j": "2"}}
	b := &corev1.ConfigMap{Data: map[string]string{"j": "2", "k": "1"}}
	c := &corev1.ConfigMap{Data: map[string]string{"k": "1", "j": "3"}}
	if configDigest(a) != configDigest(b) {
		t.Fatal("the digest depends on map order")
	}
	if configDigest(a) == configDigest(c) {
		t.Fatal("the digest did not change with the data")
	}
}

// The cache keeps a ConfigMap's digest instead of its data: the revision read from the cache
// is the one computed from the full object (by the kubectl plugin, say).
func TestCachedConfigMapKeepsItsDigestNotItsData(t *testing.T) {
	full := func() *corev1.ConfigMap {
		return &corev1.ConfigMap{Data: map[string]string{"app.yaml": "replicas: 3"}, BinaryData: map[string][]byte{"logo": {1, 2, 3}}}
	}
	obj, err := CacheConfigMap(full())
	if err != nil {
		t.Fatal(err)
	}
	cached := obj.(*corev1.ConfigMap)
	if cached.Data != nil || cached.BinaryData != nil {
		t.Fatalf("the cached copy keeps its data: %+v", cached)
	}
	if got, want := configDigest(cached), configDigest(full()); got != want {
		t.Fatalf("digest of the cached copy %s, of the full one %s", got, want)
	}
	// An empty ConfigMap too, and other kinds pass unchanged.
	empty, _ := CacheConfigMap(&corev1.ConfigMap{})
	if got, want := configDigest(empty.(*corev1.ConfigMap)), configDigest(&corev1.ConfigMap{}); got != want {
		t.Fatalf("digest of an empty cached ConfigMap %s, want %s", got, want)
	}
	svc := &corev1.Service{}
	if got, _ := CacheConfigMap(svc); got != svc {
		t.Fatal("a Service was changed")
	}
}
