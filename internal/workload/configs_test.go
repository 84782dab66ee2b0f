package workload

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

func TestConfigRefsFindEveryWayAPodReadsAConfigMapOrSecret(t *testing.T) {
	cmRef := func(n string) corev1.LocalObjectReference { return corev1.LocalObjectReference{Name: n} }
	spec := &corev1.PodSpec{
		InitContainers: []corev1.Container{{
			EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: cmRef("init")}}},
			Env:     []corev1.EnvVar{{Name: "T", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: cmRef("init-secret"), Key: "t"}}}},
		}},
		Containers: []corev1.Container{{
			EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: cmRef("env-secret"), Optional: ptr.To(true)}}},
			Env: []corev1.EnvVar{
				{Name: "A", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: cmRef("env"), Key: "a", Optional: ptr.To(true)}}},
				{Name: "B", Value: "plain"},
				{Name: "C", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			},
		}},
		Volumes: []corev1.Volume{
			{Name: "v", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: cmRef("vol")}}},
			{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "vol-secret", Optional: ptr.To(true)}}},
			{Name: "p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				// "env" is optional in one place only: it is not optional.
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: cmRef("env")}},
				{Secret: &corev1.SecretProjection{LocalObjectReference: cmRef("projected-secret")}},
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}},
			}}}},
			{Name: "e", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		},
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "registry"}},
	}
	want := []ConfigRef{
		{Kind: KindConfigMap, Name: "env"},
		{Kind: KindConfigMap, Name: "init"},
		{Kind: KindConfigMap, Name: "vol"},
		{Kind: KindSecret, Name: "env-secret", Optional: true},
		{Kind: KindSecret, Name: "init-secret"},
		{Kind: KindSecret, Name: "projected-secret"},
		{Kind: KindSecret, Name: "vol-secret", Optional: true},
	}
	if got := ConfigRefs(spec); !slices.Equal(got, want) {
		t.Fatalf("ConfigRefs =\n%v\nwant\n%v", got, want)
	}
	if got, want := ConfigMapRefs(spec), []string{"env", "init", "vol"}; !slices.Equal(got, want) {
		t.Fatalf("ConfigMapRefs = %v, want %v", got, want)
	}
	// Every reference is given to EachConfigRef, repeats included, and can be rewritten.
	n := 0
	EachConfigRef(spec, func(_ ConfigRef, name *string) { n++; *name += "-x" })
	if n != 8 || spec.Volumes[1].Secret.SecretName != "vol-secret-x" || spec.InitContainers[0].Env[0].ValueFrom.SecretKeyRef.Name != "init-secret-x" {
		t.Fatalf("EachConfigRef visited %d references, want 8, or did not rewrite them", n)
	}
}

func TestReadConfigsTracksWhatThePrimaryCopies(t *testing.T) {
	const ns = "shop"
	meta := func(name string, annotations map[string]string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name), Annotations: annotations}
	}
	objs := []client.Object{
		&corev1.ConfigMap{ObjectMeta: meta("app", nil), Data: map[string]string{"k": "v"}},
		&corev1.ConfigMap{ObjectMeta: meta("shared", map[string]string{AnnotationConfigCopy: "false"}), Data: map[string]string{"k": "v"}},
		&corev1.ConfigMap{ObjectMeta: meta("flagger", map[string]string{"flagger.app/config-tracking": "disabled"})},
		&corev1.Secret{ObjectMeta: meta("db", nil), Data: map[string][]byte{"password": []byte("s3cret")}},
		&corev1.Secret{ObjectMeta: meta("token", nil), Type: corev1.SecretTypeServiceAccountToken, Data: map[string][]byte{"token": []byte("t")}},
	}
	r := fake.NewClientBuilder().WithObjects(objs...).Build()
	vol := func(name string, src corev1.VolumeSource) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: src}
	}
	cm := func(name string, optional bool) corev1.VolumeSource {
		return corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Optional: &optional}}
	}
	secret := func(name string) corev1.VolumeSource {
		return corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: name}}
	}
	spec := &corev1.PodSpec{Volumes: []corev1.Volume{
		vol("a", cm("app", false)), vol("b", cm("shared", false)), vol("c", cm("flagger", false)), vol("d", cm("missing", true)),
		vol("e", secret("db")), vol("f", secret("token")),
	}}
	configs, err := ReadConfigs(t.Context(), r, ns, spec)
	if err != nil {
		t.Fatal(err)
	}
	var copied, shared, missing []string
	for _, c := range configs {
		switch {
		case c.Copied():
			copied = append(copied, c.Name)
		case c.Found:
			shared = append(shared, c.Name+": "+c.Shared)
		default:
			missing = append(missing, c.Name)
		}
	}
	if want := []string{"app", "db"}; !slices.Equal(copied, want) {
		t.Errorf("copied %v, want %v", copied, want)
	}
	if want := []string{
		"flagger: annotated flagger.app/config-tracking=disabled",
		"shared: annotated mesh.canopy.dev/config-copy=false",
		"token: a kubernetes.io/service-account-token Secret, a credential the cluster issues, is never copied",
	}; !slices.Equal(shared, want) {
		t.Errorf("shared %q, want %q", shared, want)
	}
	if want := []string{"missing"}; !slices.Equal(missing, want) {
		t.Errorf("missing %v, want %v", missing, want)
	}
	tracked := Tracked(configs)
	if len(tracked) != 2 || !strings.HasPrefix(tracked[0], "configmap/app=") || !strings.HasPrefix(tracked[1], "secret/db=") {
		t.Errorf("tracked %v, want the entries of configmap/app and secret/db", tracked)
	}
	if strings.Contains(strings.Join(tracked, ","), "s3cret") {
		t.Errorf("a Secret's data is in the revision entries: %v", tracked)
	}
}

// A Secret's digest changes with its data and type, and depends on its UID, so that one who
// cannot read the Secret cannot test guesses of its data against a revision.
func TestSecretDigestIsKeyedByTheSecret(t *testing.T) {
	s := func(uid string, typ corev1.SecretType, v string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{UID: types.UID(uid)}, Type: typ, Data: map[string][]byte{"k": []byte(v)}}
	}
	base := SecretDigest(s("a", corev1.SecretTypeOpaque, "1"))
	if base != SecretDigest(s("a", corev1.SecretTypeOpaque, "1")) {
		t.Fatal("the digest is not stable")
	}
	for name, other := range map[string]*corev1.Secret{
		"data": s("a", corev1.SecretTypeOpaque, "2"),
		"type": s("a", corev1.SecretTypeBasicAuth, "1"),
		"uid":  s("b", corev1.SecretTypeOpaque, "1"),
	} {
		if SecretDigest(other) == base {
			t.Errorf("another %s, the same digest", name)
		}
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
	// Transforming the cache's copy again (a resync) keeps its digest.
	again, _ := CacheConfigMap(cached.DeepCopy())
	if got, want := configDigest(again.(*corev1.ConfigMap)), configDigest(full()); got != want {
		t.Fatalf("digest of the copy transformed twice %s, of the full one %s", got, want)
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
