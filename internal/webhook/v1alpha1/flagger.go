package v1alpha1

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// flaggerWarnings name each of Flagger's fields a Canary sets that canopy accepts but does
// not act on (api/v1alpha1's Flagger*Fields), with what to use instead where there is
// something, so that a Flagger Canary whose apiVersion alone was changed is admitted and
// its author sees what does not carry over.
func flaggerWarnings(c *meshv1.Canary) admission.Warnings {
	var ws admission.Warnings
	add := func(set bool, path *field.Path, instead string) {
		if !set {
			return
		}
		w := fmt.Sprintf("%s is not supported by canopy; ignored", path)
		if instead != "" {
			w += " (" + instead + ")"
		}
		ws = append(ws, w)
	}
	spec := field.NewPath("spec")
	s := &c.Spec
	add(s.Provider != "", spec.Child("provider"), "canopy routes with spec.routing.provider: istio, the default, or gatewayapi")
	add(s.MetricsServer != "", spec.Child("metricsServer"), "use spec.analysis.provider.address")
	add(s.IngressRef != nil, spec.Child("ingressRef"), "")
	add(s.UpstreamRef != nil, spec.Child("upstreamRef"), "")
	add(s.RouteRef != nil, spec.Child("routeRef"), "")
	add(s.CanaryAnalysis != nil, spec.Child("canaryAnalysis"), "use spec.analysis")
	if a := s.AutoscalerRef; a != nil {
		p := spec.Child("autoscalerRef")
		add(len(a.PrimaryScalerQueries) > 0, p.Child("primaryScalerQueries"), "")
		add(a.PrimaryScalerReplicas != nil, p.Child("primaryScalerReplicas"), "")
	}

	svc, sp := &s.Service, spec.Child("service")
	add(svc.Name != "", sp.Child("name"), "the apex Service is named after spec.targetRef.name")
	add(svc.AppProtocol != "", sp.Child("appProtocol"), "Istio infers the protocol from spec.service.portName")
	add(svc.Delegation, sp.Child("delegation"), "")
	add(svc.Rewrite != nil, sp.Child("rewrite"), "a MeshPolicy's spec.routes[].rewrite rewrites")
	add(svc.MeshName != "", sp.Child("meshName"), "")
	add(len(svc.Backends) > 0, sp.Child("backends"), "")
	add(len(svc.GatewayRefs) > 0, sp.Child("gatewayRefs"), "use spec.service.gateways with spec.routing.provider: gatewayapi")
	add(svc.TrafficDistribution != "", sp.Child("trafficDistribution"), "")
	add(svc.Headless, sp.Child("headless"), "")
	add(svc.BackendTimeout != "", sp.Child("backendTimeout"), "")
	add(len(svc.Mirror) > 0, sp.Child("mirror"), "use spec.analysis.mirror")
	add(svc.UnmanagedMetadata != nil, sp.Child("unmanagedMetadata"), "canopy leaves alone the labels and annotations it does not set")
	if tp := svc.TrafficPolicy; tp != nil {
		p := sp.Child("trafficPolicy")
		add(tp.TLS != nil, p.Child("tls"), "use spec.service.trafficPolicy.tlsMode")
		add(tp.OutlierDetection != nil, p.Child("outlierDetection"), "use spec.service.trafficPolicy.circuitBreaker")
		add(len(tp.PortLevelSettings) > 0, p.Child("portLevelSettings"), "")
	}

	a, ap := &s.Analysis, spec.Child("analysis")
	add(len(a.Alerts) > 0, ap.Child("alerts"), "event webhooks receive every event")
	for i := range a.Metrics {
		m, p := &a.Metrics[i], ap.Child("metrics").Index(i)
		add(m.Threshold != nil, p.Child("threshold"), "use thresholdRange.max")
		add(m.Query != "", p.Child("query"), "put the query in a MetricTemplate and use templateRef")
	}
	for i := range a.Webhooks {
		p := ap.Child("webhooks").Index(i)
		add(a.Webhooks[i].MuteAlert, p.Child("muteAlert"), "")
		add(a.Webhooks[i].DisableTLS, p.Child("disableTLS"), "")
	}
	return ws
}
