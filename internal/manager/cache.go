package manager

import (
	"fmt"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	istionetv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	istiosecv1 "istio.io/client-go/pkg/apis/security/v1"
	istiotelv1 "istio.io/client-go/pkg/apis/telemetry/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/workload"
)

// labelScopedKinds are the kinds whose informers hold only the objects canopy generated
// (labelled app.kubernetes.io/managed-by=canopy), because canopy never needs to read an
// unlabelled object of these kinds:
//   - PeerAuthentication, RequestAuthentication, AuthorizationPolicy, ServiceEntry, Telemetry, EnvoyFilter, Gateway: only a
//     MeshPolicy generates them; the reconciler reads them back by its owner labels (watch
//     and prune) and never looks at other authors' ones.
//   - VirtualService: the Canary's apex route and the MeshPolicy's routes are generated; a
//     MeshPolicy reads the Service's VirtualService only to see whether a Canary wrote it
//     (by its owner labels). An unlabelled VirtualService of the same name is taken over by
//     the forced server-side apply either way, seen in the cache or not.
//   - HTTPRoute: a Canary routed with the Gateway API generates its own; canopy reads no
//     other HTTPRoute.
//   - Certificate: generated for ingress TLS, read by its generated name; CertificateRequest:
//     created by cert-manager with the Certificate's labels, listed by those labels.
//
// Kept cluster-wide (or namespace-wide with --watch-namespaces), because canopy reads
// objects of these kinds that it did not generate:
//   - Deployment: a Canary's target is the user's; Service: the apex Service may be the
//     user's (adopted), and a MeshPolicy targets the user's Service;
//   - DestinationRule: a MeshPolicy refuses another author's DestinationRule whose client
//     TLS contradicts its mTLS mode, so it must see the unlabelled ones;
//   - HorizontalPodAutoscaler: a Canary's autoscalerRef names the user's;
//   - ConfigMap: the target's pods read them (a change starts a rollout); ServiceAccount:
//     authorization names them.
//
// Secrets are never cached (read one at a time, uncached, where a provider needs them).
func labelScopedKinds() []client.Object {
	return []client.Object{
		&istiosecv1.PeerAuthentication{},
		&istiosecv1.AuthorizationPolicy{},
		&istiosecv1.RequestAuthentication{},
		&istionetv1.ServiceEntry{},
		&istiotelv1.Telemetry{},
		&istionetv1alpha3.EnvoyFilter{},
		&istionetv1.Gateway{},
		&istionetv1.VirtualService{},
		&gwapiv1.HTTPRoute{},
		&cmv1.Certificate{},
		&cmv1.CertificateRequest{},
	}
}

// shardedKinds are the kinds a shard selector divides among canopy instances: the objects
// users write for canopy to reconcile. MetricTemplates are not divided: Canaries of any
// shard may name the same template, and templates are few and small.
func shardedKinds() []client.Object {
	return []client.Object{&meshv1.Canary{}, &meshv1.MeshPolicy{}}
}

// ParseShardSelector parses --shard-selector: empty selects everything.
func ParseShardSelector(s string) (labels.Selector, error) {
	if s == "" {
		return labels.Everything(), nil
	}
	sel, err := labels.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("--shard-selector %q: %w", s, err)
	}
	return sel, nil
}

// cacheOptions builds the cache's options: managedFields stripped, the watched namespaces,
// the shard selector on Canaries and MeshPolicies, and the generated kinds scoped to
// canopy's label. A kind whose API is not installed when canopy starts (Istio's or
// cert-manager's) cannot be configured (the cache would fail to start): its informer, if
// one starts later, is unscoped until the next restart.
func cacheOptions(cfg *rest.Config, scheme *runtime.Scheme, o Options) (cache.Options, error) {
	opts := cache.Options{DefaultTransform: cacheTransform}
	if nss := o.Namespaces(); len(nss) > 0 {
		opts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range nss {
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	shard, err := ParseShardSelector(o.ShardSelector)
	if err != nil {
		return opts, err
	}
	managed, err := labels.NewRequirement(meshv1.LabelManagedBy, selection.Equals, []string{meshv1.ManagedByValue})
	if err != nil {
		return opts, err
	}
	mapper, err := newMapper(cfg)
	if err != nil {
		return opts, err
	}
	opts.ByObject = map[client.Object]cache.ByObject{}
	if !shard.Empty() {
		for _, obj := range shardedKinds() {
			opts.ByObject[obj] = cache.ByObject{Label: shard}
		}
	}
	for _, obj := range labelScopedKinds() {
		installed, err := kindInstalled(mapper, scheme, obj)
		if err != nil {
			return opts, err
		}
		if installed {
			opts.ByObject[obj] = cache.ByObject{Label: labels.NewSelector().Add(*managed)}
		}
	}
	return opts, nil
}

// stripManagedFields is controller-runtime's transform that drops managedFields.
var stripManagedFields = cache.TransformStripManagedFields()

// cacheTransform strips from every cached object what canopy never reads:
//   - managedFields, often larger than the spec;
//   - kubectl's last-applied-configuration annotation, a copy of the whole object on
//     everything `kubectl apply` or a client-side-applying GitOps tool (Argo CD by default)
//     wrote: it doubles the size of the users' Deployments and Services;
//   - a ConfigMap's data, of which a revision needs only the digest (workload.CacheConfigMap).
//
// None of these is ever written back from the cache: canopy's writes are server-side applies
// of what it renders, patches computed against the cached copy (a field absent from both
// sides is not in the patch), and status writes.
func cacheTransform(obj any) (any, error) {
	obj, err := stripManagedFields(obj)
	if err != nil {
		return obj, err
	}
	if o, ok := obj.(metav1.Object); ok {
		if a := o.GetAnnotations(); a != nil {
			if _, ok := a[corev1.LastAppliedConfigAnnotation]; ok {
				delete(a, corev1.LastAppliedConfigAnnotation)
				o.SetAnnotations(a)
			}
		}
	}
	return workload.CacheConfigMap(obj)
}

func newMapper(cfg *rest.Config) (meta.RESTMapper, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the HTTP client: %w", err)
	}
	m, err := apiutil.NewDynamicRESTMapper(cfg, hc)
	if err != nil {
		return nil, fmt.Errorf("creating the REST mapper: %w", err)
	}
	return m, nil
}

// kindInstalled says whether the API server serves obj's kind.
func kindInstalled(mapper meta.RESTMapper, scheme *runtime.Scheme, obj client.Object) (bool, error) {
	gvk, err := apiutil.GVKForObject(obj, scheme)
	if err != nil {
		return false, err
	}
	switch _, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version); {
	case err == nil:
		return true, nil
	case meta.IsNoMatchError(err):
		return false, nil
	default:
		return false, fmt.Errorf("looking up the %s API: %w", gvk.Kind, err)
	}
}
