package render

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/progress"
)

func TestLongNamesFitLabelsAndNames(t *testing.T) {
	long := strings.Repeat("checkout-", 20) + "api"
	v := LabelValue(long)
	if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
		t.Errorf("LabelValue(%d chars) = %q: %v", len(long), v, errs)
	}
	if LabelValue(long) != v || LabelValue(long+"x") == v {
		t.Error("LabelValue is not stable and distinct")
	}
	if LabelValue("reviews") != "reviews" {
		t.Error("short values must be kept as they are")
	}

	p := paymentPolicy()
	p.Name = strings.Repeat("p", 253)
	p.Namespace = strings.Repeat("n", 63)
	for _, name := range []string{GatewayName(p), CertificateSecretName(p)} {
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			t.Errorf("%q: %v", name, errs)
		}
	}
	set, err := MeshPolicyObjects(p, func() *corev1Service {
		s := paymentService()
		s.Namespace = p.Namespace
		return s
	}(), MeshPolicyOptions{CertificateReady: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range set.Objects() {
		if errs := validation.IsDNS1123Subdomain(o.GetName()); len(errs) > 0 {
			t.Errorf("%s: %v", o.GetName(), errs)
		}
		if errs := validation.IsValidLabelValue(o.GetLabels()[meshv1.LabelOwnerName]); len(errs) > 0 {
			t.Errorf("owner label of %s: %v", o.GetName(), errs)
		}
	}
}

func TestHashAndToUnstructured(t *testing.T) {
	set := renderCanary(t, reviewsCanary(), progress.Routing{PrimaryWeight: 90, CanaryWeight: 10}, nil)
	h1, _ := Hash(set.VirtualService)
	set2 := renderCanary(t, reviewsCanary(), progress.Routing{PrimaryWeight: 80, CanaryWeight: 20}, nil)
	h2, _ := Hash(set2.VirtualService)
	if h1 == h2 {
		t.Error("different weights, same hash")
	}
	u, err := ToUnstructured(renderPrimary(t, reviewsCanary()))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := u.Object["status"]; ok {
		t.Error("status must not be sent")
	}
	if _, ok := u.Object["metadata"].(map[string]any)["creationTimestamp"]; ok {
		t.Error("null creationTimestamp must not be sent")
	}
	if r, ok := u.Object["spec"].(map[string]any)["replicas"].(int64); !ok || r != 3 {
		t.Errorf("replicas = %#v, want int64 3", u.Object["spec"].(map[string]any)["replicas"])
	}
	if u.GetKind() != "Deployment" || u.GetAPIVersion() != "apps/v1" {
		t.Errorf("TypeMeta lost: %s %s", u.GetAPIVersion(), u.GetKind())
	}
}
