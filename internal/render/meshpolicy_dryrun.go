package render

import (
	"time"

	"google.golang.org/protobuf/proto"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// AnnotationDryRun is Istio's annotation that makes an AuthorizationPolicy evaluated and
// reported (Envoy's RBAC shadow rules) without being enforced.
const AnnotationDryRun = "istio.io/dry-run"

// DryRunSuffix ends the names of the dry-run copies of a MeshPolicy's AuthorizationPolicies.
const DryRunSuffix = "-dry-run"

// DryRunAuthorizationPolicies are copies of aps in Istio's dry-run mode, named with
// DryRunSuffix, to be applied beside the policies in force.
func DryRunAuthorizationPolicies(aps []*securityv1.AuthorizationPolicy) []*securityv1.AuthorizationPolicy {
	out := make([]*securityv1.AuthorizationPolicy, 0, len(aps))
	for _, ap := range aps {
		c := &securityv1.AuthorizationPolicy{TypeMeta: ap.TypeMeta, ObjectMeta: *ap.ObjectMeta.DeepCopy()}
		c.Name = limit(ap.Name+DryRunSuffix, maxObjectName)
		if c.Annotations == nil {
			c.Annotations = map[string]string{}
		}
		c.Annotations[AnnotationDryRun] = "true"
		proto.Merge(&c.Spec, &ap.Spec)
		out = append(out, c)
	}
	return out
}

// IsDryRun says whether an object carries Istio's dry-run annotation.
func IsDryRun(o metav1.Object) bool { return o.GetAnnotations()[AnnotationDryRun] == "true" }

// InForceAuthorizationPolicy is a copy of an AuthorizationPolicy read from the cluster,
// with only what canopy writes (name, namespace, labels, annotations, spec), to be applied
// again as it is: the rules in force while a change runs in dry-run.
func InForceAuthorizationPolicy(live *securityv1.AuthorizationPolicy) *securityv1.AuthorizationPolicy {
	c := &securityv1.AuthorizationPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: securityv1.SchemeGroupVersion.String(), Kind: "AuthorizationPolicy"},
		ObjectMeta: inForceMeta(live),
	}
	proto.Merge(&c.Spec, &live.Spec)
	return c
}

// InForcePeerAuthentication is InForceAuthorizationPolicy's PeerAuthentication.
func InForcePeerAuthentication(live *securityv1.PeerAuthentication) *securityv1.PeerAuthentication {
	c := &securityv1.PeerAuthentication{
		TypeMeta:   metav1.TypeMeta{APIVersion: securityv1.SchemeGroupVersion.String(), Kind: "PeerAuthentication"},
		ObjectMeta: inForceMeta(live),
	}
	proto.Merge(&c.Spec, &live.Spec)
	return c
}

// inForceMeta is what canopy writes of a live object's metadata: its name and canopy's
// owner labels. Annotations are not canopy's on these kinds: the applier's own digest
// (mesh.canopy.dev/applied-hash) among them would make every apply differ from the last,
// and other managers' keys are theirs.
func inForceMeta(live metav1.Object) metav1.ObjectMeta {
	labels := map[string]string{}
	for _, k := range []string{meshv1.LabelManagedBy, meshv1.LabelOwnerKind, meshv1.LabelOwnerName, meshv1.LabelOwnerNamespace} {
		if v, ok := live.GetLabels()[k]; ok {
			labels[k] = v
		}
	}
	return metav1.ObjectMeta{Name: live.GetName(), Namespace: live.GetNamespace(), Labels: labels}
}

// checkRollout checks spec.rollout's durations: at least a second each (Prometheus is
// asked every interval; a shorter window would have no scrape in it).
func (r *policyRenderer) checkRollout() {
	ro := r.p.Spec.Rollout
	if ro == nil {
		return
	}
	for _, f := range []struct {
		path string
		d    meshv1.Duration
	}{{"spec.rollout.window", ro.Window}, {"spec.rollout.interval", ro.Interval}} {
		if v := duration(r.e, f.path, f.d); v != nil && v.AsDuration() < time.Second {
			r.e.invalid(f.path, "%q is shorter than 1s", f.d)
		}
	}
}
