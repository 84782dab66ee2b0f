package controllers

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	webhookv1 "canopy.dev/canopy/internal/webhook/v1alpha1"
	"canopy.dev/canopy/test/testenv"
)

// A MetricTemplate's Ready condition says whether the admission webhook's checks pass for the
// template as stored (this test's cluster runs no webhook, like one where it was not serving
// when the template was written), naming the field at fault, for the generation it judged.
func TestAMetricTemplateReportsWhetherItIsValid(t *testing.T) {
	testenv.SkipIfShort(t)
	ctx := t.Context()
	ns := env.CreateNamespace(t)
	r := &MetricTemplateReconciler{Client: env.Client, Validator: webhookv1.NewMetricTemplateValidator(nil, nil)}
	template := func(name, address, query string) *meshv1.MetricTemplate {
		return &meshv1.MetricTemplate{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       meshv1.MetricTemplateSpec{Provider: meshv1.MetricProvider{Address: address}, Query: query},
		}
	}
	const good = `sum(rate(istio_requests_total{destination_workload="{{ target }}",response_code!~"5.*"}[{{ interval }}]))`
	judge := func(tmpl *meshv1.MetricTemplate) *metav1.Condition {
		t.Helper()
		if _, err := r.Reconcile(ctx, reconcileRequest(ns, tmpl.Name)); err != nil {
			t.Fatal(err)
		}
		got := &meshv1.MetricTemplate{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(tmpl), got); err != nil {
			t.Fatal(err)
		}
		c := meta.FindStatusCondition(got.Status.Conditions, meshv1.ConditionReady)
		if c == nil || c.ObservedGeneration != got.Generation || got.Status.ObservedGeneration != got.Generation {
			t.Fatalf("MetricTemplate %s: Ready %+v, status.observedGeneration %d, generation %d", tmpl.Name, c, got.Status.ObservedGeneration, got.Generation)
		}
		t.Logf("%s: Ready %s/%s %q", tmpl.Name, c.Status, c.Reason, c.Message)
		return c
	}
	expect := func(c *metav1.Condition, status metav1.ConditionStatus, reason, contains string) {
		t.Helper()
		if c.Status != status || c.Reason != reason || !strings.Contains(c.Message, contains) {
			t.Fatalf("Ready %s/%s %q, want %s/%s containing %q", c.Status, c.Reason, c.Message, status, reason, contains)
		}
	}

	valid := template("success-rate", "", good)
	brokenQuery := template("broken", "", `sum(rate(istio_requests_total[{{ interval }}])`)
	metadata := template("metadata", "http://169.254.169.254/", good)
	for _, tmpl := range []*meshv1.MetricTemplate{valid, brokenQuery, metadata} {
		if err := env.Client.Create(ctx, tmpl); err != nil {
			t.Fatal(err)
		}
	}
	expect(judge(valid), metav1.ConditionTrue, meshv1.ReasonValid, "")
	expect(judge(brokenQuery), metav1.ConditionFalse, meshv1.ReasonInvalidSpec, "spec.query: ")
	expect(judge(metadata), metav1.ConditionFalse, meshv1.ReasonInvalidSpec, "spec.provider.address: ")

	// Fixed, it is judged again for the new generation.
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(brokenQuery), brokenQuery); err != nil {
		t.Fatal(err)
	}
	brokenQuery.Spec.Query = good
	if err := env.Client.Update(ctx, brokenQuery); err != nil {
		t.Fatal(err)
	}
	expect(judge(brokenQuery), metav1.ConditionTrue, meshv1.ReasonValid, "")
}
