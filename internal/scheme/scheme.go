// Package scheme builds the runtime.Scheme canopy works with: Kubernetes' built-in types,
// canopy's API, Istio's typed networking/security/telemetry APIs, the Gateway API's
// (gateway.networking.k8s.io/v1) and cert-manager's.
package scheme

import (
	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	istionetv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	istiosecv1 "istio.io/client-go/pkg/apis/security/v1"
	istiotelv1 "istio.io/client-go/pkg/apis/telemetry/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// New returns a scheme with every type canopy reads or writes.
func New() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme,
		meshv1.AddToScheme,
		istionetv1.AddToScheme,
		istionetv1alpha3.AddToScheme, // EnvoyFilter is served as v1alpha3 only
		istiosecv1.AddToScheme,
		istiotelv1.AddToScheme,
		gwapiv1.Install,
		cmv1.AddToScheme,
	} {
		utilruntime.Must(add(s))
	}
	return s
}
