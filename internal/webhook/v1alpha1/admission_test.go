package v1alpha1_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/test/testenv"
)

// admissionCase is one object written through the apiserver and what the apiserver says.
type admissionCase struct {
	name string
	obj  func(ns string) client.Object
	// wantErr are substrings of the apiserver's error: the field and the reason. None
	// means the object is accepted.
	wantErr []string
}

func runAdmission(t *testing.T, tests []admissionCase) {
	t.Helper()
	ns := env.CreateNamespace(t)
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			obj := tc.obj(ns)
			if obj.GetName() == "" {
				obj.SetName(obj.GetGenerateName() + strconv.Itoa(i))
			}
			err := env.Client.Create(t.Context(), obj)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("refused, want accepted: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want refused with %q", tc.wantErr)
			}
			t.Logf("refused: %v", err)
			if !apierrors.IsInvalid(err) && !apierrors.IsForbidden(err) && !apierrors.IsBadRequest(err) {
				t.Errorf("error %v is not a refusal of the object (422/403/400)", err)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			// Nothing was written.
			if gerr := env.Client.Get(t.Context(), client.ObjectKeyFromObject(obj), obj); !apierrors.IsNotFound(gerr) {
				t.Errorf("the refused object exists: %v", gerr)
			}
		})
	}
}

func canary(mutate func(*meshv1.Canary)) func(ns string) client.Object {
	return func(ns string) client.Object {
		c := &meshv1.Canary{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "podinfo-", Namespace: ns},
			Spec: meshv1.CanarySpec{
				TargetRef: meshv1.TargetRef{Name: "podinfo"},
				Service:   meshv1.CanaryService{Port: 9898},
				Analysis:  meshv1.CanaryAnalysis{Interval: "1m", StepWeight: ptr.To[int32](10), MaxWeight: 50},
			},
		}
		mutate(c)
		if c.Name != "" {
			c.GenerateName = ""
		}
		return c
	}
}

// daemonSet makes the Canary's target a DaemonSet delivered blue/green (two iterations), then
// applies mutate.
func daemonSet(mutate func(*meshv1.Canary)) func(*meshv1.Canary) {
	return func(c *meshv1.Canary) {
		c.Spec.TargetRef.Kind = meshv1.KindDaemonSet
		c.Spec.Analysis.StepWeight, c.Spec.Analysis.Iterations = nil, ptr.To[int32](2)
		mutate(c)
		if len(c.Spec.Analysis.Steps) > 0 {
			c.Spec.Analysis.Iterations = nil
		}
	}
}

func withMetric(m meshv1.CanaryMetric) func(*meshv1.Canary) {
	return func(c *meshv1.Canary) {
		if m.ThresholdRange.Min == nil && m.ThresholdRange.Max == nil {
			m.ThresholdRange.Min = ptr.To(99.0)
		}
		c.Spec.Analysis.Metrics = append(c.Spec.Analysis.Metrics, m)
	}
}

// withCheck adds a check as it is, with no default range.
func withCheck(m meshv1.CanaryMetric) func(*meshv1.Canary) {
	return func(c *meshv1.Canary) { c.Spec.Analysis.Metrics = append(c.Spec.Analysis.Metrics, m) }
}

func withHook(h meshv1.CanaryWebhook) func(*meshv1.Canary) {
	return func(c *meshv1.Canary) {
		if h.Name == "" {
			h.Name = "gate"
		}
		if h.Type == "" {
			h.Type = meshv1.WebhookConfirmRollout
		}
		c.Spec.Analysis.Webhooks = append(c.Spec.Analysis.Webhooks, h)
	}
}

