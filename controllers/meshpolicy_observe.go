package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/desired"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/internal/workload"
)

// loadTarget reads the target Service. While it is missing, what is applied stays: the
// Service may be on its way back, and the watch on Services brings the policy back then.
func (r *MeshPolicyReconciler) loadTarget(ctx context.Context, s *policyScope) (bool, error) {
	p := s.policy
	svc := &corev1.Service{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: p.Namespace, Name: p.Spec.TargetRef.Name}, svc); err != nil {
		if !apierrors.IsNotFound(err) {
			return true, fmt.Errorf("reading the target Service: %w", err)
		}
		s.block(meshv1.ReasonTargetNotFound, fmt.Sprintf("Service %s/%s does not exist", p.Namespace, p.Spec.TargetRef.Name), false)
		return true, nil
	}
	s.svc = svc
	return false, nil
}

// checkTenancy refuses a policy that claims more than its namespace may (render.Tenancy):
// a gateway namespace, a ClusterIssuer or hosts the operator does not allow. What it put
// outside its namespace before (when the operator allowed more) is removed: the operator's
// word is taken back at once, and so is the VirtualService that bound the namespace's routing
// to such a gateway. What else it applied in its namespace stays, as for any spec refused, so
// that mTLS and authorization remain in force until the spec is fixed.
func (r *MeshPolicyReconciler) checkTenancy(ctx context.Context, s *policyScope) (bool, error) {
	err := r.Tenancy.CheckMeshPolicy(s.policy)
	if err == nil {
		return false, nil
	}
	ns := s.policy.Namespace
	dropped := map[meshv1.GeneratedObject]bool{}
	outside := func(kind string, o client.Object) bool {
		// The VirtualService bound to an ingress gateway of another namespace goes with that
		// Gateway: left, it would route hosts the namespace may no longer claim through a
		// Gateway that is gone (istioctl analyze: IST0101, IST0132).
		vs, isVS := o.(*istionetv1.VirtualService)
		drop := o.GetNamespace() != ns || isVS && slices.ContainsFunc(vs.Spec.Gateways, func(g string) bool {
			return g != "mesh" && render.GatewayNamespaceOf(g, ns) != ns
		})
		if drop {
			dropped[meshv1.GeneratedObject{Kind: kind, Namespace: o.GetNamespace(), Name: o.GetName()}] = true
		}
		return drop
	}
	if perr := r.pruneWhere(ctx, s, outside); perr != nil {
		return true, perr
	}
	s.block(meshv1.ReasonNotAllowed, err.Error(), true)
	s.objects = slices.DeleteFunc(slices.Clone(s.policy.Status.Objects), func(o meshv1.GeneratedObject) bool {
		return o.Namespace != ns || dropped[meshv1.GeneratedObject{Kind: o.Kind, Namespace: o.Namespace, Name: o.Name}]
	})
	s.objectsKnown = true
	return true, err
}

// checkConflicts refuses a policy when an older one targets the same Service: two
// policies would fight over one VirtualService and DestinationRule. The refused policy
// puts nothing in force, so what it generated before (for another target) is removed.
func (r *MeshPolicyReconciler) checkConflicts(ctx context.Context, s *policyScope) (bool, error) {
	p := s.policy
	list := &meshv1.MeshPolicyList{}
	if err := r.List(ctx, list, client.InNamespace(p.Namespace)); err != nil {
		return true, fmt.Errorf("listing MeshPolicies: %w", err)
	}
	winner := p
	for i := range list.Items {
		o := &list.Items[i]
		if o.Spec.TargetRef.Name == p.Spec.TargetRef.Name && o.DeletionTimestamp.IsZero() && render.CreatedBefore(o, winner) {
			winner = o
		}
	}
	if winner.UID == p.UID {
		return false, nil
	}
	if err := r.pruneExcept(ctx, s, nil); err != nil {
		return true, err
	}
	s.block(meshv1.ReasonConflict, fmt.Sprintf("MeshPolicy %s already targets Service %s (it is older): this policy is not applied; merge the two or delete one", winner.Name, p.Spec.TargetRef.Name), true)
	s.objects, s.objectsKnown = nil, true
	return true, nil
}

