package hostile

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/test/inprocess"
	"canopy.dev/canopy/test/testenv"
)

// The valid objects each case starts from, as JSON: a case's patch is a JSON merge patch
// (RFC 7386) on one of them, so it can carry wrong types the Go types could not.
const (
	baseCanary = `{"spec":{"targetRef":{"name":"podinfo"},"service":{"port":9898},
		"analysis":{"interval":"1m","stepWeight":10,"maxWeight":50}}}`
	baseTemplate = `{"spec":{"provider":{},"query":"up"}}`
	basePolicy   = `{"spec":{"targetRef":{"name":"reviews"}}}`
)

type hostileCase struct {
	name string
	kind string // Canary, MetricTemplate or MeshPolicy
	// patch is merged into the kind's base object; raw, when set, is the whole object
	// instead (apiVersion, kind and namespace are filled in).
	patch string
	raw   string
	// refused are substrings of the apiserver's error, the field and the reason; none
	// means accepted.
	refused []string
}

func hostileCases() []hostileCase {
	big := func(n int) string { return strings.Repeat("a", n) }
	jsonString := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	// A valid query of exactly n bytes.
	queryOf := func(n int) string { q := "vector(1)"; return q + strings.Repeat(" ", n-len(q)) }
	metrics := func(n int) string {
		var ms []string
		for i := range n {
			ms = append(ms, fmt.Sprintf(`{"name":"m%d","templateRef":{"name":"t"},"thresholdRange":{"min":1}}`, i))
		}
		return `{"spec":{"analysis":{"metrics":[` + strings.Join(ms, ",") + `]}}}`
	}
	variables := func(n int) string {
		var vs []string
		for i := range n {
			vs = append(vs, fmt.Sprintf(`"v%d":"x"`, i))
		}
		return `{"spec":{"analysis":{"metrics":[{"name":"m","templateRef":{"name":"t"},"thresholdRange":{"min":1},"templateVariables":{` + strings.Join(vs, ",") + `}}]}}}`
	}
	variable := func(v string) string {
		return `{"spec":{"analysis":{"metrics":[{"name":"m","templateRef":{"name":"t"},"thresholdRange":{"min":1},"templateVariables":{"job":` + jsonString(v) + `}}]}}}`
	}
	hook := func(url string) string {
		return `{"spec":{"analysis":{"webhooks":[{"name":"gate","type":"confirm-rollout","url":` + jsonString(url) + `}]}}}`
	}
	query := func(q string) string { return `{"spec":{"query":` + jsonString(q) + `}}` }
	header := func(v string) string {
		return `{"spec":{"service":{"headers":{"request":{"set":{"x-env":` + jsonString(v) + `}}}}}}`
	}
	return []hostileCase{
		// Empty.
		{name: "no spec", kind: "Canary", raw: `{}`, refused: []string{"spec", "Required value"}},
		{name: "empty spec", kind: "Canary", raw: `{"spec":{}}`, refused: []string{"spec.targetRef", "spec.service", "spec.analysis", "Required value"}},
		{name: "empty target name", kind: "Canary", patch: `{"spec":{"targetRef":{"name":""}}}`, refused: []string{"spec.targetRef.name", "at least 1 chars long"}},
		{name: "empty query", kind: "MetricTemplate", patch: query(""), refused: []string{"spec.query", "at least 1 chars long"}},
		{name: "blank query", kind: "MetricTemplate", patch: query(" \n\t "), refused: []string{"spec.query", "no expression found"}},
		{name: "empty MeshPolicy target", kind: "MeshPolicy", raw: `{"spec":{"targetRef":{}}}`, refused: []string{"spec.targetRef.name", "Required value"}},

		// Huge: at the limits, and one past them.
		{name: "query of 8192 bytes", kind: "MetricTemplate", patch: query(queryOf(8192))},
		{name: "query of 8193 bytes", kind: "MetricTemplate", patch: query(queryOf(8193)), refused: []string{"spec.query", "Too long", "8192"}},
		{name: "32 metrics", kind: "Canary", patch: metrics(32)},
		{name: "33 metrics", kind: "Canary", patch: metrics(33), refused: []string{"spec.analysis.metrics", "Too many: 33", "at most 32"}},
		{name: "32 template variables", kind: "Canary", patch: variables(32)},
		{name: "33 template variables", kind: "Canary", patch: variables(33), refused: []string{"templateVariables", "at most 32"}},
		{name: "template variable of 1024 bytes", kind: "Canary", patch: variable(big(1024))},
		{name: "template variable of 1025 bytes", kind: "Canary", patch: variable(big(1025)), refused: []string{"templateVariables", "values must be at most 1024 characters"}},
		{name: "webhook URL of 2049 bytes", kind: "Canary", patch: hook("https://hooks.example.com/" + big(2049-26)), refused: []string{"spec.analysis.webhooks[0].url", "Too long", "2048"}},
		{name: "annotation over 256 KiB", kind: "Canary", patch: `{"metadata":{"annotations":{"note":"` + big(256*1024+1) + `"}}}`, refused: []string{"metadata.annotations", "Too long", "262144"}},
		{name: "longest interval, 499995h", kind: "Canary", patch: `{"spec":{"analysis":{"interval":"` + strings.Repeat("99999h", 5) + `"}}}`},
		{name: "interval that would overflow", kind: "Canary", patch: `{"spec":{"analysis":{"interval":"` + strings.Repeat("99999h", 6) + `"}}}`, refused: []string{"spec.analysis.interval", "Too long"}},
		{name: "duration number of six digits", kind: "Canary", patch: `{"spec":{"analysis":{"interval":"999999h"}}}`, refused: []string{"spec.analysis.interval", "should match"}},
		{name: "target name of 56 characters", kind: "Canary", patch: `{"spec":{"targetRef":{"name":"` + big(56) + `"}}}`, refused: []string{"spec.targetRef.name", "Too long", "55"}},

		// Wrong types.
		{name: "port as a string", kind: "Canary", patch: `{"spec":{"service":{"port":"9898"}}}`, refused: []string{"spec.service.port", "must be of type integer"}},
		{name: "port as a fraction", kind: "Canary", patch: `{"spec":{"service":{"port":80.5}}}`, refused: []string{"spec.service.port", "must be of type integer"}},
		{name: "maxWeight past int32", kind: "Canary", patch: `{"spec":{"analysis":{"maxWeight":4294967296}}}`, refused: []string{"spec.analysis.maxWeight", "less than or equal to 100"}},
		{name: "stepWeights as a string", kind: "Canary", patch: `{"spec":{"analysis":{"stepWeight":null,"stepWeights":"10,20,50"}}}`, refused: []string{"spec.analysis.stepWeights", "must be of type array"}},
		{name: "metrics as an object", kind: "Canary", patch: `{"spec":{"analysis":{"metrics":{"name":"m"}}}}`, refused: []string{"spec.analysis.metrics", "must be of type array"}},
		{name: "template variable as a number", kind: "Canary", patch: `{"spec":{"analysis":{"metrics":[{"name":"m","templateRef":{"name":"t"},"thresholdRange":{"min":1},"templateVariables":{"job":1}}]}}}`, refused: []string{"templateVariables.job", "must be of type string"}},
		{name: "suspend as a string", kind: "Canary", patch: `{"spec":{"suspend":"yes"}}`, refused: []string{"spec.suspend", "must be of type boolean"}},
		{name: "analysis as null", kind: "Canary", raw: `{"spec":{"targetRef":{"name":"podinfo"},"service":{"port":9898},"analysis":null}}`, refused: []string{"spec.analysis", "Required value"}},
		{name: "query as an object", kind: "MetricTemplate", patch: `{"spec":{"query":{"promql":"up"}}}`, refused: []string{"spec.query", "must be of type string"}},
		{name: "mTLS mode in lower case", kind: "MeshPolicy", patch: `{"spec":{"mtls":{"mode":"strict"}}}`, refused: []string{"spec.mtls.mode", "Unsupported value", "STRICT"}},

		// Unicode.
		{name: "right-to-left override in the name", kind: "Canary", patch: `{"metadata":{"name":"podinfo\u202egnp"}}`, refused: []string{"metadata.name", "RFC 1123"}},
		{name: "zero-width space in the name", kind: "Canary", patch: `{"metadata":{"name":"pod\u200binfo"}}`, refused: []string{"metadata.name", "RFC 1123"}},
		{name: "zero-width joiner in a label value", kind: "Canary", patch: `{"metadata":{"labels":{"team":"pay\u200dments"}}}`, refused: []string{"metadata.labels", "Invalid value"}},
		{name: "emoji in a label key", kind: "Canary", patch: `{"metadata":{"labels":{"🦜":"x"}}}`, refused: []string{"metadata.labels", "Invalid value"}},
		{name: "Cyrillic homoglyph in the target name", kind: "Canary", patch: `{"spec":{"targetRef":{"name":"p\u043edinfo"}}}`, refused: []string{"spec.targetRef.name", "should match"}},
		{name: "Greek capital in a service host", kind: "Canary", patch: `{"spec":{"service":{"hosts":["\u0395xample.com"]}}}`, refused: []string{"spec.service.hosts[0]", "should match"}},
		{name: "right-to-left text and emoji in annotations", kind: "Canary", patch: `{"metadata":{"annotations":{"note":"\u202eevil\u202c 🦜 \u200b"}}}`},
		{name: "right-to-left text in a template variable", kind: "Canary", patch: variable("\u202epay\u200bments")},

		// Injection.
		{name: "shell in the name", kind: "Canary", patch: `{"metadata":{"name":"$(reboot)"}}`, refused: []string{"metadata.name", "RFC 1123"}},
		{name: "path traversal in a template reference", kind: "Canary", patch: `{"spec":{"analysis":{"metrics":[{"name":"m","templateRef":{"name":"../../secrets/x"},"thresholdRange":{"min":1}}]}}}`, refused: []string{"spec.analysis.metrics[0].templateRef.name", "should match"}},
		{name: "path traversal in a metric name", kind: "Canary", patch: `{"spec":{"analysis":{"metrics":[{"name":"../x","templateRef":{"name":"t"},"thresholdRange":{"min":1}}]}}}`, refused: []string{"spec.analysis.metrics[0].name", "should match"}},
		{name: "PromQL closing a label matcher in a template variable", kind: "Canary", patch: variable(`x"} or vector(1) or up{job="`)},
		{name: "template variable key that is no placeholder name", kind: "Canary", patch: `{"spec":{"analysis":{"metrics":[{"name":"m","templateRef":{"name":"t"},"thresholdRange":{"min":1},"templateVariables":{"job }}{{ namespace":"x"}}]}}}`, refused: []string{"templateVariables", "keys must be"}},
		{name: "opening braces in a query string", kind: "MetricTemplate", patch: query(`up{job="{{"}`), refused: []string{"spec.query", "malformed placeholder"}},
		{name: "closing braces in a query string", kind: "MetricTemplate", patch: query(`up{job="}}"}`)},
		{name: "closing braces after a placeholder", kind: "MetricTemplate", patch: query(`{{ variables.metric }}}}`), refused: []string{"spec.query", "parse error"}},
		{name: "Go template action in a query", kind: "MetricTemplate", patch: query(`up{job="{{ .Values.job }}"}`), refused: []string{"spec.query", "malformed placeholder"}},
		{name: "Go template pipeline in a query", kind: "MetricTemplate", patch: query(`up{job="{{ printf "%s" 1 }}"}`), refused: []string{"spec.query", "malformed placeholder"}},
		{name: "placeholder after a backslash", kind: "MetricTemplate", patch: query(`up{job="\{{ namespace }}"}`), refused: []string{"spec.query", "follows a backslash"}},
		{name: "CR LF in a header value", kind: "Canary", patch: header("prod\r\nx-admin: true"), refused: []string{"spec.service.headers.request.set[x-env]", "CR, LF"}},
		{name: "NUL in a header value", kind: "Canary", patch: header("prod\u0000"), refused: []string{"spec.service.headers.request.set[x-env]", "U+0000"}},
		{name: "space in a header name", kind: "Canary", patch: `{"spec":{"service":{"headers":{"request":{"set":{"x env":"1"}}}}}}`, refused: []string{"spec.service.headers.request.set[x env]", "not an HTTP header name"}},
		{name: "CR LF in a MeshPolicy route header", kind: "MeshPolicy", patch: `{"spec":{"routes":[{"name":"r","headers":{"response":{"add":{"set-cookie":"a=1\r\nx: y"}}}}]}}`, refused: []string{"spec.routes[0].headers.response.add[set-cookie]", "CR, LF"}},
		{name: "CR LF in a webhook URL", kind: "Canary", patch: hook("http://hooks.example.com/\r\nHost: evil"), refused: []string{"spec.analysis.webhooks[0].url", "not a URL"}},
		{name: "loopback as a single number in a webhook URL", kind: "Canary", patch: hook("http://2130706433:8080/"), refused: []string{"spec.analysis.webhooks[0].url", "form other than dotted decimal"}},
		{name: "IPv6 loopback in a webhook URL", kind: "Canary", patch: hook("http://[::1]/"), refused: []string{"spec.analysis.webhooks[0].url", "refused range ::1/128"}},
		{name: "javascript URL", kind: "Canary", patch: hook("javascript:alert(1)"), refused: []string{"spec.analysis.webhooks[0].url", "http:// or https://"}},
		{name: "CR LF in webhook metadata", kind: "Canary", patch: `{"spec":{"analysis":{"webhooks":[{"name":"gate","type":"confirm-rollout","url":"https://hooks.example.com/","metadata":{"note":"a\r\nX-Injected: 1"}}]}}}`},
	}
}