// TestCanaryAdmission: every kind of Canary the issue lists as refused is refused by the
// apiserver (schema, CEL or the webhook), naming the field and the reason.
func TestCanaryAdmission(t *testing.T) {
	startOperator(t, manager.Options{WebhookAllowedHosts: "hooks.ci.svc", WebhookAllowedCIDRs: "10.0.0.0/8", CredentialAllowedHosts: "prometheus.monitoring.svc"})
	runAdmission(t, []admissionCase{
		{name: "valid", obj: canary(func(*meshv1.Canary) {})},
		{name: "valid, with a template, a webhook to an allowed host and one to an allowed CIDR", obj: canary(func(c *meshv1.Canary) {
			withMetric(meshv1.CanaryMetric{Name: "errors", TemplateRef: &meshv1.TemplateRef{Name: "errors"}, Interval: "2m"})(c)
			withHook(meshv1.CanaryWebhook{URL: "https://hooks.ci.svc/gate"})(c)
			withHook(meshv1.CanaryWebhook{Name: "load", Type: meshv1.WebhookRollout, URL: "http://10.1.2.3:8080/load"})(c)
		})},

		// Deletion.
		{name: "revertOnDeletion (deprecated) with the default hand-over", obj: canary(func(c *meshv1.Canary) { c.Spec.RevertOnDeletion = true })},
		{name: "revertOnDeletion with deletionPolicy Orphan", obj: canary(func(c *meshv1.Canary) {
			c.Spec.RevertOnDeletion, c.Spec.DeletionPolicy = true, meshv1.DeletionOrphan
		}), wantErr: []string{"revertOnDeletion: true contradicts deletionPolicy: Orphan"}},
		{name: "unknown deletionPolicy", obj: canary(func(c *meshv1.Canary) { c.Spec.DeletionPolicy = "Revert" }),
			wantErr: []string{"spec.deletionPolicy", "Unsupported value"}},

		// Weights.
		{name: "stepWeight above 100", obj: canary(func(c *meshv1.Canary) { c.Spec.Analysis.StepWeight = ptr.To[int32](150) }),
			wantErr: []string{"spec.analysis.stepWeight", "less than or equal to 100"}},
		{name: "maxWeight 0", obj: canary(func(c *meshv1.Canary) { c.Spec.Analysis.MaxWeight = -1 }),
			wantErr: []string{"spec.analysis.maxWeight", "greater than or equal to 1"}},
		{name: "stepWeights not reaching maxWeight", obj: canary(func(c *meshv1.Canary) {
			c.Spec.Analysis.StepWeight, c.Spec.Analysis.StepWeights = nil, []int32{10, 20, 40}
		}), wantErr: []string{"spec.analysis", "the last stepWeights entry must equal maxWeight"}},
		{name: "stepWeights not increasing", obj: canary(func(c *meshv1.Canary) {
			c.Spec.Analysis.StepWeight, c.Spec.Analysis.StepWeights = nil, []int32{10, 30, 20, 50}
		}), wantErr: []string{"spec.analysis.stepWeights", "strictly increasing"}},

		// Explicit steps and gradual promotion.
		{name: "valid: steps of every kind and a gradual promotion", obj: canary(withSteps(
			meshv1.CanaryStep{SetCanaryScale: &meshv1.StepCanaryScale{Replicas: ptr.To[int32](1)}},
			meshv1.CanaryStep{SetWeight: ptr.To[int32](10)},
			meshv1.CanaryStep{Pause: &meshv1.StepPause{Duration: "30s"}},
			meshv1.CanaryStep{SetHeaderRoute: &meshv1.StepHeaderRoute{Match: []meshv1.HTTPMatch{{Headers: map[string]meshv1.StringMatch{"x-canary": {Exact: ptr.To("1")}}}}}},
			meshv1.CanaryStep{SetMirrorRoute: &meshv1.StepMirrorRoute{Percent: ptr.To[int32](20)}},
			meshv1.CanaryStep{Analysis: &meshv1.StepAnalysis{Intervals: 2}},
			meshv1.CanaryStep{Pause: &meshv1.StepPause{}},
			meshv1.CanaryStep{SetCanaryScale: &meshv1.StepCanaryScale{MatchTrafficWeight: true}},
		))},
		{name: "steps with stepWeight", obj: canary(func(c *meshv1.Canary) {
			withSteps(meshv1.CanaryStep{SetWeight: ptr.To[int32](10)})(c)
			c.Spec.Analysis.StepWeight = ptr.To[int32](10)
		}), wantErr: []string{"spec.analysis", "steps cannot be combined with stepWeight"}},
		{name: "a step with two fields", obj: canary(withSteps(meshv1.CanaryStep{SetWeight: ptr.To[int32](10), Pause: &meshv1.StepPause{}})),
			wantErr: []string{"spec.analysis.steps[0]", "a step sets exactly one of"}},
		{name: "setCanaryScale with replicas and weight", obj: canary(withSteps(meshv1.CanaryStep{SetCanaryScale: &meshv1.StepCanaryScale{Replicas: ptr.To[int32](1), Weight: ptr.To[int32](10)}})),
			wantErr: []string{"spec.analysis.steps[0].setCanaryScale", "exactly one of replicas, weight or matchTrafficWeight"}},
		{name: "pause below 1s", obj: canary(withSteps(meshv1.CanaryStep{Pause: &meshv1.StepPause{Duration: "10ms"}})),
			wantErr: []string{"spec.analysis.steps[0].pause", "duration must be at least 1s"}},
		{name: "header route with a bad regex", obj: canary(withSteps(meshv1.CanaryStep{SetHeaderRoute: &meshv1.StepHeaderRoute{Match: []meshv1.HTTPMatch{{URI: &meshv1.StringMatch{Regex: ptr.To("(")}}}}})),
			wantErr: []string{"spec.analysis.steps[0].setHeaderRoute.match[0].uri.regex"}},
		{name: "stepWeightPromotion 0", obj: canary(func(c *meshv1.Canary) { c.Spec.Analysis.StepWeightPromotion = ptr.To[int32](0) }),
			wantErr: []string{"spec.analysis.stepWeightPromotion", "greater than or equal to 1"}},

		// DaemonSet targets: blue/green only.
		{name: "valid: a DaemonSet delivered blue/green", obj: canary(daemonSet(func(c *meshv1.Canary) {}))},
		{name: "valid: a DaemonSet with steps of pauses, analysis and routes", obj: canary(daemonSet(withSteps(
			meshv1.CanaryStep{SetHeaderRoute: &meshv1.StepHeaderRoute{Match: []meshv1.HTTPMatch{{Headers: map[string]meshv1.StringMatch{"x-canary": {Exact: ptr.To("1")}}}}}},
			meshv1.CanaryStep{Analysis: &meshv1.StepAnalysis{Intervals: 2}},
			meshv1.CanaryStep{Pause: &meshv1.StepPause{}},
		)))},
		{name: "a DaemonSet with stepWeight", obj: canary(func(c *meshv1.Canary) { c.Spec.TargetRef.Kind = meshv1.KindDaemonSet }),
			wantErr: []string{"spec.analysis.stepWeight", "a DaemonSet target is delivered blue/green"}},
		{name: "a DaemonSet with stepWeights", obj: canary(func(c *meshv1.Canary) {
			c.Spec.TargetRef.Kind = meshv1.KindDaemonSet
			c.Spec.Analysis.StepWeight, c.Spec.Analysis.StepWeights = nil, []int32{10, 50}
		}), wantErr: []string{"spec.analysis.stepWeights", "is not supported"}},
		{name: "a DaemonSet with setWeight and setCanaryScale steps", obj: canary(daemonSet(withSteps(
			meshv1.CanaryStep{Pause: &meshv1.StepPause{}},
			meshv1.CanaryStep{SetWeight: ptr.To[int32](10)},
			meshv1.CanaryStep{SetCanaryScale: &meshv1.StepCanaryScale{Replicas: ptr.To[int32](1)}},
		))), wantErr: []string{"spec.analysis.steps[1].setWeight", "spec.analysis.steps[2].setCanaryScale", "is not supported"}},
		{name: "a DaemonSet promoted gradually", obj: canary(daemonSet(func(c *meshv1.Canary) { c.Spec.Analysis.StepWeightPromotion = ptr.To[int32](20) })),
			wantErr: []string{"spec.analysis.stepWeightPromotion", "is not supported"}},
		{name: "a DaemonSet with an autoscaler", obj: canary(daemonSet(func(c *meshv1.Canary) {
			c.Spec.AutoscalerRef = &meshv1.AutoscalerRef{Name: "podinfo-hpa"}
		})), wantErr: []string{"spec.autoscalerRef", "has no autoscaler"}},
		{name: "an unknown target kind", obj: canary(func(c *meshv1.Canary) { c.Spec.TargetRef.Kind = "StatefulSet" }),
			wantErr: []string{"spec.targetRef.kind", "Unsupported value"}},

		// Durations.
		{name: "interval that does not parse", obj: canary(func(c *meshv1.Canary) { c.Spec.Analysis.Interval = "1 minute" }),
			wantErr: []string{"spec.analysis.interval"}},
		{name: "metric interval that overflows", obj: canary(withMetric(meshv1.CanaryMetric{Name: "request-success-rate", Interval: "9999999999999h"})),
			wantErr: []string{"spec.analysis.metrics[0].interval", "should match"}},
		{name: "metric interval below 1s", obj: canary(withMetric(meshv1.CanaryMetric{Name: "request-success-rate", Interval: "500ms"})),
			wantErr: []string{"spec.analysis.metrics[0].interval", "interval must be at least 1s"}},
		{name: "hold timeout below 1s", obj: canary(withMetric(meshv1.CanaryMetric{Name: "request-success-rate", HoldTimeout: "10ms"})),
			wantErr: []string{"spec.analysis.metrics[0].holdTimeout", "holdTimeout must be at least 1s"}},
		{name: "webhook timeout below 100ms", obj: canary(withHook(meshv1.CanaryWebhook{URL: "https://hooks.ci.svc/", Timeout: "1ms"})),
			wantErr: []string{"spec.analysis.webhooks[0].timeout", "timeout must be between 100ms and 10m"}},
		{name: "route timeout below 1ms", obj: canary(func(c *meshv1.Canary) { c.Spec.Service.Timeout = "10us" }),
			wantErr: []string{"spec.service.timeout", "must be at least 1ms"}},
		{name: "provider timeout that does not parse", obj: canary(func(c *meshv1.Canary) {
			c.Spec.Analysis.Provider = &meshv1.MetricProvider{Timeout: "99999999999999999h"}
		}), wantErr: []string{"spec.analysis.provider.timeout", "should match"}},

		// How a check judges its value.
		{name: "valid: pod-restarts with its default range", obj: canary(withCheck(meshv1.CanaryMetric{Name: "pod-restarts"}))},
		{name: "valid: CEL conditions and limits", obj: canary(withCheck(meshv1.CanaryMetric{Name: "request-success-rate",
			SuccessCondition: "result >= 99.0", FailureCondition: "result < 90", FailureLimit: ptr.To[int32](2),
			ConsecutiveErrorLimit: ptr.To[int32](3), InconclusiveLimit: ptr.To[int32](1)}))},
		{name: "valid: a dry-run check", obj: canary(withMetric(meshv1.CanaryMetric{Name: "request-duration", DryRun: true}))},
		{name: "check with no range and no condition", obj: canary(withCheck(meshv1.CanaryMetric{Name: "request-duration"})),
			wantErr: []string{"spec.analysis.metrics[0]", "set thresholdRange, successCondition or failureCondition"}},
		{name: "check with a range and a condition", obj: canary(withCheck(meshv1.CanaryMetric{Name: "request-duration",
			ThresholdRange: meshv1.ThresholdRange{Max: ptr.To(500.0)}, SuccessCondition: "result < 500"})),
			wantErr: []string{"spec.analysis.metrics[0]", "not both"}},
		{name: "successCondition that does not parse", obj: canary(withCheck(meshv1.CanaryMetric{Name: "request-duration", SuccessCondition: "result <"})),
			wantErr: []string{"spec.analysis.metrics[0].successCondition", "not a valid CEL expression"}},
		{name: "failureCondition over an unknown variable", obj: canary(withCheck(meshv1.CanaryMetric{Name: "request-duration", FailureCondition: "latency > 500"})),
			wantErr: []string{"spec.analysis.metrics[0].failureCondition", "undeclared reference"}},
		{name: "condition that is not a bool", obj: canary(withCheck(meshv1.CanaryMetric{Name: "request-duration", SuccessCondition: "result * 2.0"})),
			wantErr: []string{"spec.analysis.metrics[0].successCondition", "must return a bool"}},
		{name: "condition too costly", obj: canary(withCheck(meshv1.CanaryMetric{Name: "request-duration",
			SuccessCondition: "[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, [1,2,3,4,5,6,7,8,9,10].all(d, a+b+c+d > 0))))"})),
			wantErr: []string{"spec.analysis.metrics[0].successCondition", "estimated cost"}},
		{name: "negative failureLimit", obj: canary(withMetric(meshv1.CanaryMetric{Name: "request-duration", FailureLimit: ptr.To[int32](-1)})),
			wantErr: []string{"spec.analysis.metrics[0].failureLimit", "greater than or equal to 0"}},

		// Target.
		{name: "targetRef of a StatefulSet", obj: canary(func(c *meshv1.Canary) { c.Spec.TargetRef.Kind = "StatefulSet" }),
			wantErr: []string{"spec.targetRef.kind", `Unsupported value: "StatefulSet"`}},
		{name: "targetRef of another API group", obj: canary(func(c *meshv1.Canary) { c.Spec.TargetRef.APIVersion = "argoproj.io/v1alpha1" }),
			wantErr: []string{"spec.targetRef.apiVersion", "Unsupported value"}},

		// References to other namespaces.
		{name: "MetricTemplate in another namespace", obj: canary(withMetric(meshv1.CanaryMetric{Name: "errors", TemplateRef: &meshv1.TemplateRef{Name: "errors", Namespace: "monitoring"}})),
			wantErr: []string{"spec.analysis.metrics[0].templateRef.namespace", "--allow-cross-namespace-refs"}},

		// Webhook URLs.
		{name: "webhook to loopback", obj: canary(withHook(meshv1.CanaryWebhook{URL: "http://127.0.0.1:8080/gate"})),
			wantErr: []string{"spec.analysis.webhooks[0].url", "refused range 127.0.0.0/8"}},
		{name: "webhook to the metadata service", obj: canary(withHook(meshv1.CanaryWebhook{URL: "http://169.254.169.254/latest/meta-data/"})),
			wantErr: []string{"spec.analysis.webhooks[0].url", "169.254.0.0/16"}},
		{name: "webhook to a host outside the allow-list", obj: canary(withHook(meshv1.CanaryWebhook{URL: "http://192.0.2.10/gate"})),
			wantErr: []string{"spec.analysis.webhooks[0].url", "neither an allowed host nor in an allowed CIDR"}},
		{name: "webhook with another scheme", obj: canary(withHook(meshv1.CanaryWebhook{URL: "gopher://hooks.ci.svc/"})),
			wantErr: []string{"spec.analysis.webhooks[0].url", "http:// or https://"}},
		{name: "webhook URL with credentials shows its origin alone", obj: canary(withHook(meshv1.CanaryWebhook{URL: "http://user:s3cret@127.0.0.1/hook?token=t0k3n"})),
			wantErr: []string{"spec.analysis.webhooks[0].url", `"http://127.0.0.1"`}},
		{name: "webhook to a private address outside the allowed CIDRs", obj: canary(withHook(meshv1.CanaryWebhook{URL: "http://192.168.1.10/gate"})),
			wantErr: []string{"spec.analysis.webhooks[0].url", "refused range 192.168.0.0/16 (private)"}},
		{name: "webhook header to a host credentials may not go to", obj: canary(withHook(meshv1.CanaryWebhook{URL: "https://hooks.ci.svc/gate",
			Header: &meshv1.WebhookHeader{Name: "Authorization", SecretKeyRef: meshv1.SecretKeyReference{Name: "ci", Key: "token"}}})),
			wantErr: []string{"spec.analysis.webhooks[0].header.secretKeyRef", "--credential-allowed-hosts"}},
		{name: "webhook header that sets the Host", obj: canary(withHook(meshv1.CanaryWebhook{URL: "https://hooks.ci.svc/gate",
			Header: &meshv1.WebhookHeader{Name: "host", SecretKeyRef: meshv1.SecretKeyReference{Name: "ci", Key: "token"}}})),
			wantErr: []string{"spec.analysis.webhooks[0].header.name", "set by canopy or the HTTP client"}},

		// Provider addresses and credentials.
		{name: "provider at the metadata service", obj: canary(func(c *meshv1.Canary) {
			c.Spec.Analysis.Provider = &meshv1.MetricProvider{Address: "http://169.254.169.254/latest/meta-data/"}
		}), wantErr: []string{"spec.analysis.provider.address", "refused range 169.254.0.0/16"}},
		{name: "provider at a private address", obj: canary(func(c *meshv1.Canary) {
			c.Spec.Analysis.Provider = &meshv1.MetricProvider{Address: "http://10.1.2.3:9090"}
		}), wantErr: []string{"spec.analysis.provider.address", "refused range 10.0.0.0/8 (private)"}},
		{name: "provider credentials to a host not allowed", obj: canary(func(c *meshv1.Canary) {
			c.Spec.Analysis.Provider = &meshv1.MetricProvider{Address: "https://prometheus.example.com", SecretRef: &meshv1.LocalObjectReference{Name: "prom"}}
		}), wantErr: []string{"spec.analysis.provider.secretRef", "not a host credentials may be sent to"}},
		{name: "provider credentials to an allowed host", obj: canary(func(c *meshv1.Canary) {
			c.Spec.Analysis.Provider = &meshv1.MetricProvider{Address: "https://prometheus.monitoring.svc", SecretRef: &meshv1.LocalObjectReference{Name: "prom"}}
		})},

		// What the renderer refuses.
		{name: "A/B match regex that does not compile", obj: canary(func(c *meshv1.Canary) {
			c.Spec.Analysis.StepWeight, c.Spec.Analysis.Iterations = nil, ptr.To[int32](5)
			c.Spec.Analysis.Match = []meshv1.HTTPMatch{{Headers: map[string]meshv1.StringMatch{"x-user": {Regex: ptr.To("(unclosed")}}}}
		}), wantErr: []string{"spec.analysis.match[0].headers[x-user].regex", "not a valid regular expression"}},
		{name: "header value with CR LF", obj: canary(func(c *meshv1.Canary) {
			c.Spec.Service.Headers = &meshv1.Headers{Request: &meshv1.HeaderOperations{Set: map[string]string{"x-env": "prod\r\nx-admin: true"}}}
		}), wantErr: []string{"spec.service.headers.request.set[x-env]", "CR, LF"}},
	})
	t.Run("no secret in the error", func(t *testing.T) {
		ns := env.CreateNamespace(t)
		err := env.Client.Create(t.Context(), canary(withHook(meshv1.CanaryWebhook{URL: "http://user:s3cret@127.0.0.1/"}))(ns))
		if err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Fatalf("error %v shows the URL's password", err)
		}
	})
}

