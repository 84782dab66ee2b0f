// Package render turns canopy resources into the upstream typed objects canopy applies:
// Istio networking, security and telemetry objects, cert-manager Certificates, Services
// and Deployments. It is pure: it never talks to the API server, so the controllers, the
// kubectl plugin's offline render and the tests all see the same output.
//
// Every rendered object carries its TypeMeta (it is sent by server-side apply), the
// canopy ownership labels and no ownerReferences (the controller sets those, and cannot
// for objects in another namespace, such as an ingress Gateway or its Certificate).
// Rendering the same input twice yields equal objects, so a controller can skip an apply
// whose Hash did not change.
//
// What is generated, for a Canary whose target Deployment (and apex Service) is <name>:
//
//	Deployment      <name>-primary   selector {app: <name>-primary}; annotation mesh.canopy.dev/revision
//	Service         <name>           the apex: selects the primary's pods
//	Service         <name>-primary   selects the primary's pods
//	Service         <name>-canary    selects the target's pods (its selector.matchLabels)
//	DestinationRule <name>-primary, <name>-canary
//	VirtualService  <name>           hosts <name> + spec.service.hosts (+ the policy's ingress hosts)
//
// and for a MeshPolicy <policy> of Service <svc> (<policy>-canary copies of the workload
// policies when a Canary delivers the Service):
//
//	PeerAuthentication, Telemetry   <policy>
//	AuthorizationPolicy             <policy>, <policy>-allow-nothing (defaultDeny)
//	DestinationRule, VirtualService <svc> (not when a Canary owns the routing: the Canary's
//	                                VirtualService has the same name, so it takes over in place)
//	ServiceEntry                    <policy>-<external service>; with TLS origination also a
//	                                DestinationRule of that name (-<i> per host when several)
//	Gateway, Certificate            <policy namespace>-<policy>-ingress-<hash> in the gateway's
//	                                namespace (GatewayName); Secret <that name>-tls
//
// Weights of 0 disappear from the JSON of an Istio route destination (proto3 omits zero
// scalars). Under server-side apply that is what we want: when canopy stops sending a
// weight it owned, the API server removes it, and Istio reads the missing weight as 0.
package render
