package controllers

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/workload"
	"canopy.dev/canopy/test/testenv"
)

// configuredReviews is the reviews Deployment reading a ConfigMap (envFrom), a Secret
// (volume), a ConfigMap opted out of copying and a legacy service account token.
func (h *harness) configuredReviews() {
	h.t.Helper()
	ref := func(n string) corev1.LocalObjectReference { return corev1.LocalObjectReference{Name: n} }
	h.create(
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "reviews-config"}, Data: map[string]string{"stars": "black"}},
		&corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "mesh-wide", Annotations: map[string]string{workload.AnnotationConfigCopy: "false"}},
			Data:       map[string]string{"zone": "a"},
		},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "reviews-db"}, Type: corev1.SecretTypeBasicAuth,
			Data: map[string][]byte{"username": []byte("reviews"), "password": []byte("one")}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "legacy"}},
		&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "legacy-token", Annotations: map[string]string{corev1.ServiceAccountNameKey: "legacy"}},
			Type:       corev1.SecretTypeServiceAccountToken,
		},
	)
	d := deployment("reviews", "reviews:v1", 2)
	spec := &d.Spec.Template.Spec
	spec.Containers[0].EnvFrom = []corev1.EnvFromSource{
		{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: ref("reviews-config")}},
		{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: ref("mesh-wide")}},
	}
	spec.Volumes = []corev1.Volume{
		{Name: "db", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "reviews-db"}}},
		{Name: "token", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "legacy-token"}}},
	}
	h.create(d, reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)}))
	h.settle("reviews")
	h.markReady("reviews-primary")
	h.settle("reviews")
	expectPhase(h.t, h.tick(time.Minute), meshv1.PhaseInitialized)
}

func (h *harness) configMapData(name, key string) string {
	h.t.Helper()
	cm := &corev1.ConfigMap{}
	if err := h.c.Get(h.t.Context(), client.ObjectKey{Namespace: h.ns, Name: name}, cm); err != nil {
		h.t.Fatalf("reading ConfigMap %s: %v", name, err)
	}
	return cm.Data[key]
}

func (h *harness) secretData(name, key string) string {
	h.t.Helper()
	s := &corev1.Secret{}
	if err := h.c.Get(h.t.Context(), client.ObjectKey{Namespace: h.ns, Name: name}, s); err != nil {
		h.t.Fatalf("reading Secret %s: %v", name, err)
	}
	return string(s.Data[key])
}

func (h *harness) setConfigMapData(name, key, value string) {
	h.t.Helper()
	cm := &corev1.ConfigMap{}
	if err := h.c.Get(h.t.Context(), client.ObjectKey{Namespace: h.ns, Name: name}, cm); err != nil {
		h.t.Fatal(err)
	}
	cm.Data[key] = value
	if err := h.c.Update(h.t.Context(), cm); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) setSecretData(name, key, value string) {
	h.t.Helper()
	s := &corev1.Secret{}
	if err := h.c.Get(h.t.Context(), client.ObjectKey{Namespace: h.ns, Name: name}, s); err != nil {
		h.t.Fatal(err)
	}
	s.Data[key] = []byte(value)
	if err := h.c.Update(h.t.Context(), s); err != nil {
		h.t.Fatal(err)
	}
}

// primaryReads lists the ConfigMaps and Secrets the primary's pod template reads.
func (h *harness) primaryReads() string {
	h.t.Helper()
	var out []string
	for _, r := range workload.ConfigRefs(&h.deployment("reviews-primary").Spec.Template.Spec) {
		out = append(out, r.Kind+"/"+r.Name)
	}
	return strings.Join(out, " ")
}