// observeCanary finds the Canary delivering the Service, if any: its reconciler then
// writes the Service's VirtualService and DestinationRules, composed with this policy.
func (r *MeshPolicyReconciler) observeCanary(ctx context.Context, s *policyScope) (bool, error) {
	p := s.policy
	list := &meshv1.CanaryList{}
	if err := r.List(ctx, list, client.InNamespace(p.Namespace)); err != nil {
		return true, fmt.Errorf("listing Canaries: %w", err)
	}
	for i := range list.Items {
		if c := &list.Items[i]; c.Spec.TargetRef.Name == p.Spec.TargetRef.Name && c.DeletionTimestamp.IsZero() {
			s.canary = c
			break
		}
	}
	if s.canary == nil {
		return false, nil
	}
	kind := s.canary.Spec.TargetRef.KindOrDefault()
	switch d, _, err := workload.Get(ctx, workload.ReaderLookup(r.Client), kind, types.NamespacedName{Namespace: p.Namespace, Name: s.canary.Spec.TargetRef.Name}); {
	case err != nil:
		return true, fmt.Errorf("reading the Canary's target %s: %w", kind, err)
	case d != nil:
		s.canaryTarget = d
		if d.Spec.Selector != nil {
			s.canarySelector = d.Spec.Selector.MatchLabels
		}
	}
	return false, nil
}

// observeCertificate reads the ingress Certificate and, while it is not Ready, what
// cert-manager says about its issuance.
func (r *MeshPolicyReconciler) observeCertificate(ctx context.Context, s *policyScope) (bool, error) {
	p := s.policy
	if p.Spec.Ingress == nil || p.Spec.Ingress.TLS == nil {
		return false, nil
	}
	if r.NoCertManager.Load() {
		s.block(meshv1.ReasonMeshAPIMissing, "spec.ingress.tls needs cert-manager, whose Certificate API is not installed: install cert-manager (canopy starts using it on its own), or remove ingress.tls", true)
		return true, nil
	}
	key := types.NamespacedName{Namespace: render.GatewayNamespace(p), Name: render.GatewayName(p)}
	cs := &meshv1.CertificateStatus{Name: key.Name, Namespace: key.Namespace, SecretName: render.CertificateSecretName(p)}
	s.certStatus = cs
	cert := &cmv1.Certificate{}
	if err := r.Get(ctx, key, cert); err != nil {
		if !apierrors.IsNotFound(err) {
			return true, fmt.Errorf("reading Certificate %s: %w", key, err)
		}
		s.certReason, cs.Message = meshv1.ReasonCertificatePending, "waiting for the Certificate to be created"
		return false, nil
	}
	s.cert = cert
	cs.NotAfter, cs.RenewalTime = cert.Status.NotAfter, cert.Status.RenewalTime
	cs.Ready = desired.CertificateReady(cert)
	if cs.Ready {
		return false, nil
	}
	var req *cmv1.CertificateRequest
	if !certIssuingFailed(cert) {
		var err error
		if req, err = r.latestRequest(ctx, cert); err != nil {
			return true, err
		}
	}
	s.certReason, cs.Message = certificateProblem(cert, req)
	return false, nil
}

// latestRequest is the CertificateRequest of the Certificate's next revision: it carries
// the Certificate's labels (cert-manager copies them), so the policy's labels find it.
func (r *MeshPolicyReconciler) latestRequest(ctx context.Context, cert *cmv1.Certificate) (*cmv1.CertificateRequest, error) {
	list := &cmv1.CertificateRequestList{}
	if err := r.List(ctx, list, client.InNamespace(cert.Namespace), client.MatchingLabels(cert.Labels)); err != nil {
		return nil, fmt.Errorf("listing CertificateRequests: %w", err)
	}
	var latest *cmv1.CertificateRequest
	for i := range list.Items {
		req := &list.Items[i]
		if !metav1.IsControlledBy(req, cert) {
			continue
		}
		if latest == nil || latest.CreationTimestamp.Before(&req.CreationTimestamp) {
			latest = req
		}
	}
	return latest, nil
}