// TestCanaryCrossNamespaceAllowed: with --allow-cross-namespace-refs the same Canary is
// accepted.
func TestCanaryCrossNamespaceAllowed(t *testing.T) {
	startOperator(t, manager.Options{AllowCrossNamespace: true})
	runAdmission(t, []admissionCase{
		{name: "MetricTemplate in another namespace", obj: canary(withMetric(meshv1.CanaryMetric{Name: "errors", TemplateRef: &meshv1.TemplateRef{Name: "errors", Namespace: "monitoring"}}))},
	})
}

// TestCanaryDefaultsAndWarnings: the defaulting webhook fills templateRef.namespace, and
// legal but suspicious settings come back as warnings.
func TestCanaryDefaultsAndWarnings(t *testing.T) {
	startOperator(t, manager.Options{})
	ns := env.CreateNamespace(t)
	c, w := env.WarningClient(t)
	obj := canary(func(c *meshv1.Canary) {
		withMetric(meshv1.CanaryMetric{Name: "errors", TemplateRef: &meshv1.TemplateRef{Name: "errors"}, HoldTimeout: "30s", Interval: "5m"})(c)
		withCheck(meshv1.CanaryMetric{Name: "request-success-rate", SuccessCondition: "result >= 99.0",
			InconclusiveLimit: ptr.To[int32](1), DryRun: true})(c)
		withCheck(meshv1.CanaryMetric{Name: "pod-restarts", MinRequests: ptr.To[int64](10)})(c)
		c.Spec.Analysis.Provider = &meshv1.MetricProvider{Address: "https://prometheus.example.com:9090", InsecureSkipVerify: true}
		c.Spec.SkipAnalysis = true
	})(ns).(*meshv1.Canary)
	if err := c.Create(t.Context(), obj); err != nil {
		t.Fatal(err)
	}
	if got := obj.Spec.Analysis.Metrics[0].TemplateRef.Namespace; got != ns {
		t.Errorf("templateRef.namespace = %q, want the Canary's namespace %q", got, ns)
	}
	for _, want := range []string{
		"spec.analysis.provider.insecureSkipVerify",
		"spec.skipAnalysis",
		"spec.analysis.metrics[0].holdTimeout: 30s is shorter than the check's interval 5m0s",
		"spec.analysis.metrics[1].inconclusiveLimit: only a check with both successCondition and failureCondition can be Inconclusive",
		"spec.analysis.metrics[1].dryRun: is true: the check never decides",
		"spec.analysis.metrics[2].minRequests: pod-restarts counts the canary's pods",
	} {
		if !slices.ContainsFunc(w.All(), func(s string) bool { return strings.HasPrefix(s, want) }) {
			t.Errorf("no warning starting %q in %q", want, w.All())
		}
	}

	// Steps that never run the checks, and a canary scale an autoscaler also sets.
	stepped := canary(func(c *meshv1.Canary) {
		withMetric(meshv1.CanaryMetric{Name: "request-success-rate"})(c)
		withSteps(meshv1.CanaryStep{SetCanaryScale: &meshv1.StepCanaryScale{Replicas: ptr.To[int32](1)}}, meshv1.CanaryStep{SetWeight: ptr.To[int32](20)})(c)
		c.Spec.AutoscalerRef = &meshv1.AutoscalerRef{Name: "podinfo"}
	})(ns)
	if err := c.Create(t.Context(), stepped); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"spec.analysis.steps: has no analysis step: the metrics and rollout webhooks of spec.analysis never run",
		"spec.analysis.steps[0].setCanaryScale: spec.autoscalerRef podinfo scales the canary too",
	} {
		if !slices.ContainsFunc(w.All(), func(s string) bool { return strings.HasPrefix(s, want) }) {
			t.Errorf("no warning starting %q in %q", want, w.All())
		}
	}

	// A change of metadata alone is never refused, even of an object the webhook would
	// refuse now, and neither is the removal of a finalizer from an object being deleted.
	obj.Finalizers = []string{"example.com/hold"}
	if err := c.Update(t.Context(), obj); err != nil {
		t.Fatalf("adding a finalizer: %v", err)
	}
	if err := c.Delete(t.Context(), obj); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(obj), obj); err != nil {
		t.Fatal(err)
	}
	obj.Finalizers = nil
	if err := c.Update(t.Context(), obj); err != nil {
		t.Fatalf("removing the finalizer of a Canary being deleted: %v", err)
	}
}

