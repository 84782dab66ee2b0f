package render

import (
	"strings"
	"testing"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/progress"
)

func stepsCanary() *meshv1.Canary {
	c := reviewsCanary()
	c.Spec.Analysis.StepWeight = nil
	c.Spec.Analysis.Steps = []meshv1.CanaryStep{
		{SetHeaderRoute: &meshv1.StepHeaderRoute{Match: []meshv1.HTTPMatch{{Headers: map[string]meshv1.StringMatch{"x-canary": {Exact: ptr("insider")}}}}}},
		{SetMirrorRoute: &meshv1.StepMirrorRoute{Percent: ptr[int32](30), Match: []meshv1.HTTPMatch{{URI: &meshv1.StringMatch{Prefix: ptr("/api")}}}}},
	}
	return c
}

func TestAStepsHeaderRouteSendsMatchingRequestsToTheCanary(t *testing.T) {
	c := stepsCanary()
	w := progress.Routing{PrimaryWeight: 80, CanaryWeight: 20, HeaderRoute: 1}
	set, err := CanaryObjects(c, reviewsTarget(), w, nil)
	if err != nil {
		t.Fatal(err)
	}
	http := set.VirtualService.Spec.Http
	if len(http) != 2 || http[0].Match[0].Headers["x-canary"].GetExact() != "insider" ||
		len(http[0].Route) != 1 || http[0].Route[0].Destination.Host != "reviews-canary" {
		t.Fatalf("header route: %v", http)
	}
	if r := http[1].Route; len(http[1].Match) != 0 || r[0].Weight != 80 || r[1].Weight != 20 {
		t.Fatalf("split: %v", http[1])
	}
}

func TestAStepsMirrorRouteMirrorsOnlyMatchingRequests(t *testing.T) {
	c := stepsCanary()
	w := progress.Routing{PrimaryWeight: 100, Mirror: true, MirrorWeight: 30, MirrorRoute: 2}
	set, err := CanaryObjects(c, reviewsTarget(), w, nil)
	if err != nil {
		t.Fatal(err)
	}
	http := set.VirtualService.Spec.Http
	if len(http) != 2 {
		t.Fatalf("routes: %v", http)
	}
	if m := http[0]; m.Match[0].Uri.GetPrefix() != "/api" || m.Mirror.GetHost() != "reviews-canary" || m.MirrorPercentage.GetValue() != 30 {
		t.Fatalf("mirror route: %v", m)
	}
	if d := http[1]; d.Mirror != nil || len(d.Match) != 0 {
		t.Fatalf("the other requests are not mirrored: %v", d)
	}
	gs, err := CanaryGatewayObjects(c, reviewsTarget(), w, nil)
	if err != nil || len(gs.HTTPRoute.Spec.Rules) != 2 {
		t.Fatalf("HTTPRoute: %v %v", err, gs.HTTPRoute)
	}
}

func TestValidateCanaryNamesABadStepMatch(t *testing.T) {
	c := stepsCanary()
	c.Spec.Analysis.Steps[1].SetMirrorRoute.Match[0].URI = &meshv1.StringMatch{Regex: ptr("(")}
	_, err := ValidateCanary(c)
	if err == nil || !strings.Contains(err.Error(), "spec.analysis.steps[1].setMirrorRoute.match[0]") {
		t.Fatalf("want an error naming the step's match, got %v", err)
	}
}