// The primary reads its own copies of the target's ConfigMaps and Secrets, owned by the
// Canary; an opted-out ConfigMap and a service account token are read by both, never copied.
func TestCanaryPrimaryReadsCopiesOfItsConfigs(t *testing.T) {
	h := newHarness(t)
	h.configuredReviews()
	if got, want := h.primaryReads(), "configmap/mesh-wide configmap/reviews-config-primary secret/legacy-token secret/reviews-db-primary"; got != want {
		t.Fatalf("the primary reads %q, want %q", got, want)
	}
	if got := h.configMapData("reviews-config-primary", "stars"); got != "black" {
		t.Fatalf("the primary's copy of reviews-config holds %q, want black", got)
	}
	c := &meshv1.Canary{}
	if err := h.c.Get(t.Context(), client.ObjectKey{Namespace: h.ns, Name: "reviews"}, c); err != nil {
		t.Fatal(err)
	}
	for _, o := range []client.Object{&corev1.ConfigMap{}, &corev1.Secret{}} {
		name := "reviews-config-primary"
		if _, ok := o.(*corev1.Secret); ok {
			name = "reviews-db-primary"
		}
		if err := h.c.Get(t.Context(), client.ObjectKey{Namespace: h.ns, Name: name}, o); err != nil {
			t.Fatal(err)
		}
		if !metav1.IsControlledBy(o, c) || o.GetLabels()[meshv1.LabelManagedBy] != meshv1.ManagedByValue {
			t.Errorf("%s is not a generated object of the Canary: owners %v, labels %v", name, o.GetOwnerReferences(), o.GetLabels())
		}
		if s, ok := o.(*corev1.Secret); ok && (s.Type != corev1.SecretTypeBasicAuth || string(s.Data["password"]) != "one") {
			t.Errorf("the Secret copy has type %s and password %q, want the source's", s.Type, s.Data["password"])
		}
	}
	for _, o := range []client.Object{
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "mesh-wide-primary"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "legacy-token-primary"}},
	} {
		if err := h.c.Get(t.Context(), client.ObjectKey{Namespace: h.ns, Name: o.GetName()}, o); !apierrors.IsNotFound(err) {
			t.Errorf("%s: %v, want it never made", o.GetName(), err)
		}
	}
	h.expectEventMessage(meshv1.ReasonInconsistent, "Secret/legacy-token")

	// An opted-out ConfigMap's change is no new revision: both read it already.
	h.setConfigMapData("mesh-wide", "zone", "b")
	expectPhase(t, h.settle("reviews"), meshv1.PhaseInitialized)

	// With nothing to do, the copies cost no write.
	h.expectNoWrites()
}

// A config change is a new revision: the canary runs it (it reads the source), the primary's
// copy keeps the old data through the analysis and gets the new data with the promotion.
func TestCanaryConfigChangeReachesThePrimaryWithThePromotion(t *testing.T) {
	h := newHarness(t)
	h.configuredReviews()
	before := h.deployment("reviews-primary").Annotations["mesh.canopy.dev/revision"]
	h.setConfigMapData("reviews-config", "stars", "red")
	h.setSecretData("reviews-db", "password", "two")
	c := h.settle("reviews")
	expectPhase(t, c, meshv1.PhaseProgressing)
	h.markReady("reviews")
	h.settle("reviews")
	for range 2 {
		h.tick(time.Minute)
		if got := h.configMapData("reviews-config-primary", "stars"); got != "black" {
			t.Fatalf("while analysing, the primary's copy holds %q, want black", got)
		}
		if got := h.secretData("reviews-db-primary", "password"); got != "one" {
			t.Fatalf("while analysing, the primary's Secret copy holds %q, want one", got)
		}
	}
	c = h.tick(time.Minute)
	expectPhase(t, c, meshv1.PhasePromoting)
	if got := h.configMapData("reviews-config-primary", "stars"); got != "red" {
		t.Fatalf("after promotion the primary's copy holds %q, want red", got)
	}
	if got := h.secretData("reviews-db-primary", "password"); got != "two" {
		t.Fatalf("after promotion the primary's Secret copy holds %q, want two", got)
	}
	if after := h.deployment("reviews-primary").Spec.Template.Annotations["mesh.canopy.dev/revision"]; after == before {
		t.Fatal("the primary's pod template did not change: its pods would keep the old environment")
	}
}