func metricTemplate(query string) func(ns string) client.Object {
	return func(ns string) client.Object {
		return &meshv1.MetricTemplate{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "errors-", Namespace: ns},
			Spec:       meshv1.MetricTemplateSpec{Query: query},
		}
	}
}

// TestMetricTemplateAdmission: a query that does not render or does not parse is refused
// with the parser's message and position.
func TestMetricTemplateAdmission(t *testing.T) {
	startOperator(t, manager.Options{})
	runAdmission(t, []admissionCase{
		{name: "valid", obj: metricTemplate(`sum(rate(http_requests_total{namespace="{{ namespace }}",job="{{ variables.job }}"}[{{ interval }}]))`)},
		{name: "unbalanced parenthesis", obj: metricTemplate(`sum(rate(http_requests_total[5m])`),
			wantErr: []string{"spec.query", "not valid PromQL", "1:", "parse error", "unclosed left parenthesis"}},
		{name: "unknown function", obj: metricTemplate(`histogram_quantle(0.99, x)`),
			wantErr: []string{"spec.query", `unknown function with name "histogram_quantle"`}},
		{name: "unknown placeholder", obj: metricTemplate(`up{job="{{ job }}"}`),
			wantErr: []string{"spec.query", "does not render", "unknown placeholder {{ job }}"}},
		{name: "provider timeout below the floor", obj: func(ns string) client.Object {
			mt := metricTemplate("up")(ns).(*meshv1.MetricTemplate)
			mt.Spec.Provider.Timeout = "1ms"
			return mt
		}, wantErr: []string{"spec.provider.timeout", "timeout must be at least 100ms"}},
		{name: "provider on loopback", obj: func(ns string) client.Object {
			mt := metricTemplate("up")(ns).(*meshv1.MetricTemplate)
			mt.Spec.Provider.Address = "http://127.0.0.1:6443"
			return mt
		}, wantErr: []string{"spec.provider.address", "refused range 127.0.0.0/8 (loopback)"}},
		{name: "allowed namespaces that are no names", obj: func(ns string) client.Object {
			mt := metricTemplate("up")(ns).(*meshv1.MetricTemplate)
			mt.Spec.AllowedNamespaces = []string{"team-a", "Team B"}
			return mt
		}, wantErr: []string{"spec.allowedNamespaces[1]", "should match"}},
	})
}

