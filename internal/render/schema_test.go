package render

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	apiextensions "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	celconfig "k8s.io/apiserver/pkg/apis/cel"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/progress"
	"canopy.dev/canopy/test/testenv"
)

// crdSchema is what the apiserver checks a custom resource against.
type crdSchema struct {
	internal   *apiextensions.JSONSchemaProps
	structural *structuralschema.Structural
	// The validators are built once: compiling a CRD's CEL rules costs far more than
	// checking an object with them.
	validators func() (schemaValidators, error)
}

type schemaValidators struct {
	schema validation.SchemaValidator
	cel    *cel.Validator
}

var (
	schemasOnce sync.Once
	schemas     map[schema.GroupVersionKind]crdSchema
	schemasErr  error
)

// loadSchemas reads Istio's and cert-manager's CRDs from the module cache, at the
// versions go.mod requires (the files envtest installs).
func loadSchemas() (map[schema.GroupVersionKind]crdSchema, error) {
	schemasOnce.Do(func() {
		schemas = map[schema.GroupVersionKind]crdSchema{}
		paths, err := testenv.CRDPaths()
		if err != nil {
			schemasErr = err
			return
		}
		for _, p := range paths {
			files := []string{p}
			if st, err := os.Stat(p); err == nil && st.IsDir() {
				files, _ = filepath.Glob(filepath.Join(p, "*.yaml"))
			}
			for _, f := range files {
				if err := readCRDs(f); err != nil {
					schemasErr = err
					return
				}
			}
		}
	})
	return schemas, schemasErr
}

func readCRDs(file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		var crd apiextensionsv1.CustomResourceDefinition
		if err := dec.Decode(&crd); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
		if crd.Kind != "CustomResourceDefinition" {
			continue
		}
		for _, v := range crd.Spec.Versions {
			if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
				continue
			}
			var internal apiextensions.JSONSchemaProps
			if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, &internal, nil); err != nil {
				return err
			}
			s, err := structuralschema.NewStructural(&internal)
			if err != nil {
				return err
			}
			gvk := schema.GroupVersionKind{Group: crd.Spec.Group, Version: v.Name, Kind: crd.Spec.Names.Kind}
			schemas[gvk] = crdSchema{internal: &internal, structural: s, validators: sync.OnceValues(func() (schemaValidators, error) {
				v, _, err := validation.NewSchemaValidator(&internal)
				return schemaValidators{v, cel.NewValidator(s, true, celconfig.PerCallLimit)}, err
			})}
		}
	}
}

// expectValid checks a rendered custom resource as the apiserver would on create: no
// field unknown to the schema (which pruning would silently drop), the OpenAPI schema
// and its CEL rules. Istio's validating webhook is not involved; render checks what it
// checks beyond the schema (durations, regexes, header names) itself.
func expectValid(t testing.TB, obj Object) {
	t.Helper()
	problems, err := schemaProblems(obj)
	if errors.Is(err, errNoCRDs) {
		t.Skipf("CRDs not available: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s\n%s", p, asYAML(t, obj))
	}
}

var errNoCRDs = errors.New("CRDs not available")

// schemaProblems returns what the apiserver would refuse in obj, each naming the object.
func schemaProblems(obj Object) ([]string, error) {
	all, err := loadSchemas()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNoCRDs, err)
	}
	gvk := obj.GetObjectKind().GroupVersionKind()
	s, ok := all[gvk]
	if !ok {
		return nil, fmt.Errorf("no CRD for %s", gvk)
	}
	u, err := ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	name := gvk.Kind + " " + obj.GetName()
	var problems []string
	pruned := u.DeepCopy().Object
	opts := structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true}
	if unknown := pruning.PruneWithOptions(pruned, s.structural, true, opts); len(unknown) > 0 {
		problems = append(problems, fmt.Sprintf("%s: fields unknown to the schema: %v", name, unknown))
	}
	v, err := s.validators()
	if err != nil {
		return nil, err
	}
	if errs := validation.ValidateCustomResource(nil, u.Object, v.schema); len(errs) > 0 {
		problems = append(problems, fmt.Sprintf("%s: schema: %v", name, errs.ToAggregate()))
	}
	if errs, _ := v.cel.Validate(context.Background(), nil, s.structural, u.Object, nil, celconfig.RuntimeCELCostBudget); len(errs) > 0 {
		problems = append(problems, fmt.Sprintf("%s: CEL rules: %v", name, errs.ToAggregate()))
	}
	return problems, nil
}

