package render

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/progress"
)

// FuzzCanaryObjects renders arbitrary weights and spec strings. A render never panics;
// when it succeeds every weighted route adds up to 100 with the weights asked for, the
// VirtualService survives a JSON round trip, and rendering again gives identical objects.
// When it fails with valid weights, the error names a field.
func FuzzCanaryObjects(f *testing.F) {
	f.Add(int32(90), int32(10), int32(0), false, false, "10s", "x-canary", "insider", "^/api", int32(9080), true)
	f.Add(int32(100), int32(0), int32(0), true, false, "", "end-user", "jason", "", int32(80), false)
	f.Add(int32(0), int32(100), int32(50), false, true, "1h30m", "cookie", "", "(unclosed", int32(8080), true)
	f.Fuzz(func(t *testing.T, primary, canary, mirrorWeight int32, match, mirror bool, timeout, header, value, regex string, port int32, withPolicy bool) {
		for _, s := range []string{timeout, header, value, regex} {
			if !utf8.ValidString(s) {
				t.Skip("the API server only holds UTF-8")
			}
		}
		c := reviewsCanary()
		c.Spec.Service.Port = port
		c.Spec.Service.Timeout = meshv1.Duration(timeout)
		c.Spec.Service.Headers = &meshv1.Headers{Request: &meshv1.HeaderOperations{Set: map[string]string{header: value, "x-b": value}}}
		c.Spec.Analysis.Match = []meshv1.HTTPMatch{{Headers: map[string]meshv1.StringMatch{header: {Exact: &value}}}}
		if regex != "" {
			c.Spec.Service.Match = []meshv1.HTTPMatch{{URI: &meshv1.StringMatch{Regex: &regex}}}
		}
		var p *meshv1.MeshPolicy
		if withPolicy {
			p = reviewsPolicy()
			for i := range p.Spec.Routes {
				p.Spec.Routes[i].Port = &port
			}
		}
		w := progress.Routing{PrimaryWeight: primary, CanaryWeight: canary, Match: match, Mirror: mirror, MirrorWeight: mirrorWeight}

		set, err := CanaryObjects(c, reviewsTarget(), w, p)
		if err != nil {
			if w.Validate() == nil && ReasonOf(err) == "" {
				t.Fatalf("valid weights %+v but an error naming no field: %v", w, err)
			}
			return
		}
		if w.Validate() != nil {
			t.Fatalf("invalid weights %+v rendered", w)
		}
		splits := 0
		for i, rt := range set.VirtualService.Spec.Http {
			var sum int32
			for _, d := range rt.Route {
				if d.Weight < 0 || d.Weight > 100 {
					t.Fatalf("route %d: weight %d out of range", i, d.Weight)
				}
				sum += d.Weight
			}
			if sum != 100 {
				t.Fatalf("route %d: weights add up to %d", i, sum)
			}
			if routesTo(rt, "reviews-primary") {
				splits++
				if rt.Route[0].Weight != primary || rt.Route[1].Weight != canary {
					t.Fatalf("route %d: weights %d/%d, want %d/%d", i, rt.Route[0].Weight, rt.Route[1].Weight, primary, canary)
				}
			}
		}
		if splits == 0 {
			t.Fatal("no weighted route")
		}
		b, err := json.Marshal(set.VirtualService)
		if err != nil {
			t.Fatal(err)
		}
		var back networkingv1.VirtualService
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("VirtualService JSON does not read back: %v\n%s", err, b)
		}
		if !proto.Equal(&back.Spec, &set.VirtualService.Spec) {
			t.Fatalf("VirtualService changed in a JSON round trip:\n%s", b)
		}
		if gp, gc, ok := ObservedWeights(&back, "reviews"); !ok || gp != primary || gc != canary {
			t.Fatalf("ObservedWeights = %d, %d, %v; want %d, %d", gp, gc, ok, primary, canary)
		}
		again, err := CanaryObjects(c, reviewsTarget(), w, p)
		if err != nil {
			t.Fatalf("second render failed: %v", err)
		}
		first, second := set.Routing(), again.Routing()
		for i := range first {
			h1, err1 := Hash(first[i])
			h2, err2 := Hash(second[i])
			if err1 != nil || err2 != nil || h1 != h2 {
				t.Fatalf("%s rendered differently (%v, %v)", first[i].GetName(), err1, err2)
			}
		}
	})
}

// FuzzMeshPolicyObjects renders arbitrary MeshPolicy specs (JSON) that canopy's own CRD
// accepts. A render never panics; it either refuses the policy with an error that names a
// field, or every object it renders is one the apiserver accepts (Istio's and cert-manager's
// schemas and CEL rules), and rendering again gives identical objects.
func FuzzMeshPolicyObjects(f *testing.F) {
	for _, p := range []*meshv1.MeshPolicy{paymentPolicy(), reviewsPolicy()} {
		b, err := json.Marshal(p.Spec)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
		f.Add(b, true)
	}
	f.Fuzz(func(t *testing.T, spec []byte, certificateReady bool) {
		p := paymentPolicy()
		p.Spec = meshv1.MeshPolicySpec{}
		if err := json.Unmarshal(spec, &p.Spec); err != nil {
			t.Skip("not a MeshPolicy spec")
		}
		p.SetGroupVersionKind(meshv1.GroupVersion.WithKind("MeshPolicy"))
		refused, err := schemaProblems(p)
		if err != nil {
			t.Skip(err)
		}
		if len(refused) > 0 {
			t.Skip("the apiserver refuses this MeshPolicy")
		}
		opts := MeshPolicyOptions{CertificateReady: certificateReady}
		set, err := MeshPolicyObjects(p, paymentService(), opts)
		if err != nil {
			if ReasonOf(err) == "" {
				t.Fatalf("refused with an error naming no field: %v", err)
			}
			return
		}
		again, err := MeshPolicyObjects(p, paymentService(), opts)
		if err != nil {
			t.Fatalf("second render failed: %v", err)
		}
		first, second := set.Objects(), again.Objects()
		if len(first) != len(second) {
			t.Fatalf("rendered %d objects, then %d", len(first), len(second))
		}
		for i, obj := range first {
			problems, err := schemaProblems(obj)
			if err != nil {
				t.Fatal(err)
			}
			if len(problems) > 0 {
				t.Fatalf("rendered an object the apiserver refuses: %v\nspec: %s\n%s", problems, spec, asYAML(t, obj))
			}
			h1, err1 := Hash(obj)
			h2, err2 := Hash(second[i])
			if err1 != nil || err2 != nil || h1 != h2 {
				t.Fatalf("%s rendered differently (%v, %v)", obj.GetName(), err1, err2)
			}
		}
	})
}
