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
