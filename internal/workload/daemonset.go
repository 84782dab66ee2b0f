package workload

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// A Canary's target and primary are read as Deployments whatever their kind: a DaemonSet is
// seen through View, a Deployment that carries its pod template, selector and readiness, so
// that the progression, the renderer and the readiness checks have one code path. What
// differs is written back by kind: the primary (render.AsDaemonSet) and the canary's scale
// (Scale on a Deployment, Start or Stop on a DaemonSet).

// Lookup reads obj by key and reports whether it exists.
type Lookup func(ctx context.Context, key client.ObjectKey, obj client.Object) (bool, error)

// ReaderLookup is the Lookup of a client.Reader.
func ReaderLookup(r client.Reader) Lookup {
	return func(ctx context.Context, key client.ObjectKey, obj client.Object) (bool, error) {
		if err := r.Get(ctx, key, obj); err != nil {
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			return false, err
		}
		return true, nil
	}
}

// New returns an empty object of the kind (spec.targetRef.kind; empty is Deployment).
func New(kind string) client.Object {
	if kind == meshv1.KindDaemonSet {
		return &appsv1.DaemonSet{}
	}
	return &appsv1.Deployment{}
}

// Get reads the workload of the kind named key: the object as stored, and its View. Both
// are nil when it does not exist.
func Get(ctx context.Context, get Lookup, kind string, key client.ObjectKey) (*appsv1.Deployment, client.Object, error) {
	obj := New(kind)
	found, err := get(ctx, key, obj)
	if err != nil || !found {
		return nil, nil, err
	}
	return View(obj), obj, nil
}

// View is the Deployment a workload is read as: a Deployment itself, or a DaemonSet's
// template (without canopy's scale-to-zero node selector, which is no part of the user's
// revision), selector and readiness. A DaemonSet runs "replicas" as the nodes it is
// scheduled to (at least one, so that a DaemonSet no node runs is not ready), 0 while
// stopped. Nil for anything else.
func View(o client.Object) *appsv1.Deployment {
	switch w := o.(type) {
	case *appsv1.Deployment:
		return w
	case *appsv1.DaemonSet:
		return daemonSetView(w)
	}
	return nil
}

func daemonSetView(ds *appsv1.DaemonSet) *appsv1.Deployment {
	st := ds.Status
	replicas := max(st.DesiredNumberScheduled, 1)
	if Stopped(ds) {
		replicas = 0
	}
	tmpl := ds.Spec.Template.DeepCopy()
	delete(tmpl.Spec.NodeSelector, meshv1.LabelScaleToZero)
	if len(tmpl.Spec.NodeSelector) == 0 {
		tmpl.Spec.NodeSelector = nil
	}
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: *ds.ObjectMeta.DeepCopy(),
		Spec: appsv1.DeploymentSpec{
			Replicas:             &replicas,
			Selector:             ds.Spec.Selector.DeepCopy(),
			Template:             *tmpl,
			MinReadySeconds:      ds.Spec.MinReadySeconds,
			RevisionHistoryLimit: ds.Spec.RevisionHistoryLimit,
		},
		// Ready (ReadyAt) then means: the current spec observed, and every node it is
		// scheduled to runs an updated, ready pod.
		Status: appsv1.DeploymentStatus{
			ObservedGeneration: st.ObservedGeneration,
			Replicas:           st.DesiredNumberScheduled,
			UpdatedReplicas:    st.UpdatedNumberScheduled,
			ReadyReplicas:      st.NumberReady,
			AvailableReplicas:  min(st.NumberReady, st.NumberAvailable),
		},
	}
}

// Stopped says whether canopy's scale-to-zero node selector stops the DaemonSet's pods.
func Stopped(ds *appsv1.DaemonSet) bool {
	_, ok := ds.Spec.Template.Spec.NodeSelector[meshv1.LabelScaleToZero]
	return ok
}

// ScaleObject sets the canary's replicas on the workload as stored: a Deployment's count
// through its scale subresource; a DaemonSet is stopped at 0 and started at any other
// count. It does nothing when the workload already runs so.
func ScaleObject(ctx context.Context, c client.Client, o client.Object, replicas int32) error {
	switch w := o.(type) {
	case *appsv1.Deployment:
		return Scale(ctx, c, w, replicas)
	case *appsv1.DaemonSet:
		return setStopped(ctx, c, w, replicas == 0)
	}
	return fmt.Errorf("scaling %T %s: not a Deployment or DaemonSet", o, o.GetName())
}

// setStopped puts canopy's scale-to-zero node selector on the DaemonSet's pod template, or
// takes it away, by server-side apply under FieldManagerScaleToZero, so that a GitOps tool
// applying the user's DaemonSet as another manager does not remove it. A pod's nodeSelector
// is an atomic map: the manager that applies it owns all its keys. So the user's own keys
// are applied with canopy's (and kept when it goes): stopping and starting never change
// where the user's pods may run. When the user's DaemonSet has no node selector, canopy's
// manager is the field's only one, a sync of a DaemonSet without a nodeSelector does not
// touch it, and starting (applying nothing under that manager) removes the field.
func setStopped(ctx context.Context, c client.Client, ds *appsv1.DaemonSet, stop bool) error {
	if Stopped(ds) == stop {
		return nil
	}
	sel := map[string]string{}
	for k, v := range ds.Spec.Template.Spec.NodeSelector {
		if k != meshv1.LabelScaleToZero {
			sel[k] = v
		}
	}
	if stop {
		sel[meshv1.LabelScaleToZero] = "true"
	}
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("apps/v1")
	u.SetKind("DaemonSet")
	u.SetNamespace(ds.Namespace)
	u.SetName(ds.Name)
	if len(sel) > 0 {
		if err := unstructured.SetNestedStringMap(u.Object, sel, "spec", "template", "spec", "nodeSelector"); err != nil {
			return err
		}
	}
	if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(meshv1.FieldManagerScaleToZero), client.ForceOwnership); err != nil {
		verb := "starting"
		if stop {
			verb = "stopping"
		}
		return fmt.Errorf("%s DaemonSet %s: %w", verb, ds.Name, err)
	}
	// The answer is the DaemonSet after the write (its version, for apply.Writes).
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, ds); err != nil {
		return fmt.Errorf("reading the applied DaemonSet %s: %w", ds.Name, err)
	}
	return nil
}
