package render

import (
	"fmt"
	"sort"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// GatewayNamespace is the namespace of a MeshPolicy's ingress Gateway and Certificate.
func GatewayNamespace(p *meshv1.MeshPolicy) string {
	if p.Spec.Ingress != nil && p.Spec.Ingress.Gateway.Namespace != "" {
		return p.Spec.Ingress.Gateway.Namespace
	}
	return p.Namespace
}

// GatewayName is the name of a MeshPolicy's ingress Gateway and Certificate. It carries
// the policy's namespace since the gateway's namespace is shared by many policies.
func GatewayName(p *meshv1.MeshPolicy) string {
	return limit(p.Namespace+"-"+p.Name+"-ingress", maxObjectName)
}

// GatewayRef is how a VirtualService names the policy's ingress Gateway.
func GatewayRef(p *meshv1.MeshPolicy) string { return GatewayNamespace(p) + "/" + GatewayName(p) }

// CertificateSecretName is the Secret the policy's Certificate writes and the Gateway
// reads (credentialName), in the gateway's namespace.
func CertificateSecretName(p *meshv1.MeshPolicy) string {
	return limit(p.Namespace+"-"+p.Name+"-ingress-tls", maxObjectName)
}

// policyTrafficPolicy is the DestinationRule traffic policy of a MeshPolicy for a
// Service with the given ports: resilience, client TLS matching the mTLS mode, and
// port-level TLS for the ports whose mTLS mode is overridden. It is never nil. Without
// knownPorts (no Service at hand) port-level mTLS is not checked against the ports.
func policyTrafficPolicy(e *errs, p *meshv1.MeshPolicy, ports []corev1.ServicePort, knownPorts bool) *networking.TrafficPolicy {
	tp := &networking.TrafficPolicy{}
	if res := p.Spec.Resilience; res != nil {
		tp.LoadBalancer = loadBalancer(e, "spec.resilience.loadBalancer", res.LoadBalancer)
		tp.ConnectionPool = connectionPool(e, "spec.resilience.connectionPool", res.ConnectionPool)
		tp.OutlierDetection = outlierDetection(e, "spec.resilience.circuitBreaker", res.CircuitBreaker)
	}
	m := p.Spec.MTLS
	if m == nil {
		return tp
	}
	tp.Tls = tlsForMTLS(m.Mode)
	// PeerAuthentication overrides container ports; a DestinationRule, Service ports.
	byTarget := map[int32][]uint32{}
	for _, sp := range ports {
		if sp.TargetPort.Type == intstr.String && sp.TargetPort.StrVal != "" {
			continue // a named container port: which number it is depends on the pods
		}
		tgt := sp.TargetPort.IntVal
		if tgt == 0 {
			tgt = sp.Port
		}
		byTarget[tgt] = append(byTarget[tgt], uint32(sp.Port))
	}
	for i, pl := range m.PortLevel {
		svcPorts := byTarget[pl.Port]
		if len(svcPorts) == 0 {
			if !knownPorts {
				continue
			}
			e.warn(fmt.Sprintf("spec.mtls.portLevel[%d].port", i), "%d is not a target port of the Service: Istio applies port-level mTLS only to ports a Service exposes", pl.Port)
			continue
		}
		if proto.Equal(tlsForMTLS(pl.Mode), tp.Tls) {
			continue // PERMISSIVE and STRICT both take ISTIO_MUTUAL: nothing to override
		}
		for _, sp := range svcPorts {
			tp.PortLevelSettings = append(tp.PortLevelSettings, &networking.TrafficPolicy_PortTrafficPolicy{
				Port: &networking.PortSelector{Number: sp},
				Tls:  tlsForMTLS(pl.Mode),
			})
		}
	}
	sort.SliceStable(tp.PortLevelSettings, func(i, j int) bool {
		return tp.PortLevelSettings[i].Port.Number < tp.PortLevelSettings[j].Port.Number
	})
	return tp
}
