package v1alpha1

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// validateSteps checks spec.analysis.steps as the CRD's CEL rules do (for objects of an older
// CRD), parses pause durations as the controller does, and warns of checks that no analysis
// step ever runs.
func validateSteps(path *field.Path, c *meshv1.Canary, ws *admission.Warnings) field.ErrorList {
	a := &c.Spec.Analysis
	if len(a.Steps) == 0 {
		return nil
	}
	var errs field.ErrorList
	stepsPath := path.Child("steps")
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"stepWeight", a.StepWeight != nil}, {"stepWeights", len(a.StepWeights) > 0}, {"iterations", a.Iterations != nil},
		{"match", len(a.Match) > 0}, {"mirror", a.Mirror},
	} {
		if f.set {
			errs = append(errs, field.Forbidden(path.Child(f.name), "cannot be combined with steps: use setWeight, analysis, setHeaderRoute and setMirrorRoute steps"))
		}
	}
	analyses := 0
	for i := range a.Steps {
		s, p := &a.Steps[i], stepsPath.Index(i)
		set := 0
		for _, b := range []bool{s.SetWeight != nil, s.Pause != nil, s.Analysis != nil, s.SetHeaderRoute != nil, s.SetMirrorRoute != nil, s.SetCanaryScale != nil} {
			if b {
				set++
			}
		}
		if set != 1 {
			errs = append(errs, field.Invalid(p, fmt.Sprintf("%d fields set", set), "a step sets exactly one of setWeight, pause, analysis, setHeaderRoute, setMirrorRoute or setCanaryScale"))
		}
		if s.Pause != nil {
			if _, err := floorDuration(s.Pause.Duration, time.Second); err != nil {
				errs = append(errs, field.Invalid(p.Child("pause", "duration"), s.Pause.Duration, err.Error()))
			}
		}
		if s.Analysis != nil {
			analyses++
		}
		if sc := s.SetCanaryScale; sc != nil {
			n := 0
			for _, b := range []bool{sc.Replicas != nil, sc.Weight != nil, sc.MatchTrafficWeight} {
				if b {
					n++
				}
			}
			if n != 1 {
				errs = append(errs, field.Invalid(p.Child("setCanaryScale"), fmt.Sprintf("%d fields set", n), "set exactly one of replicas, weight or matchTrafficWeight"))
			}
			if c.Spec.AutoscalerRef != nil {
				*ws = append(*ws, fmt.Sprintf("%s: spec.autoscalerRef %s scales the canary too: canopy sets the count at every reconcile from this step on, against the autoscaler", p.Child("setCanaryScale"), c.Spec.AutoscalerRef.Name))
			}
		}
	}
	if analyses == 0 && (len(a.Metrics) > 0 || hasHookType(a, meshv1.WebhookRollout)) {
		*ws = append(*ws, fmt.Sprintf("%s: has no analysis step: the metrics and rollout webhooks of spec.analysis never run", stepsPath))
	}
	return errs
}

func hasHookType(a *meshv1.CanaryAnalysis, t meshv1.WebhookType) bool {
	for i := range a.Webhooks {
		if a.Webhooks[i].Type == t {
			return true
		}
	}
	return false
}
