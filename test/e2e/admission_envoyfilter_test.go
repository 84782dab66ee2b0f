package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
	networking "istio.io/api/networking/v1alpha3"
	istionetv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/test/testenv"
)

// TestAdmissionPolicyConfinesEnvoyFilters: under the optional admission policy, canopy's
// identity (bound to exactly the generated ClusterRole) may write the rate limit
// EnvoyFilter canopy renders, and no EnvoyFilter without a workload selector or patching
// anything else, labelled as canopy's or not.
func TestAdmissionPolicyConfinesEnvoyFilters(t *testing.T) {
	testenv.SkipIfShort(t)
	opNS, sa, cfg := serviceAccount(t)
	bindClusterRole(t, "role.yaml", "canopy-manager-"+opNS, sa)
	installAdmissionPolicy(t, opNS, sa.Name)
	ns := env.CreateNamespace(t)
	as, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "catalog"},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "catalog"}, Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}},
	}
	p := &meshv1.MeshPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "catalog"}}
	p.Spec.TargetRef.Name = "catalog"
	p.Spec.RateLimit = &meshv1.RateLimit{Requests: 5, Interval: "1s"}
	set, err := render.MeshPolicyObjects(p, svc, render.MeshPolicyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	good := set.EnvoyFilters[0]

	refused := func(name string, change func(ef *istionetv1alpha3.EnvoyFilter)) func() error {
		return func() error {
			ef := good.DeepCopy()
			ef.Name = name
			change(ef)
			err := as.Create(t.Context(), ef)
			if err == nil {
				_ = env.Client.Delete(t.Context(), ef)
				return fmt.Errorf("EnvoyFilter %s was created as canopy", name)
			}
			if !strings.Contains(err.Error(), "only EnvoyFilters that select workloads and insert the local rate limit filter") {
				return fmt.Errorf("refused, but not by the policy: %w", err)
			}
			return nil
		}
	}
	// The policy reaches the apiserver's admission within seconds.
	testenv.Eventually(t, 30*time.Second, refused("no-selector", func(ef *istionetv1alpha3.EnvoyFilter) { ef.Spec.WorkloadSelector = nil }))
	for name, change := range map[string]func(ef *istionetv1alpha3.EnvoyFilter){
		"empty-selector": func(ef *istionetv1alpha3.EnvoyFilter) { ef.Spec.WorkloadSelector.Labels = nil },
		"lua": func(ef *istionetv1alpha3.EnvoyFilter) {
			ef.Spec.ConfigPatches[0].Patch.Value.Fields["name"] = structpb.NewStringValue("envoy.filters.http.lua")
		},
		"outbound": func(ef *istionetv1alpha3.EnvoyFilter) {
			ef.Spec.ConfigPatches[0].Match.Context = networking.EnvoyFilter_SIDECAR_OUTBOUND
		},
		"cluster": func(ef *istionetv1alpha3.EnvoyFilter) {
			ef.Spec.ConfigPatches[0].ApplyTo = networking.EnvoyFilter_CLUSTER
		},
		"second-patch": func(ef *istionetv1alpha3.EnvoyFilter) {
			extra := good.Spec.ConfigPatches[0].DeepCopy()
			extra.Patch.Operation = networking.EnvoyFilter_Patch_REMOVE
			ef.Spec.ConfigPatches = append(ef.Spec.ConfigPatches, extra)
		},
	} {
		if err := refused(name, change)(); err != nil {
			t.Error(err)
		}
	}
	// What canopy renders goes through.
	if err := as.Create(t.Context(), good); err != nil {
		t.Fatalf("the rendered EnvoyFilter was refused: %v", err)
	}
}
