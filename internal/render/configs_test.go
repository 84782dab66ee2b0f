package render

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	pods "canopy.dev/canopy/internal/workload"
)

// The primary reads the copies of the configs it copies, wherever its template names them,
// and the sources of the others (shared, or missing and optional).
func TestPrimaryReadsItsCopiesOfTheConfigs(t *testing.T) {
	target := reviewsTarget()
	ref := func(n string) corev1.LocalObjectReference { return corev1.LocalObjectReference{Name: n} }
	spec := &target.Spec.Template.Spec
	spec.InitContainers = []corev1.Container{{Name: "init", EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: ref("settings")}}}}}
	spec.Containers[0].Env = []corev1.EnvVar{{Name: "DB", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: ref("db"), Key: "password"}}}}
	spec.Volumes = []corev1.Volume{
		{Name: "settings", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: ref("settings")}}},
		{Name: "ca", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: ref("ca-bundle")}}},
		{Name: "all", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{Secret: &corev1.SecretProjection{LocalObjectReference: ref("db")}},
			{Secret: &corev1.SecretProjection{LocalObjectReference: ref("sa-token")}},
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: ref("later"), Optional: ptr(true)}},
		}}}},
	}
	configs := []pods.Config{
		{ConfigRef: pods.ConfigRef{Kind: pods.KindConfigMap, Name: "ca-bundle"}, Found: true, Digest: "c", Shared: "annotated"},
		{ConfigRef: pods.ConfigRef{Kind: pods.KindConfigMap, Name: "later", Optional: true}},
		{ConfigRef: pods.ConfigRef{Kind: pods.KindConfigMap, Name: "settings"}, Found: true, Digest: "s"},
		{ConfigRef: pods.ConfigRef{Kind: pods.KindSecret, Name: "db"}, Found: true, Digest: "d"},
		{ConfigRef: pods.ConfigRef{Kind: pods.KindSecret, Name: "sa-token"}, Found: true, Digest: "t", Shared: "a token"},
	}
	p, err := Primary(reviewsCanary(), target, nil, configs...)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	pods.EachConfigRef(&p.Spec.Template.Spec, func(r pods.ConfigRef, _ *string) { got = append(got, r.Kind+"/"+r.Name) })
	want := "configmap/settings-primary secret/db-primary configmap/settings-primary configmap/ca-bundle secret/db-primary secret/sa-token configmap/later"
	if strings.Join(got, " ") != want {
		t.Errorf("the primary reads\n%s\nwant\n%s", strings.Join(got, " "), want)
	}
	// The target is left as it was.
	if spec.Volumes[0].ConfigMap.Name != "settings" {
		t.Error("rendering the primary changed the target's template")
	}
	// The digests of the copied configs, and only theirs, are part of the revision.
	if rev, want := p.Annotations[AnnotationRevision], Revision(&target.Spec.Template, "configmap/settings=s", "secret/db=d"); rev != want {
		t.Errorf("revision %s, want %s (the copied configs' digests)", rev, want)
	}
}

func TestConfigCopies(t *testing.T) {
	c := reviewsCanary()
	src := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name: "settings", Namespace: "bookinfo", UID: "u1", ResourceVersion: "7",
			Labels:      map[string]string{"argocd.argoproj.io/instance": "bookinfo"},
			Annotations: map[string]string{"argocd.argoproj.io/tracking-id": "bookinfo:/ConfigMap:bookinfo/settings"},
		},
		Immutable:  ptr(true),
		Data:       map[string]string{"app.yaml": "level: debug"},
		BinaryData: map[string][]byte{"logo": {1, 2}},
	}
	cm, err := ConfigMapCopy(c, src)
	if err != nil {
		t.Fatal(err)
	}
	// Not immutable: the copy is updated in place at each promotion. Not the source's labels
	// or annotations: a GitOps tool must not take the copy for the source.
	expectYAML(t, cm, `
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings-primary
  namespace: bookinfo
  labels:
    app.kubernetes.io/managed-by: canopy
    mesh.canopy.dev/owner-kind: Canary
    mesh.canopy.dev/owner-name: reviews
    mesh.canopy.dev/owner-namespace: bookinfo
  annotations:
    mesh.canopy.dev/copied-from: settings
data:
  app.yaml: "level: debug"
binaryData:
  logo: AQI=
`)
	sec, err := SecretCopy(c, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "tls", Namespace: "bookinfo"},
		Type:       corev1.SecretTypeTLS, Immutable: ptr(true),
		Data: map[string][]byte{"tls.crt": []byte("crt"), "tls.key": []byte("key")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if sec.Name != "tls-primary" || sec.Type != corev1.SecretTypeTLS || sec.Immutable != nil || string(sec.Data["tls.key"]) != "key" {
		t.Errorf("Secret copy %+v: want tls-primary, of type TLS, mutable, with the data", sec)
	}

	// What is never copied.
	if _, err := SecretCopy(c, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "t"}, Type: corev1.SecretTypeServiceAccountToken}); err == nil {
		t.Error("a service account token was copied")
	}
	cached, _ := pods.CacheConfigMap(src.DeepCopy())
	if _, err := ConfigMapCopy(c, cached.(*corev1.ConfigMap)); err == nil || !strings.Contains(err.Error(), "without its data") {
		t.Errorf("a copy of the cache's ConfigMap (no data): %v", err)
	}
	long := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: strings.Repeat("a", 250)}}
	_, err = ConfigMapCopy(c, long)
	expectFieldError(t, err, "metadata.name", meshv1.ReasonInvalidSpec)
}