func TestRenderedObjectsMatchUpstreamSchemas(t *testing.T) {
	if testing.Short() {
		t.Skip("reads the CRDs from the module cache")
	}
	check := func(t *testing.T, objs []Object) {
		t.Helper()
		n := 0
		for _, o := range objs {
			if o.GetObjectKind().GroupVersionKind().Group == "" || o.GetObjectKind().GroupVersionKind().Group == "apps" {
				continue // core objects have no CRD
			}
			expectValid(t, o)
			n++
		}
		if n == 0 {
			t.Error("nothing checked")
		}
	}
	canary := func(mutate func(c *meshv1.Canary), w progress.Routing, p *meshv1.MeshPolicy) []Object {
		c := reviewsCanary()
		if mutate != nil {
			mutate(c)
		}
		set := renderCanary(t, c, w, p)
		return set.Routing()
	}
	t.Run("canary weighted", func(t *testing.T) { check(t, canary(nil, progress.Routing{PrimaryWeight: 90, CanaryWeight: 10}, nil)) })
	t.Run("canary zero weight", func(t *testing.T) { check(t, canary(nil, progress.Routing{PrimaryWeight: 100}, nil)) })
	t.Run("canary session affinity with policy", func(t *testing.T) {
		check(t, canary(func(c *meshv1.Canary) {
			c.Spec.Analysis.SessionAffinity = &meshv1.SessionAffinity{CookieName: "canary", PrimaryCookieName: "primary", SameSite: "Lax", Secure: true}
		}, progress.Routing{PrimaryWeight: 90, CanaryWeight: 10}, reviewsPolicy()))
	})
	t.Run("canary mirror", func(t *testing.T) {
		check(t, canary(nil, progress.Routing{PrimaryWeight: 100, Mirror: true, MirrorWeight: 20}, nil))
	})
	t.Run("canary A/B with policy", func(t *testing.T) {
		check(t, canary(func(c *meshv1.Canary) {
			c.Spec.Analysis.Match = []meshv1.HTTPMatch{{Headers: map[string]meshv1.StringMatch{"end-user": {Exact: ptr("jason")}}}}
		}, progress.Routing{PrimaryWeight: 100, Match: true}, reviewsPolicy()))
	})
	t.Run("canary every service setting", func(t *testing.T) {
		c := reviewsCanary()
		c.Spec.Service = meshv1.CanaryService{
			Port: 80, Hosts: []string{"reviews.example.com"}, Gateways: []string{"istio-system/public"},
			Match:   []meshv1.HTTPMatch{{URI: &meshv1.StringMatch{Prefix: ptr("/")}, Method: &meshv1.StringMatch{Regex: ptr("GET|HEAD")}, QueryParams: map[string]meshv1.StringMatch{"v": {Exact: ptr("2")}}}},
			Retries: &meshv1.HTTPRetry{Attempts: 3, PerTryTimeout: "250ms", RetryOn: "5xx"}, Timeout: "1500ms",
			Headers:    &meshv1.Headers{Request: &meshv1.HeaderOperations{Set: map[string]string{"x-a": "1"}, Add: map[string]string{"x-b": "2"}, Remove: []string{"x-c"}}},
			CorsPolicy: &meshv1.CorsPolicy{AllowOrigins: []meshv1.StringMatch{{Prefix: ptr("https://")}}, AllowMethods: []string{"GET"}, MaxAge: "1h", AllowCredentials: ptr(true)},
			TrafficPolicy: &meshv1.TrafficPolicy{TLSMode: "DISABLE", LoadBalancer: "PASSTHROUGH",
				ConnectionPool: &meshv1.ConnectionPool{TCP: &meshv1.TCPConnectionPool{MaxConnections: ptr[int32](1), ConnectTimeout: "1ms"}, HTTP: &meshv1.HTTPConnectionPool{MaxRetries: ptr[int32](0), IdleTimeout: "5m"}},
				CircuitBreaker: &meshv1.CircuitBreaker{ConsecutiveGatewayErrors: ptr[int32](1), MaxEjectionPercent: ptr[int32](100)}},
		}
		set := renderCanary(t, c, progress.Routing{PrimaryWeight: 40, CanaryWeight: 60, Mirror: true}, nil)
		check(t, set.Routing())
	})
	policy := func(p *meshv1.MeshPolicy, opts MeshPolicyOptions) []Object {
		set, err := MeshPolicyObjects(p, paymentService(), opts)
		if err != nil {
			t.Fatal(err)
		}
		return set.Objects()
	}
	t.Run("payment policy, certificate ready", func(t *testing.T) {
		check(t, policy(paymentPolicy(), MeshPolicyOptions{CertificateReady: true, CanarySelector: map[string]string{"app": "x"}}))
	})
	t.Run("payment policy, certificate pending", func(t *testing.T) { check(t, policy(paymentPolicy(), MeshPolicyOptions{})) })
	t.Run("mTLS disabled, DENY, no access logs", func(t *testing.T) {
		p := paymentPolicy()
		p.Spec.MTLS = &meshv1.MTLS{Mode: meshv1.MTLSDisable, PortLevel: []meshv1.PortMTLS{{Port: 8080, Mode: meshv1.MTLSStrict}}}
		p.Spec.Authorization = &meshv1.Authorization{Action: "DENY", Rules: []meshv1.AuthorizationRule{{From: []meshv1.AuthorizationSource{{Namespaces: []string{"untrusted"}}}}}}
		p.Spec.Telemetry = &meshv1.Telemetry{AccessLogging: ptr(false)}
		p.Spec.ExternalServices[0].Ports = []meshv1.ExternalPort{{Number: 80, Protocol: "HTTP"}, {Number: 443, Protocol: "HTTPS"}}
		p.Spec.ExternalServices[0].Hosts = []string{"api.stripe.com", "files.stripe.com"}
		p.Spec.ExternalServices[0].TLSOrigination.SNI = "stripe.com"
		check(t, policy(p, MeshPolicyOptions{}))
	})
}

