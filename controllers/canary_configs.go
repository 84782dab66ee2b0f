package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/internal/workload"
)

// The primary reads its own copies ("<name>-primary") of the ConfigMaps and Secrets its
// template reads, so that a change of one reaches the canary first, is analysed as a new
// revision, and reaches the primary only with the promotion; a rollback has nothing to undo.
// The copies are written only when the primary is (initializing, promoting, repairing).

// secretResync is how often an idle Canary whose target reads a Secret is looked at again.
// canopy watches no Secret (it would have to list and watch every Secret of the cluster): a
// Secret's change is seen by the next reconcile of its Canary, which this bounds for a
// Canary nothing else wakes. Each look costs one Get per Secret.
const secretResync = 5 * time.Minute

// configError is a config the primary cannot get a copy of; its reason is the condition's.
type configError struct {
	reason, message string
}

func (e *configError) Error() string { return e.message }

// reasonOf is the condition reason an error of a step reports.
func reasonOf(err error) string {
	var ce *configError
	if errors.As(err, &ce) {
		return ce.reason
	}
	return meshv1.ReasonApplyFailed
}

// primaryConfigs reads the configs the target's template reads and renders the primary's
// copies of them, all before anything is written. The configs must be the ones the
// decision's revision was computed from (s.tracked): one that changed since is a new
// revision, which must not slip into the primary with this one's promotion.
func (r *CanaryReconciler) primaryConfigs(ctx context.Context, s *canaryScope, repair bool) ([]workload.Config, []client.Object, error) {
	c, target := s.canary, s.target
	configs, err := workload.ReadConfigs(ctx, r.Client, c.Namespace, &target.Spec.Template.Spec)
	if err != nil {
		return nil, nil, err
	}
	if !slices.Equal(workload.Tracked(configs), s.tracked) {
		return nil, nil, fmt.Errorf("the ConfigMaps or Secrets Deployment %s reads changed during the reconcile: retrying with the new revision", target.Name)
	}
	var copies []client.Object
	for _, cfg := range configs {
		switch {
		case !cfg.Found && !cfg.Optional:
			return nil, nil, &configError{meshv1.ReasonConfigNotFound, fmt.Sprintf(
				"%s, read by Deployment %s, does not exist: the primary is not written until it does", cfg.ConfigRef, target.Name)}
		case cfg.Kind == workload.KindSecret && cfg.Found && !cfg.Copied():
			s.warnings = append(s.warnings, render.Warning{Object: "Secret/" + cfg.Name, Message: "shared by the primary and the canary: " + cfg.Shared})
		}
		if !cfg.Copied() {
			continue
		}
		obj, err := r.configCopy(ctx, c, cfg, repair)
		if err != nil {
			return nil, nil, err
		}
		if obj != nil {
			copies = append(copies, obj)
		}
	}
	return configs, copies, nil
}

// configCopy renders the primary's copy of cfg from the object read with its data, or
// returns nil when a repair finds the copy as it must be (read from the cache, without
// reading the source's data). A copy name another owner holds is refused.
func (r *CanaryReconciler) configCopy(ctx context.Context, c *meshv1.Canary, cfg workload.Config, repair bool) (client.Object, error) {
	key := types.NamespacedName{Namespace: c.Namespace, Name: render.ConfigCopyName(cfg.Name)}
	var live, src client.Object = &corev1.ConfigMap{}, &corev1.ConfigMap{}
	if cfg.Kind == workload.KindSecret {
		live, src = &corev1.Secret{}, &corev1.Secret{}
	}
	switch err := r.Get(ctx, key, live); {
	case apierrors.IsNotFound(err):
		live = nil
	case err != nil:
		return nil, fmt.Errorf("reading the primary's copy of %s: %w", cfg.ConfigRef, err)
	case !metav1.IsControlledBy(live, c):
		return nil, &configError{meshv1.ReasonConflict, fmt.Sprintf(
			"the primary's copy of %s would be %s, which exists and is not this Canary's (%s): delete or rename it, or annotate %s %s=false to share it",
			cfg.ConfigRef, key.Name, controllerOf(live), cfg.Name, workload.AnnotationConfigCopy)}
	}
	if cm, ok := live.(*corev1.ConfigMap); ok && repair && copyHolds(c, cm, cfg) {
		return nil, nil
	}
	if err := r.apiReader().Get(ctx, types.NamespacedName{Namespace: c.Namespace, Name: cfg.Name}, src); err != nil {
		return nil, fmt.Errorf("reading %s: %w", cfg.ConfigRef, err)
	}
	var digest string
	var out client.Object
	var err error
	switch o := src.(type) {
	case *corev1.Secret:
		digest = workload.SecretDigest(o)
		out, err = render.SecretCopy(c, o)
	case *corev1.ConfigMap:
		digest = workload.ConfigMapDigest(o)
		out, err = render.ConfigMapCopy(c, o)
	}
	if err != nil {
		return nil, err
	}
	if digest != cfg.Digest {
		return nil, fmt.Errorf("%s changed during the reconcile: retrying with the new revision", cfg.ConfigRef)
	}
	return out, nil
}

// copyHolds says whether the cache's copy of a ConfigMap's copy holds what it must: this
// Canary's, with canopy's labels and the source's data (by digest).
func copyHolds(c *meshv1.Canary, cm *corev1.ConfigMap, cfg workload.Config) bool {
	want := render.OwnerLabels(render.KindCanary, c.Namespace, c.Name)
	for k, v := range want {
		if cm.Labels[k] != v {
			return false
		}
	}
	return cm.Annotations[render.AnnotationCopiedFrom] == cfg.Name && workload.ConfigMapDigest(cm) == cfg.Digest
}

// controllerOf names the controller of obj for a message, or says it has none.
func controllerOf(obj client.Object) string {
	if ref := metav1.GetControllerOf(obj); ref != nil {
		return "controlled by " + ref.Kind + " " + ref.Name
	}
	if v, ok := obj.GetLabels()[meshv1.LabelManagedBy]; ok {
		return "managed by " + v
	}
	return "no controller"
}

// apiReader reads ConfigMaps with their data (the cache keeps a digest only) and Secrets.
func (r *CanaryReconciler) apiReader() client.Reader {
	if r.APIReader != nil {
		return r.APIReader
	}
	return r.Client
}

// resyncSecrets brings an idle Canary whose target reads a Secret back after secretResync,
// so that a change of the Secret starts a rollout although no watch reports it.
func resyncSecrets(s *canaryScope) {
	d := s.decision
	if d == nil || (d.RequeueAfter > 0 && d.RequeueAfter <= secretResync) {
		return
	}
	for _, ref := range workload.ConfigRefs(&s.target.Spec.Template.Spec) {
		if ref.Kind == workload.KindSecret {
			d.RequeueAfter = secretResync
			return
		}
	}
}
