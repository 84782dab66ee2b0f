package render

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/progress"
)

// The primary of a DaemonSet target is a DaemonSet running the template the primary
// Deployment would, selected by the primary's label only.
func TestPrimaryOfADaemonSet(t *testing.T) {
	c := reviewsCanary()
	c.Spec.TargetRef.Kind = meshv1.KindDaemonSet
	c.Spec.Analysis.StepWeight, c.Spec.Analysis.Iterations = nil, ptr[int32](3)
	d, err := Primary(c, reviewsTarget(), ptr[int32](4))
	if err != nil {
		t.Fatal(err)
	}
	ds := AsDaemonSet(d, nil)
	if ds.Kind != "DaemonSet" || ds.APIVersion != "apps/v1" || ds.Name != "reviews-primary" || ds.Namespace != c.Namespace {
		t.Fatalf("primary %s %s %s/%s", ds.APIVersion, ds.Kind, ds.Namespace, ds.Name)
	}
	if ds.Annotations[AnnotationRevision] == "" || ds.Annotations[AnnotationRevision] != d.Annotations[AnnotationRevision] ||
		ds.Spec.Template.Annotations[AnnotationRevision] != d.Annotations[AnnotationRevision] {
		t.Errorf("the revision is not carried: %v %v", ds.Annotations, ds.Spec.Template.Annotations)
	}
	if got := ds.Spec.Selector.MatchLabels; len(got) != 1 || got[SelectorLabel] != "reviews-primary" {
		t.Errorf("selector %v", got)
	}
	if !equalMaps(ds.Labels, d.Labels) || ds.Spec.Template.Spec.Containers[0].Image != d.Spec.Template.Spec.Containers[0].Image {
		t.Errorf("labels or template differ from the primary Deployment's")
	}
	y := asYAML(t, ds)
	if strings.Contains(y, "replicas") {
		t.Errorf("a DaemonSet primary has no replicas:\n%s", y)
	}

	// The target's rolling update parameters are the primary's; OnDelete, which would never
	// roll a promotion out, is not.
	target := &appsv1.DaemonSet{Spec: appsv1.DaemonSetSpec{UpdateStrategy: appsv1.DaemonSetUpdateStrategy{
		Type:          appsv1.RollingUpdateDaemonSetStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: new(intstr.FromString("25%"))},
	}}}
	if got := AsDaemonSet(d, target).Spec.UpdateStrategy; got.RollingUpdate == nil || got.RollingUpdate.MaxUnavailable.String() != "25%" {
		t.Errorf("update strategy %+v, want the target's maxUnavailable 25%%", got)
	}
	target.Spec.UpdateStrategy = appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType}
	if got := AsDaemonSet(d, target).Spec.UpdateStrategy; got.Type != "" {
		t.Errorf("update strategy %+v copied from an OnDelete target, want the default", got)
	}
}

// A DaemonSet target is delivered blue/green: every setting of a weighted rollout is refused,
// by field.
func TestDaemonSetRefusesWeights(t *testing.T) {
	c := reviewsCanary()
	c.Spec.TargetRef.Kind = meshv1.KindDaemonSet
	c.Spec.AutoscalerRef = &meshv1.AutoscalerRef{Name: "reviews"}
	c.Spec.Analysis.StepWeights = []int32{10, 50}
	c.Spec.Analysis.StepWeightPromotion = ptr[int32](10)
	_, err := ValidateCanary(c)
	for _, want := range []string{"spec.analysis.stepWeight:", "spec.analysis.stepWeights:", "spec.analysis.stepWeightPromotion:", "spec.autoscalerRef:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
	c.Spec.AutoscalerRef = nil
	c.Spec.Analysis.StepWeight, c.Spec.Analysis.StepWeights, c.Spec.Analysis.StepWeightPromotion = nil, nil, nil
	c.Spec.Analysis.Iterations = ptr[int32](2)
	if _, err := ValidateCanary(c); err != nil {
		t.Errorf("blue/green of a DaemonSet refused: %v", err)
	}
	if _, err := CanaryObjects(c, reviewsTarget(), progress.Routing{PrimaryWeight: 100}, nil); err != nil {
		t.Errorf("render: %v", err)
	}
}