// The schema check itself must catch what it is meant to.
func TestSchemaCheckRejects(t *testing.T) {
	if testing.Short() {
		t.Skip("reads the CRDs from the module cache")
	}
	set := renderCanary(t, reviewsCanary(), progress.Routing{PrimaryWeight: 100}, nil)
	vs := set.VirtualService
	vs.Spec.Http[0].Timeout = &durationPB{Nanos: 1000} // 1µs: below Istio's 1ms rule
	ft := &fakeT{TB: t}
	func() {
		defer func() { _ = recover() }()
		expectValid(ft, vs)
	}()
	if !ft.failed || !strings.Contains(ft.msg, "1ms") {
		t.Errorf("a 1µs timeout passed the schema check (%q)", ft.msg)
	}

	// A field the schema does not know, which the apiserver would silently drop.
	vs.Spec.Http[0].Timeout = nil
	u, err := ToUnstructured(vs)
	if err != nil {
		t.Fatal(err)
	}
	u.Object["spec"].(map[string]any)["http"].([]any)[0].(map[string]any)["weight"] = int64(100)
	ft = &fakeT{TB: t}
	expectValid(ft, u)
	if !ft.failed || !strings.Contains(ft.msg, "spec.http[0].weight") {
		t.Errorf("an unknown field passed the schema check (%q)", ft.msg)
	}
}

type fakeT struct {
	testing.TB
	failed bool
	msg    string
}

func (f *fakeT) Helper() {}
func (f *fakeT) Errorf(format string, args ...any) {
	f.failed = true
	f.msg += fmt.Sprintf(format, args...)
}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.Errorf(format, args...)
	panic("fatal")
}