func certCondition(cert *cmv1.Certificate, t cmv1.CertificateConditionType) *cmv1.CertificateCondition {
	for i := range cert.Status.Conditions {
		if cert.Status.Conditions[i].Type == t {
			return &cert.Status.Conditions[i]
		}
	}
	return nil
}

func certIssuingFailed(cert *cmv1.Certificate) bool {
	c := certCondition(cert, cmv1.CertificateConditionIssuing)
	return c != nil && c.Status == cmmeta.ConditionFalse && c.Reason == cmv1.CertificateRequestReasonFailed
}

// certificateProblem says why a Certificate is not Ready, in cert-manager's words: a
// failed issuance (the Issuing condition carries the request's failure), else what its
// latest request waits for (e.g. an issuer that does not exist), else its Ready condition.
func certificateProblem(cert *cmv1.Certificate, req *cmv1.CertificateRequest) (reason, message string) {
	if c := certCondition(cert, cmv1.CertificateConditionIssuing); certIssuingFailed(cert) {
		return meshv1.ReasonCertificateNotReady, fmt.Sprintf("cert-manager: %s: %s", c.Reason, c.Message)
	}
	if req != nil {
		for _, c := range req.Status.Conditions {
			if c.Type != cmv1.CertificateRequestConditionReady || c.Status == cmmeta.ConditionTrue {
				continue
			}
			reason := meshv1.ReasonCertificatePending
			if c.Reason == cmv1.CertificateRequestReasonFailed || c.Reason == cmv1.CertificateRequestReasonDenied {
				reason = meshv1.ReasonCertificateNotReady
			}
			return reason, fmt.Sprintf("cert-manager: CertificateRequest %s: %s: %s", req.Name, c.Reason, c.Message)
		}
	}
	if c := certCondition(cert, cmv1.CertificateConditionReady); c != nil {
		return meshv1.ReasonCertificatePending, fmt.Sprintf("cert-manager: %s: %s", c.Reason, c.Message)
	}
	return meshv1.ReasonCertificatePending, "waiting for cert-manager to issue the certificate"
}

// serveHTTPS says whether the Gateway may name the Certificate's Secret (desired.ServesHTTPS).
func (s *policyScope) serveHTTPS() bool {
	return s.certStatus != nil && desired.ServesHTTPS(s.cert, s.now)
}

// checkConsistency looks for what the renderer cannot see: a DestinationRule of another
// author whose client TLS contradicts the mTLS mode (refused, like the renderer's own
// contradictions), and service accounts the authorization names that do not exist
// (warnings: the account may come later, and an unknown caller is simply not matched).
func (r *MeshPolicyReconciler) checkConsistency(ctx context.Context, s *policyScope) (bool, error) {
	p := s.policy
	if p.Spec.MTLS != nil {
		list := &istionetv1.DestinationRuleList{}
		if err := r.List(ctx, list, client.InNamespace(p.Namespace)); err != nil {
			return true, fmt.Errorf("listing DestinationRules: %w", err)
		}
		var msgs []string
		for _, dr := range list.Items {
			if dr.Labels[meshv1.LabelManagedBy] == meshv1.ManagedByValue || hostService(dr.Spec.GetHost(), dr.Namespace) != s.svc.Name {
				continue
			}
			msgs = append(msgs, tlsContradictions(dr, p.Spec.MTLS)...)
		}
		if len(msgs) > 0 {
			s.block(meshv1.ReasonInconsistent, strings.Join(msgs, "; "), true)
			return true, nil
		}
	}
	for _, sa := range serviceAccountRefs(p) {
		ns, name, _ := strings.Cut(sa.ref, "/")
		err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &corev1.ServiceAccount{})
		switch {
		case apierrors.IsNotFound(err):
			s.warnings = append(s.warnings, policyWarning{meshv1.ReasonServiceAccountNotFound,
				fmt.Sprintf("%s: ServiceAccount %s does not exist: the rule matches no caller until it does", sa.path, sa.ref)})
		case err != nil:
			return true, fmt.Errorf("reading ServiceAccount %s: %w", sa.ref, err)
		}
	}
	return false, nil
}