// TestHostileInputs writes every case through the apiserver: a refused one must be
// refused with its field and reason and leave nothing behind; the accepted ones are then
// reconciled, and must end with a status that explains them, with nothing generated (their
// target does not exist), no panic and the operator still running.
func TestHostileInputs(t *testing.T) {
	op := inprocess.Start(t, env, manager.Options{})
	ns := env.CreateNamespace(t)
	before := panics(t)

	var accepted []client.Object
	for i, tc := range hostileCases() {
		t.Run(tc.name, func(t *testing.T) {
			obj, err := build(tc, ns, fmt.Sprintf("%s-%d", strings.ToLower(tc.kind), i))
			if err != nil {
				t.Fatal(err)
			}
			err = env.Client.Create(t.Context(), obj)
			if len(tc.refused) == 0 {
				if err != nil {
					t.Fatalf("refused, want accepted: %v", err)
				}
				accepted = append(accepted, obj)
				return
			}
			if err == nil {
				t.Fatalf("accepted, want refused with %q", tc.refused)
			}
			if !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err) && !apierrors.IsForbidden(err) {
				t.Errorf("error %v is not a refusal of the object", err)
			}
			msg := err.Error()
			for _, want := range tc.refused {
				if !strings.Contains(msg, want) {
					t.Errorf("error does not say %q:\n%s", want, shorten(msg))
				}
			}
			if obj.GetName() != "" {
				if gerr := env.Client.Get(t.Context(), client.ObjectKeyFromObject(obj), obj); !apierrors.IsNotFound(gerr) {
					t.Errorf("the refused object exists: %v", gerr)
				}
			}
			t.Logf("refused: %s", shorten(msg))
		})
	}

	// The accepted Canaries name a Deployment that does not exist: each must say so in its
	// status, and nothing may have been generated for it.
	for _, obj := range accepted {
		c, ok := obj.(*unstructured.Unstructured)
		if !ok || c.GetKind() != "Canary" {
			continue
		}
		key := client.ObjectKeyFromObject(c)
		testenv.Eventually(t, time.Minute, func() error {
			var got meshv1.Canary
			if err := env.Client.Get(t.Context(), key, &got); err != nil {
				return err
			}
			ready := meta.FindStatusCondition(got.Status.Conditions, meshv1.ConditionReady)
			if ready == nil || ready.Reason != meshv1.ReasonTargetNotFound || !strings.Contains(ready.Message, "does not exist") {
				return fmt.Errorf("Canary %s: Ready = %+v, want False, %s", key.Name, ready, meshv1.ReasonTargetNotFound)
			}
			return nil
		})
	}
	assertNothingGenerated(t, ns)
	if err := op.Exited(); err != nil {
		t.Fatal(err)
	}
	if n := panics(t) - before; n != 0 {
		t.Errorf("%v panics recovered in reconcilers or webhooks", n)
	}
}