// A Secret change rolled back leaves the primary's copy as it was.
func TestCanaryRollbackLeavesThePrimarysConfig(t *testing.T) {
	h := newHarness(t)
	h.configuredReviews()
	h.setSecretData("reviews-db", "password", "bad")
	expectPhase(t, h.settle("reviews"), meshv1.PhaseProgressing)
	h.markReady("reviews")
	h.settle("reviews")
	h.analyzer.set(meshv1.OutcomeFail, "80.00")
	h.tick(time.Minute)
	h.tick(time.Minute)
	c := h.tick(time.Minute)
	expectPhase(t, c, meshv1.PhaseFailed)
	if got := h.secretData("reviews-db-primary", "password"); got != "one" {
		t.Fatalf("after the rollback the primary's Secret copy holds %q, want one", got)
	}
	// Still so once idle.
	h.tick(10 * time.Minute)
	if got := h.secretData("reviews-db-primary", "password"); got != "one" {
		t.Fatalf("idle after the rollback, the primary's Secret copy holds %q, want one", got)
	}
}

// A Secret change of an idle Canary, which no watch reports, is seen at the next resync.
func TestCanaryIdleWithASecretIsResynced(t *testing.T) {
	h := newHarness(t)
	h.configuredReviews()
	_, res := h.reconcile("reviews")
	if res.RequeueAfter <= 0 || res.RequeueAfter > secretResync {
		t.Fatalf("an idle Canary whose target reads a Secret comes back after %s, want within %s", res.RequeueAfter, secretResync)
	}
}

// A Secret or ConfigMap the target reads must exist (unless optional) before the primary is
// written; a copy name someone else holds is not taken.
func TestCanaryConfigsThePrimaryCannotCopy(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before func(h *harness)
		reason string
		want   string
	}{
		{name: "missing", reason: meshv1.ReasonConfigNotFound, want: "Secret reviews-db, read by Deployment reviews, does not exist"},
		{name: "taken", reason: meshv1.ReasonConflict, want: "reviews-db-primary, which exists and is not this Canary's",
			before: func(h *harness) {
				h.create(
					&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "reviews-db"}, Data: map[string][]byte{"k": []byte("v")}},
					&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "reviews-db-primary"}, Data: map[string][]byte{"mine": []byte("v")}},
				)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.before != nil {
				tc.before(h)
			}
			d := deployment("reviews", "reviews:v1", 2)
			d.Spec.Template.Spec.Volumes = []corev1.Volume{{Name: "db", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "reviews-db"}}}}
			h.create(d, reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)}))
			if _, err := h.r.Reconcile(t.Context(), reconcileRequest(h.ns, "reviews")); err == nil {
				t.Fatal("the reconcile succeeded")
			}
			c := &meshv1.Canary{}
			if err := h.c.Get(t.Context(), client.ObjectKey{Namespace: h.ns, Name: "reviews"}, c); err != nil {
				t.Fatal(err)
			}
			ready := meta.FindStatusCondition(c.Status.Conditions, meshv1.ConditionReady)
			if ready == nil || ready.Reason != tc.reason || !strings.Contains(ready.Message, tc.want) {
				t.Fatalf("Ready %+v, want reason %s and a message saying %q", ready, tc.reason, tc.want)
			}
			if err := h.c.Get(t.Context(), client.ObjectKey{Namespace: h.ns, Name: "reviews-primary"}, d); !apierrors.IsNotFound(err) {
				t.Fatalf("the primary: %v, want it not written", err)
			}
			if tc.name == "taken" && h.secretData("reviews-db-primary", "mine") != "v" {
				t.Fatal("the Secret someone else had was overwritten")
			}
		})
	}
}

func (h *harness) expectEventMessage(reason, text string) {
	h.t.Helper()
	testenv.Eventually(h.t, 30*time.Second, func() error {
		list := &eventsv1.EventList{}
		if err := h.c.List(h.t.Context(), list, client.InNamespace(h.ns)); err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.Reason == reason && strings.Contains(e.Note, text) {
				return nil
			}
		}
		return &hookError{"no " + reason + " event saying " + text}
	})
}
