package v1alpha1

// The kinds of workload a Canary delivers (spec.targetRef.kind).
const (
	KindDeployment = "Deployment"
	KindDaemonSet  = "DaemonSet"
)

// LabelScaleToZero is the node selector canopy puts on a DaemonSet target's pod template to
// stop its pods (a DaemonSet has no replica count): no node carries it. It is written by
// server-side apply under its own field manager (FieldManagerScaleToZero) and removed the
// same way to start the canary again.
const LabelScaleToZero = "mesh.canopy.dev/scale-to-zero"

// FieldManagerScaleToZero is the field manager of LabelScaleToZero on a DaemonSet target.
const FieldManagerScaleToZero = "canopy-scale-to-zero"

// IsDaemonSet says whether the reference names a DaemonSet.
func (r TargetRef) IsDaemonSet() bool { return r.Kind == KindDaemonSet }

// KindOrDefault is the reference's kind, Deployment when it is unset.
func (r TargetRef) KindOrDefault() string {
	if r.Kind == "" {
		return KindDeployment
	}
	return r.Kind
}