// tlsContradictions reports the client TLS settings of a DestinationRule that cannot reach
// workloads in the given mTLS mode: STRICT accepts only Istio mTLS, DISABLE never does.
// Port-level settings are judged against the mode of the same port when the policy
// overrides it (both speak of the port number).
func tlsContradictions(dr *istionetv1.DestinationRule, m *meshv1.MTLS) []string {
	tp := dr.Spec.GetTrafficPolicy()
	if tp == nil {
		return nil
	}
	var out []string
	check := func(where string, clientTLS string, server meshv1.MTLSMode, serverField string) {
		switch {
		case clientTLS == "":
		case server == meshv1.MTLSStrict && clientTLS != "ISTIO_MUTUAL":
			out = append(out, fmt.Sprintf("DestinationRule %s %s is %s, which cannot reach workloads whose %s is STRICT: use ISTIO_MUTUAL or remove it", dr.Name, where, clientTLS, serverField))
		case server == meshv1.MTLSDisable && clientTLS == "ISTIO_MUTUAL":
			out = append(out, fmt.Sprintf("DestinationRule %s %s is ISTIO_MUTUAL, which cannot reach workloads whose %s is DISABLE", dr.Name, where, serverField))
		}
	}
	if t := tp.GetTls(); t != nil {
		check("trafficPolicy.tls.mode", t.GetMode().String(), m.Mode, "spec.mtls.mode")
	}
	for _, pl := range tp.GetPortLevelSettings() {
		t := pl.GetTls()
		if t == nil {
			continue
		}
		port := int32(pl.GetPort().GetNumber())
		mode, field := m.Mode, "spec.mtls.mode"
		if i := slices.IndexFunc(m.PortLevel, func(x meshv1.PortMTLS) bool { return x.Port == port }); i >= 0 {
			mode, field = m.PortLevel[i].Mode, fmt.Sprintf("spec.mtls.portLevel[%d].mode", i)
		}
		check(fmt.Sprintf("trafficPolicy.portLevelSettings[port %d].tls.mode", port), t.GetMode().String(), mode, field)
	}
	return out
}

// hostService is the Service of namespace ns a DestinationRule host names, or "" when it
// names something else (another namespace, an external host, a wildcard).
func hostService(host, ns string) string {
	name, rest, _ := strings.Cut(host, ".")
	switch rest {
	case "", ns, ns + ".svc", ns + ".svc.cluster.local":
		if name == "*" {
			return ""
		}
		return name
	}
	return ""
}

type serviceAccountRef struct{ path, ref string }

// serviceAccountRefs are the "namespace/name" service accounts a policy's authorization
// names, with their field paths.
func serviceAccountRefs(p *meshv1.MeshPolicy) []serviceAccountRef {
	a := p.Spec.Authorization
	if a == nil {
		return nil
	}
	var out []serviceAccountRef
	for i, rule := range a.Rules {
		for j, src := range rule.From {
			for k, sa := range src.ServiceAccounts {
				if ns, name, ok := strings.Cut(sa, "/"); ok && ns != "" && name != "" {
					out = append(out, serviceAccountRef{fmt.Sprintf("spec.authorization.rules[%d].from[%d].serviceAccounts[%d]", i, j, k), sa})
				}
			}
		}
	}
	return out
}