func meshPolicy(mutate func(*meshv1.MeshPolicy)) func(ns string) client.Object {
	return func(ns string) client.Object {
		p := &meshv1.MeshPolicy{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "reviews-", Namespace: ns},
			Spec:       meshv1.MeshPolicySpec{TargetRef: meshv1.ServiceRef{Name: "reviews"}},
		}
		mutate(p)
		return p
	}
}

// TestMeshPolicyAdmission: a MeshPolicy that contradicts itself is refused, naming both
// sides where there are two.
func TestMeshPolicyAdmission(t *testing.T) {
	startOperator(t, manager.Options{AllowedExternalHosts: "*.example.com"})
	external := func(x meshv1.ExternalService) func(*meshv1.MeshPolicy) {
		return func(p *meshv1.MeshPolicy) { p.Spec.ExternalServices = append(p.Spec.ExternalServices, x) }
	}
	runAdmission(t, []admissionCase{
		{name: "valid", obj: meshPolicy(func(p *meshv1.MeshPolicy) { p.Spec.MTLS = &meshv1.MTLS{Mode: meshv1.MTLSStrict} })},
		{name: "defaultDeny with action DENY", obj: meshPolicy(func(p *meshv1.MeshPolicy) {
			p.Spec.Authorization = &meshv1.Authorization{Action: "DENY", DefaultDeny: true,
				Rules: []meshv1.AuthorizationRule{{From: []meshv1.AuthorizationSource{{Namespaces: []string{"a"}}}}}}
		}), wantErr: []string{"spec.authorization", "defaultDeny only makes sense with action ALLOW"}},
		{name: "STATIC resolution without endpoints", obj: meshPolicy(external(meshv1.ExternalService{Name: "api", Hosts: []string{"api.example.com"},
			Resolution: "STATIC", Ports: []meshv1.ExternalPort{{Number: 443, Protocol: "HTTPS"}}})),
			wantErr: []string{"spec.externalServices[0].resolution", "STATIC needs endpoints"}},
		{name: "TLS origination without a TLS port", obj: meshPolicy(external(meshv1.ExternalService{Name: "api", Hosts: []string{"api.example.com"},
			Ports: []meshv1.ExternalPort{{Number: 80, Protocol: "HTTP"}}, TLSOrigination: &meshv1.TLSOrigination{Port: 80}})),
			wantErr: []string{"spec.externalServices[0].tlsOrigination", "needs a port with protocol HTTPS or TLS"}},
		{name: "wildcard host resolved by DNS", obj: meshPolicy(external(meshv1.ExternalService{Name: "api", Hosts: []string{"*.example.com"},
			Ports: []meshv1.ExternalPort{{Number: 443, Protocol: "TLS"}}})),
			wantErr: []string{"spec.externalServices[0].hosts[0]", "wildcard host cannot be resolved by DNS"}},
		{name: "two routes of one name", obj: meshPolicy(func(p *meshv1.MeshPolicy) {
			p.Spec.Routes = []meshv1.Route{
				{Name: "api", Match: &meshv1.HTTPMatch{URI: &meshv1.StringMatch{Prefix: ptr.To("/a")}}},
				{Name: "api", Match: &meshv1.HTTPMatch{URI: &meshv1.StringMatch{Prefix: ptr.To("/b")}}},
			}
		}), wantErr: []string{"spec.routes", `route name "api" is used twice`}},
		{name: "a route regex that does not compile", obj: meshPolicy(func(p *meshv1.MeshPolicy) {
			p.Spec.Routes = []meshv1.Route{{Name: "api", Match: &meshv1.HTTPMatch{URI: &meshv1.StringMatch{Regex: ptr.To("a(b")}}}}
		}), wantErr: []string{"spec.routes[0].match.uri.regex", "not a valid regular expression"}},
		{name: "the same mTLS port twice", obj: meshPolicy(func(p *meshv1.MeshPolicy) {
			p.Spec.MTLS = &meshv1.MTLS{Mode: meshv1.MTLSStrict, PortLevel: []meshv1.PortMTLS{{Port: 8080, Mode: meshv1.MTLSDisable}, {Port: 8080, Mode: meshv1.MTLSPermissive}}}
		}), wantErr: []string{"spec.mtls.portLevel", "8080"}},
		{name: "a rollout provider on loopback, a window under a second", obj: meshPolicy(func(p *meshv1.MeshPolicy) {
			p.Spec.Rollout = &meshv1.PolicyRollout{Window: "500ms", Provider: &meshv1.MetricProvider{Address: "http://127.0.0.1:9090"}}
		}), wantErr: []string{"spec.rollout.provider.address", "refused range 127.0.0.0/8 (loopback)", "spec.rollout.window", "shorter than 1s"}},
	})
}

