package render

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
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

// GatewayName is the name of a MeshPolicy's ingress Gateway and Certificate, in a
// namespace many policies share: "<namespace>-<policy>-ingress-<hash>", shortened to a
// DNS-1123 label (Istio refuses any other gateway name in a VirtualService), the hash of
// the namespace and the name keeping it unique: namespace "a"'s policy "b-c" and namespace
// "a-b"'s policy "c" read alike but do not collide. 64 bits of hash make a name chosen to
// collide with another namespace's out of reach.
func GatewayName(p *meshv1.MeshPolicy) string {
	const maxGatewayName = 63 // a DNS-1123 label
	const suffix = "-ingress-"
	sum := sha256.Sum256([]byte(p.Namespace + "/" + p.Name))
	hash := hex.EncodeToString(sum[:8])
	readable := strings.ReplaceAll(p.Namespace+"-"+p.Name, ".", "-")
	if max := maxGatewayName - len(suffix) - len(hash); len(readable) > max {
		readable = strings.TrimRight(readable[:max], "-")
	}
	return readable + suffix + hash
}

// GatewayRef is how a VirtualService names the policy's ingress Gateway.
func GatewayRef(p *meshv1.MeshPolicy) string { return GatewayNamespace(p) + "/" + GatewayName(p) }

// CertificateSecretName is the Secret the policy's Certificate writes and the Gateway
// reads (credentialName), in the gateway's namespace.
func CertificateSecretName(p *meshv1.MeshPolicy) string { return GatewayName(p) + "-tls" }

// policyTrafficPolicy is the DestinationRule traffic policy of a MeshPolicy for a
// Service with the given ports: resilience, client TLS matching the mTLS mode, and
// port-level TLS for the ports whose mTLS mode is overridden. It is never nil. Without
// knownPorts (no Service at hand) port-level mTLS is not checked against the ports.
func policyTrafficPolicy(e *errs, p *meshv1.MeshPolicy, ports []corev1.ServicePort, knownPorts bool) *networking.TrafficPolicy {
	tp := &networking.TrafficPolicy{}
	if res := p.Spec.Resilience; res != nil {
		tp.LoadBalancer = loadBalancer(e, "spec.resilience.loadBalancer", res.LoadBalancer)
		tp.LoadBalancer = stickyAndFailover(e, "spec.resilience", res, tp.LoadBalancer)
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

// stickyAndFailover adds a resilience's consistent hash and locality failover to the load
// balancer settings lb (nil: none yet).
func stickyAndFailover(e *errs, path string, res *meshv1.Resilience, lb *networking.LoadBalancerSettings) *networking.LoadBalancerSettings {
	if res.ConsistentHash == nil && len(res.LocalityFailover) == 0 {
		return lb
	}
	if lb == nil {
		lb = &networking.LoadBalancerSettings{}
	}
	if h := res.ConsistentHash; h != nil {
		if res.LoadBalancer != "" {
			e.inconsistent(path+".consistentHash", "replaces loadBalancer %s: set one", res.LoadBalancer)
		}
		ch := &networking.LoadBalancerSettings_ConsistentHashLB{}
		n := 0
		if h.HTTPHeaderName != "" {
			n++
			ch.HashKey = &networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName{HttpHeaderName: h.HTTPHeaderName}
		}
		if c := h.HTTPCookie; c != nil {
			n++
			cookie := &networking.LoadBalancerSettings_ConsistentHashLB_HTTPCookie{Name: c.Name, Path: c.Path}
			if c.TTL != "" {
				cookie.Ttl = duration(e, path+".consistentHash.httpCookie.ttl", c.TTL)
			}
			ch.HashKey = &networking.LoadBalancerSettings_ConsistentHashLB_HttpCookie{HttpCookie: cookie}
		}
		if h.HTTPQueryParameterName != "" {
			n++
			ch.HashKey = &networking.LoadBalancerSettings_ConsistentHashLB_HttpQueryParameterName{HttpQueryParameterName: h.HTTPQueryParameterName}
		}
		if h.UseSourceIP != nil && *h.UseSourceIP {
			n++
			ch.HashKey = &networking.LoadBalancerSettings_ConsistentHashLB_UseSourceIp{UseSourceIp: true}
		}
		if n != 1 {
			e.invalid(path+".consistentHash", "set exactly one of httpHeaderName, httpCookie, httpQueryParameterName and useSourceIp")
		}
		lb.LbPolicy = &networking.LoadBalancerSettings_ConsistentHash{ConsistentHash: ch}
	}
	if len(res.LocalityFailover) > 0 {
		if res.CircuitBreaker == nil {
			e.inconsistent(path+".localityFailover", "needs circuitBreaker: traffic fails over once outlier detection ejects the local endpoints")
		}
		set := &networking.LocalityLoadBalancerSetting{Enabled: wrapperspb.Bool(true)}
		for i, f := range res.LocalityFailover {
			if f.From == f.To {
				e.invalid(fmt.Sprintf("%s.localityFailover[%d]", path, i), "fails %q over to itself", f.From)
			}
			set.Failover = append(set.Failover, &networking.LocalityLoadBalancerSetting_Failover{From: f.From, To: f.To})
		}
		lb.LocalityLbSetting = set
	}
	return lb
}
