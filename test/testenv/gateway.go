package testenv

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// GatewayNameLabel is the label istiod's gateway deployment controller puts on the pods
// and the Service it deploys for a Gateway API Gateway, and selects them by.
const GatewayNameLabel = "gateway.networking.k8s.io/gateway-name"

// LoadBalancerIP is the address ProvisionGatewayAddress gives a gateway's Service: in
// TEST-NET-2 (198.51.100.0/24), never routed.
const LoadBalancerIP = "198.51.100.80"

// ProvisionGatewayAddress plays the cluster's load balancer for a Gateway API Gateway of
// class istio: istiod deploys its proxy with a Service of type LoadBalancer (kwok runs
// the pods), whose address a cloud's or MetalLB's controller would assign. The local
// cluster has none, so the Gateway would stay Programmed=False (AddressNotAssigned), as
// on a cluster without load balancers. This waits for istiod's Service, assigns it
// LoadBalancerIP in its status, and waits until istiod reports the Gateway Programmed
// with that address, which is the Gateway it returns. The Gateway itself stays as a user
// writes it.
func (e *Env) ProvisionGatewayAddress(t testing.TB, ns, name string) *gwapiv1.Gateway {
	t.Helper()
	ctx := t.Context()
	Eventually(t, time.Minute, func() error {
		svcs := &corev1.ServiceList{}
		if err := e.Client.List(ctx, svcs, client.InNamespace(ns), client.MatchingLabels{GatewayNameLabel: name}); err != nil {
			return err
		}
		if len(svcs.Items) != 1 {
			return fmt.Errorf("%d Services of istiod's for Gateway %s/%s, want one", len(svcs.Items), ns, name)
		}
		svc := &svcs.Items[0]
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
			return nil // the Gateway asked for another type; nothing to provision
		}
		if ing := svc.Status.LoadBalancer.Ingress; len(ing) == 1 && ing[0].IP == LoadBalancerIP {
			return nil
		}
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: LoadBalancerIP, IPMode: ptr.To(corev1.LoadBalancerIPModeVIP)}}
		return e.Client.Status().Update(ctx, svc)
	})
	gw := &gwapiv1.Gateway{}
	Eventually(t, time.Minute, func() error {
		if err := e.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, gw); err != nil {
			return err
		}
		c := meta.FindStatusCondition(gw.Status.Conditions, string(gwapiv1.GatewayConditionProgrammed))
		if c == nil || c.Status != "True" || c.ObservedGeneration != gw.Generation {
			return fmt.Errorf("the Gateway %s/%s is not Programmed: %+v", ns, name, c)
		}
		return nil
	})
	return gw
}