// TestTenancyAdmission: with the operator's defaults, whatever claims more than its
// namespace is refused (a Forbidden field error naming the field and the flag that would
// allow it), and what stays in it is admitted.
func TestTenancyAdmission(t *testing.T) {
	startOperator(t, manager.Options{})
	ingress := func(gwNS string, tls *meshv1.IngressTLS, hosts ...string) func(*meshv1.MeshPolicy) {
		return func(p *meshv1.MeshPolicy) {
			p.Spec.Ingress = &meshv1.Ingress{Gateway: meshv1.IngressGateway{Namespace: gwNS, Selector: map[string]string{"istio": "ingressgateway"}}, Hosts: hosts, TLS: tls}
		}
	}
	clusterIssuer := &meshv1.IngressTLS{IssuerRef: meshv1.IssuerRef{Kind: "ClusterIssuer", Name: "letsencrypt"}}
	issuer := &meshv1.IngressTLS{IssuerRef: meshv1.IssuerRef{Kind: "Issuer", Name: "ca"}}
	own := func(p *meshv1.MeshPolicy) {
		ingress("", issuer, "reviews."+p.Namespace+".svc.cluster.local")(p)
	}
	runAdmission(t, []admissionCase{
		{name: "ingress of the namespace's own names, an Issuer of the namespace", obj: meshPolicy(own)},
		{name: "ingress on another namespace's gateway", obj: meshPolicy(ingress("istio-system", nil, "shop.example.com")),
			wantErr: []string{"spec.ingress.gateway.namespace", `"istio-system" is another namespace`, "--allowed-gateway-namespaces", "spec.ingress.hosts[0]", "--allowed-hosts"}},
		{name: "a certificate from a ClusterIssuer", obj: meshPolicy(ingress("", clusterIssuer, "shop.example.com")),
			wantErr: []string{"spec.ingress.tls.issuerRef.name", `ClusterIssuer "letsencrypt"`, "--allowed-cluster-issuers: none"}},
		{name: "an Issuer of the gateway's namespace", obj: meshPolicy(ingress("istio-system", issuer, "shop.example.com")),
			wantErr: []string{"spec.ingress.tls.issuerRef.kind", "an Issuer is read in the Certificate's namespace"}},
		{name: "a short ingress host", obj: meshPolicy(ingress("", nil, "reviews")),
			wantErr: []string{"spec.ingress.hosts[0]", `"reviews" is not fully qualified`}},
		{name: "an external service", obj: meshPolicy(func(p *meshv1.MeshPolicy) {
			p.Spec.ExternalServices = []meshv1.ExternalService{{Name: "api", Hosts: []string{"api.example.com"}, Ports: []meshv1.ExternalPort{{Number: 443, Protocol: "TLS"}}}}
		}), wantErr: []string{"spec.externalServices[0].hosts[0]", "--allowed-external-hosts"}},
		{name: "a Canary routing its own Service's names", obj: canary(func(c *meshv1.Canary) {
			c.Spec.Service.Hosts = []string{"podinfo." + c.Namespace, "podinfo." + c.Namespace + ".svc.cluster.local"}
			c.Spec.Service.Gateways = []string{"local-gateway", c.Namespace + "/other"}
		})},
		{name: "a Canary routing another namespace's host and every Service", obj: canary(func(c *meshv1.Canary) {
			c.Spec.Service.Hosts = []string{"reviews.bookinfo.svc.cluster.local", "*.svc.cluster.local"}
		}), wantErr: []string{"spec.service.hosts[0]", "spec.service.hosts[1]", `"*.svc.cluster.local" is not a name of this namespace's Services`}},
		{name: "a Canary bound to another namespace's gateway", obj: canary(func(c *meshv1.Canary) {
			c.Spec.Service.Gateways = []string{"istio-system/public"}
		}), wantErr: []string{"spec.service.gateways[0]", `a gateway of namespace "istio-system"`}},
	})
}