// build makes the case's object from its base and patch.
func build(tc hostileCase, ns, name string) (client.Object, error) {
	base := map[string]string{"Canary": baseCanary, "MetricTemplate": baseTemplate, "MeshPolicy": basePolicy}[tc.kind]
	doc := []byte(tc.raw)
	if tc.raw == "" {
		var err error
		if doc, err = jsonpatch.MergePatch([]byte(base), []byte(tc.patch)); err != nil {
			return nil, fmt.Errorf("patch %s: %w", tc.patch, err)
		}
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(withType(doc, tc.kind)); err != nil {
		return nil, fmt.Errorf("object %s: %w", doc, err)
	}
	u.SetNamespace(ns)
	if u.GetName() == "" {
		u.SetName(name)
	}
	return u, nil
}

func withType(doc []byte, kind string) []byte {
	var m map[string]any
	_ = json.Unmarshal(doc, &m)
	m["apiVersion"], m["kind"] = meshv1.GroupVersion.String(), kind
	out, _ := json.Marshal(m)
	return out
}

// assertNothingGenerated fails if any object canopy generates exists in ns.
func assertNothingGenerated(t *testing.T, ns string) {
	t.Helper()
	managed := client.MatchingLabels{meshv1.LabelManagedBy: meshv1.ManagedByValue}
	for _, list := range []client.ObjectList{&appsv1.DeploymentList{}, &corev1.ServiceList{}} {
		if err := env.Client.List(t.Context(), list, client.InNamespace(ns), managed); err != nil {
			t.Fatal(err)
		}
		if n := meta.LenList(list); n != 0 {
			t.Errorf("%d generated %T in %s", n, list, ns)
		}
	}
	for _, gvk := range []string{"VirtualServiceList", "DestinationRuleList"} {
		l := &unstructured.UnstructuredList{}
		l.SetAPIVersion("networking.istio.io/v1")
		l.SetKind(gvk)
		if err := env.Client.List(t.Context(), l, client.InNamespace(ns), managed); err != nil {
			t.Fatal(err)
		}
		if len(l.Items) != 0 {
			t.Errorf("%d generated %s in %s", len(l.Items), gvk, ns)
		}
	}
}

// shorten keeps an error readable when it quotes a huge value.
func shorten(s string) string {
	if len(s) <= 600 {
		return s
	}
	return s[:300] + fmt.Sprintf(" ...(%d bytes)... ", len(s)-600) + s[len(s)-300:]
}
