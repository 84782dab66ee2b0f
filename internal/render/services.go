package render

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// reservedPrefix is the key prefix of canopy's own labels and annotations, which a
// Canary's service metadata cannot set.
const reservedPrefix = "mesh.canopy.dev/"

// serviceExtras adds spec.service.{apex,primary,canary} labels and annotations, and with
// portDiscovery the target's other container ports, to the apex, primary and canary
// Services, in that order.
func (r *canaryRenderer) serviceExtras(svcs []*corev1.Service) {
	s := &r.c.Spec.Service
	for i, m := range []struct {
		path string
		meta *meshv1.ServiceMetadata
	}{{"spec.service.apex", s.Apex}, {"spec.service.primary", s.Primary}, {"spec.service.canary", s.Canary}} {
		if m.meta == nil {
			continue
		}
		svc := svcs[i]
		for k, v := range m.meta.Labels {
			if !r.checkMetaKey(m.path+".labels", k) {
				continue
			}
			if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
				r.e.invalid(m.path+".labels", "the value of %q: %s", k, strings.Join(errs, "; "))
				continue
			}
			svc.Labels[k] = v
		}
		for k, v := range m.meta.Annotations {
			if !r.checkMetaKey(m.path+".annotations", k) {
				continue
			}
			if svc.Annotations == nil {
				svc.Annotations = map[string]string{}
			}
			svc.Annotations[k] = v
		}
	}
	if s.PortDiscovery {
		ports := r.discoveredPorts(svcs[0].Spec.Ports[0])
		for _, svc := range svcs {
			svc.Spec.Ports = append(svc.Spec.Ports, ports...)
		}
	}
}

// checkMetaKey refuses a label or annotation key that is not a qualified name, or that is
// canopy's own.
func (r *canaryRenderer) checkMetaKey(path, k string) bool {
	if errs := validation.IsQualifiedName(k); len(errs) > 0 {
		r.e.invalid(path, "%q is not a valid key: %s", k, strings.Join(errs, "; "))
		return false
	}
	if k == meshv1.LabelManagedBy || strings.HasPrefix(k, reservedPrefix) {
		r.e.invalid(path, "%q is set by canopy on every generated object and cannot be changed", k)
		return false
	}
	return true
}

// discoveredPorts are the ports the target's containers declare, as Service ports, besides
// main: each once, in the order of the containers. A port that would clash with main or an
// earlier one (its name, or its number and protocol) is left out with a warning.
func (r *canaryRenderer) discoveredPorts(main corev1.ServicePort) []corev1.ServicePort {
	type key struct {
		port  int32
		proto corev1.Protocol
	}
	names := map[string]bool{main.Name: true}
	numbers := map[key]bool{{main.Port, main.Protocol}: true}
	mainTarget := key{main.TargetPort.IntVal, main.Protocol}
	var out []corev1.ServicePort
	containers := r.target.Spec.Template.Spec.Containers
	for ci := range containers {
		for _, p := range containers[ci].Ports {
			proto := p.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			k := key{p.ContainerPort, proto}
			if k == mainTarget {
				continue // the port the Services already route
			}
			name := p.Name
			if name == "" {
				name = fmt.Sprintf("%s-%d", strings.ToLower(string(proto)), p.ContainerPort)
			}
			field := "spec.service.portDiscovery"
			where := fmt.Sprintf("container %q port %d/%s", containers[ci].Name, p.ContainerPort, proto)
			switch {
			case names[name]:
				r.e.warn(field, "%s is not added: the Services already have a port named %q", where, name)
				continue
			case numbers[k]:
				r.e.warn(field, "%s is not added: the Services already have port %d/%s", where, p.ContainerPort, proto)
				continue
			}
			names[name], numbers[k] = true, true
			out = append(out, corev1.ServicePort{Name: name, Port: p.ContainerPort, TargetPort: intstr.FromInt32(p.ContainerPort), Protocol: proto})
		}
	}
	return out
}
