package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/test/testenv"
)

// canopy's cache keeps a ConfigMap's digest, not its data, and drops kubectl's
// last-applied-configuration: a Deployment applied with kubectl (or Argo CD's client-side
// apply) still rolls out, and a change of the data of a ConfigMap its pods read is still a
// new revision, rolled out and promoted with the new digest.
func TestLeanCacheStillSeesConfigChanges(t *testing.T) {
	testenv.SkipIfShort(t)
	ctx := t.Context()
	ns := env.CreateNamespace(t)
	startOperator(t, manager.Options{Analyzer: imageAnalyzer{env.Client}})

	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews-config"}, Data: map[string]string{"ratings": "on"}}
	d := newDeployment(ns, "reviews", "bookinfo/reviews:v1", 1)
	d.Spec.Template.Spec.Volumes = []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{
		ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: cm.Name}}}}}
	// What kubectl apply leaves on the object: a copy of all of it.
	applied, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	d.Annotations = map[string]string{corev1.LastAppliedConfigAnnotation: string(applied)}
	for _, obj := range []client.Object{cm, d, newCanary(ns, "reviews", 50, 50)} {
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	first := waitPhase(t, ns, "reviews", meshv1.PhaseInitialized).Status.LastPromotedRevision

	weights := watchWeights(t, ns, "reviews")
	cm.Data["ratings"] = "off"
	if err := env.Client.Update(ctx, cm); err != nil {
		t.Fatal(err)
	}
	c := waitPhase(t, ns, "reviews", meshv1.PhaseSucceeded)
	if got, want := weights.values(), []int32{0, 50, 0}; !slices.Equal(got, want) {
		t.Fatalf("canary weights went %v, want %v", got, want)
	}
	if c.Status.LastPromotedRevision == first {
		t.Fatalf("revision %s promoted again: the ConfigMap's change was not seen", first)
	}
	testenv.Eventually(t, time.Minute, func() error {
		p := &appsv1.Deployment{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "reviews-primary"}, p); err != nil {
			return err
		}
		if rev := p.Annotations[render.AnnotationRevision]; rev != c.Status.LastPromotedRevision {
			return fmt.Errorf("primary at revision %q, want %q", rev, c.Status.LastPromotedRevision)
		}
		if _, ok := p.Annotations[corev1.LastAppliedConfigAnnotation]; ok {
			return fmt.Errorf("the primary carries the target's %s", corev1.LastAppliedConfigAnnotation)
		}
		return nil
	})
}
