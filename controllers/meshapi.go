package controllers

import (
	"context"
	"fmt"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	istiosecv1 "istio.io/client-go/pkg/apis/security/v1"
	istiotelv1 "istio.io/client-go/pkg/apis/telemetry/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// meshAPIPoll is how often canopy looks for Istio's APIs while they are missing.
const meshAPIPoll = 10 * time.Second

// meshAPIs are the Istio kinds the controllers watch, one per API group they use.
var meshAPIs = []schema.GroupVersionKind{
	istionetv1.SchemeGroupVersion.WithKind("VirtualService"),
	istiosecv1.SchemeGroupVersion.WithKind("PeerAuthentication"),
	istiotelv1.SchemeGroupVersion.WithKind("Telemetry"),
}

// missingMeshAPIs lists the Istio kinds the API server does not serve.
func missingMeshAPIs(mapper meta.RESTMapper) ([]string, error) {
	var missing []string
	for _, gvk := range meshAPIs {
		if _, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
			if !meta.IsNoMatchError(err) {
				return nil, fmt.Errorf("looking up %s: %w", gvk, err)
			}
			missing = append(missing, gvk.GroupVersion().String()+" "+gvk.Kind)
		}
	}
	return missing, nil
}

// meshAPIGate runs while Istio's APIs are missing: it marks every Canary and MeshPolicy as
// waiting for them, and once they are served, starts the controllers, with no restart.
type meshAPIGate struct {
	mapper   meta.RESTMapper
	client   client.Client
	start    func() error
	interval time.Duration
}

// NeedLeaderElection: only the leader starts controllers and writes statuses.
func (g *meshAPIGate) NeedLeaderElection() bool { return true }

// Start polls until Istio's APIs are there, then registers the controllers with the running
// manager, which starts them.
func (g *meshAPIGate) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("mesh-api-gate")
	for {
		missing, err := missingMeshAPIs(g.mapper)
		if err == nil && len(missing) == 0 {
			log.Info("Istio's APIs are installed: starting the Canary and MeshPolicy controllers")
			return g.start()
		}
		if err != nil {
			log.Error(err, "Looking up Istio's APIs")
		} else if err := g.markWaiting(ctx, missing); err != nil {
			log.Error(err, "Reporting that Istio's APIs are missing")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(g.interval):
		}
	}
}

// markWaiting sets Ready=False with reason MeshAPIMissing on every Canary and MeshPolicy
// that does not say so yet.
func (g *meshAPIGate) markWaiting(ctx context.Context, missing []string) error {
	msg := fmt.Sprintf("Istio is not installed (the API server serves no %v): waiting for its CRDs", missing)
	canaries := &meshv1.CanaryList{}
	if err := g.client.List(ctx, canaries); err != nil {
		return err
	}
	for i := range canaries.Items {
		c := &canaries.Items[i]
		if err := g.mark(ctx, c, &c.Status.Conditions, msg); err != nil {
			return err
		}
	}
	policies := &meshv1.MeshPolicyList{}
	if err := g.client.List(ctx, policies); err != nil {
		return err
	}
	for i := range policies.Items {
		p := &policies.Items[i]
		if err := g.mark(ctx, p, &p.Status.Conditions, msg); err != nil {
			return err
		}
	}
	return nil
}

func (g *meshAPIGate) mark(ctx context.Context, obj client.Object, conds *[]metav1.Condition, msg string) error {
	if c := meta.FindStatusCondition(*conds, meshv1.ConditionReady); c != nil && c.Reason == meshv1.ReasonMeshAPIMissing && c.Message == msg {
		return nil
	}
	patch := client.MergeFrom(obj.DeepCopyObject().(client.Object))
	for _, t := range []string{meshv1.ConditionReady, meshv1.ConditionStalled} {
		meta.SetStatusCondition(conds, metav1.Condition{
			Type: t, Status: boolCondition(t == meshv1.ConditionStalled), Reason: meshv1.ReasonMeshAPIMissing,
			Message: msg, ObservedGeneration: obj.GetGeneration(),
		})
	}
	return client.IgnoreNotFound(g.client.Status().Patch(ctx, obj, patch))
}

// certManagerMissing is whether the API server serves no cert-manager Certificates.
func certManagerMissing(mapper meta.RESTMapper) (bool, error) {
	gvk := cmv1.SchemeGroupVersion.WithKind(cmv1.CertificateKind)
	if _, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
		if !meta.IsNoMatchError(err) {
			return false, fmt.Errorf("looking up cert-manager's Certificate API: %w", err)
		}
		return true, nil
	}
	return false, nil
}

// apiGate runs while an API a running controller can use is missing (cert-manager's
// Certificates, a router's kinds): once the API server serves it, start adds the
// controller's watches on it, and the objects waiting for it are woken, with no restart.
// (Their status already says what is missing.)
type apiGate struct {
	// name names the API in the log.
	name string
	// served says whether the API server serves the API now.
	served func() (bool, error)
	// start adds the watches and lets the reconciler use the API.
	start func() error
	// waiting lists the objects to reconcile once it is served.
	waiting  func(ctx context.Context) ([]client.Object, error)
	wake     chan<- event.GenericEvent
	interval time.Duration
}

// NeedLeaderElection: the controller it adds watches to runs on the leader only.
func (g *apiGate) NeedLeaderElection() bool { return true }

func (g *apiGate) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("api-gate").WithValues("api", g.name)
	for {
		served, err := g.served()
		if err != nil {
			log.Error(err, "Looking up the API")
		}
		if err == nil && served {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(g.interval):
		}
	}
	log.Info("The API is installed: the objects waiting for it go on")
	if err := g.start(); err != nil {
		return err
	}
	objs, err := g.waiting(ctx)
	if err != nil {
		return fmt.Errorf("listing the objects waiting for %s: %w", g.name, err)
	}
	for _, o := range objs {
		select {
		case g.wake <- event.GenericEvent{Object: o}:
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}