// TestSamplesAdmitted: every Canary, MeshPolicy and MetricTemplate of config/samples passes
// the schema and the webhooks (a dry run), so the checks refuse nothing the documentation
// shows.
func TestSamplesAdmitted(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	// What the shop sample claims beyond its namespace (docs/security.md), given here to
	// the namespace the samples are admitted in.
	startOperator(t, manager.Options{
		AllowedGatewayNamespaces: "istio-system", AllowedClusterIssuers: "shop-ca",
		AllowedHosts: ns + ":shop.example.com", AllowedExternalHosts: ns + ":api.card-processor.example.com",
	})
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, "config", "samples", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples: %v", err)
	}
	seen := 0
	for _, file := range files {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
		for {
			u := &unstructured.Unstructured{}
			if err := dec.Decode(&u.Object); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				t.Fatalf("%s: %v", file, err)
			}
			if u.GroupVersionKind().Group != meshv1.GroupVersion.Group {
				continue
			}
			seen++
			u.SetNamespace(ns)
			if err := env.Client.Create(t.Context(), u, client.DryRunAll); err != nil {
				t.Errorf("%s: %s %s refused: %v", filepath.Base(file), u.GetKind(), u.GetName(), err)
			}
		}
		_ = f.Close()
	}
	if seen == 0 {
		t.Fatal("no canopy objects in config/samples")
	}
	t.Logf("%d samples admitted", seen)
}

// withSteps replaces the Canary's stepWeight with explicit steps.
func withSteps(steps ...meshv1.CanaryStep) func(*meshv1.Canary) {
	return func(c *meshv1.Canary) {
		c.Spec.Analysis.StepWeight, c.Spec.Analysis.StepWeights = nil, nil
		c.Spec.Analysis.Steps = steps
	}
}
