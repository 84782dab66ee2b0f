package testenv_test

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/test/testenv"
)

// TestCanarySchemaRules proves that config/crd/bases is what the apiserver enforces: a
// Canary breaking one of the schema's rules is rejected with a message that names the
// field, and the valid base Canary is accepted.
func TestCanarySchemaRules(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)

	tests := []struct {
		name   string
		mutate func(*meshv1.CanarySpec)
		// wantErr are substrings of the apiserver's message; empty means accepted.
		wantErr []string
	}{
		{name: "valid", mutate: func(*meshv1.CanarySpec) {}},
		{
			name:    "stepWeight above maxWeight",
			mutate:  func(s *meshv1.CanarySpec) { s.Analysis.StepWeight = ptr.To[int32](60) },
			wantErr: []string{"spec.analysis", "stepWeight must be less than or equal to maxWeight"},
		},
		{
			name: "stepWeights not increasing",
			mutate: func(s *meshv1.CanarySpec) {
				s.Analysis.StepWeight = nil
				s.Analysis.StepWeights = []int32{10, 30, 20, 50}
			},
			wantErr: []string{"spec.analysis.stepWeights", "stepWeights must be strictly increasing"},
		},
		{
			name: "stepWeights repeating a weight",
			mutate: func(s *meshv1.CanarySpec) {
				s.Analysis.StepWeight = nil
				s.Analysis.StepWeights = []int32{10, 10, 50}
			},
			wantErr: []string{"spec.analysis.stepWeights", "stepWeights must be strictly increasing"},
		},
		{
			name:    "both stepWeight and stepWeights",
			mutate:  func(s *meshv1.CanarySpec) { s.Analysis.StepWeights = []int32{10, 50} },
			wantErr: []string{"spec.analysis", "set stepWeight or stepWeights, not both"},
		},
		{
			name:    "interval that is not a duration",
			mutate:  func(s *meshv1.CanarySpec) { s.Analysis.Interval = "5 minutes" },
			wantErr: []string{"spec.analysis.interval"},
		},
		{
			name:    "target name too long for the generated Services",
			mutate:  func(s *meshv1.CanarySpec) { s.TargetRef.Name = strings.Repeat("a", 56) },
			wantErr: []string{"spec.targetRef.name", "55"},
		},
		{
			name:    "target name not a Service name",
			mutate:  func(s *meshv1.CanarySpec) { s.TargetRef.Name = "9lives" },
			wantErr: []string{"spec.targetRef.name"},
		},
		{
			name:    "interval below one second",
			mutate:  func(s *meshv1.CanarySpec) { s.Analysis.Interval = "500ms" },
			wantErr: []string{"spec.analysis", "interval must be at least 1s"},
		},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			canary := validCanary(ns)
			canary.Name = "podinfo-" + string(rune('a'+i))
			tc.mutate(&canary.Spec)
			err := env.Client.Create(t.Context(), canary)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("a valid Canary was rejected: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want an error mentioning %q", tc.wantErr)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

// validCanary is a weighted canary with the defaults the schema would apply spelled out.
func validCanary(ns string) *meshv1.Canary {
	return &meshv1.Canary{
		ObjectMeta: metav1.ObjectMeta{Name: "podinfo", Namespace: ns},
		Spec: meshv1.CanarySpec{
			TargetRef: meshv1.TargetRef{Name: "podinfo"},
			Service:   meshv1.CanaryService{Port: 9898},
			Analysis: meshv1.CanaryAnalysis{
				Interval:   "1m",
				StepWeight: ptr.To[int32](10),
				MaxWeight:  50,
			},
		},
	}
}
