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
// Weights of 0 disappear from the JSON of an Istio route destination (proto3 omits zero
// scalars). Under server-side apply that is what we want: when canopy stops sending a
// weight it owned, the API server removes it, and Istio reads the missing weight as 0.
package render
