package dashboard

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/duration"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// PolicyView is a MeshPolicy as the policies view shows it: per service, what the mesh
// does for it, in words.
type PolicyView struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Service   string `json:"service"`
	Ready     string `json:"ready"`
	Reason    string `json:"reason"`
	Message   string `json:"message"`
	MTLS      string `json:"mtls"`
	// Callers says who may call the service.
	Callers    []string `json:"callers"`
	Resilience []string `json:"resilience"`
	External   []string `json:"external"`
	Ingress    []Host   `json:"ingress"`
	Objects    []string `json:"objects"`
	// Rollout is where a change stands when the policy has spec.rollout; nil without it.
	Rollout *PolicyRolloutView `json:"rollout,omitempty"`
}

// PolicyRolloutView is a MeshPolicy's rollout (spec.rollout) as kubectl canopy status
// meshpolicy/NAME tells it.
type PolicyRolloutView struct {
	// Phase is DryRun, Held or Enforced ("Pending" before canopy first reported).
	Phase   string `json:"phase"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
	// Since is when the change's window started, with its age.
	Since string `json:"since"`
	// Calls are the calls the change would have denied and the clients that still call
	// without mTLS, most frequent first.
	Calls []string `json:"calls"`
	// Waiting is whether a change waits, so promote and abort apply.
	Waiting bool `json:"waiting"`
}

// Host is an ingress host and its certificate's state.
type Host struct {
	Host        string `json:"host"`
	Certificate string `json:"certificate"`
	Ready       bool   `json:"ready"`
	Expires     string `json:"expires"`
	Message     string `json:"message"`
}

func policyView(p *meshv1.MeshPolicy, now time.Time) PolicyView {
	s := &p.Spec
	v := PolicyView{Namespace: p.Namespace, Name: p.Name, Service: s.TargetRef.Name, MTLS: "mesh default (not set)"}
	if c := meta.FindStatusCondition(p.Status.Conditions, meshv1.ConditionReady); c != nil {
		v.Ready, v.Reason, v.Message = string(c.Status), c.Reason, c.Message
	}
	if s.MTLS != nil {
		v.MTLS = string(s.MTLS.Mode)
		for _, pl := range s.MTLS.PortLevel {
			v.MTLS += fmt.Sprintf(", port %d %s", pl.Port, pl.Mode)
		}
	}
	v.Callers = callers(s.Authorization)
	v.Resilience = resilience(s.Resilience)
	for _, e := range s.ExternalServices {
		ports := make([]string, 0, len(e.Ports))
		for _, port := range e.Ports {
			ports = append(ports, fmt.Sprintf("%d/%s", port.Number, port.Protocol))
		}
		line := fmt.Sprintf("%s: %s (%s)", e.Name, strings.Join(e.Hosts, ", "), strings.Join(ports, ", "))
		if e.TLSOrigination != nil {
			line += fmt.Sprintf(", TLS originated to port %d", e.TLSOrigination.Port)
		}
		v.External = append(v.External, line)
	}
	if in := s.Ingress; in != nil {
		for _, h := range in.Hosts {
			host := Host{Host: h, Certificate: "plain HTTP (no tls)"}
			if in.TLS != nil {
				host.Certificate = "not issued yet"
				for _, c := range p.Status.Certificates {
					host.Certificate = c.Namespace + "/" + c.Name
					host.Ready, host.Message = c.Ready, c.Message
					if c.NotAfter != nil {
						d := c.NotAfter.Sub(now)
						host.Expires = c.NotAfter.UTC().Format(time.RFC3339)
						if d > 0 {
							host.Expires += " (in " + duration.HumanDuration(d) + ")"
						} else {
							host.Expires += " (expired)"
						}
					}
				}
			}
			v.Ingress = append(v.Ingress, host)
		}
	}
	for _, o := range p.Status.Objects {
		v.Objects = append(v.Objects, fmt.Sprintf("%s %s: %s", o.Kind, o.Name, o.State))
	}
	v.Rollout = rolloutView(p, now)
	return v
}

func rolloutView(p *meshv1.MeshPolicy, now time.Time) *PolicyRolloutView {
	if p.Spec.Rollout == nil {
		return nil
	}
	st := p.Status.Rollout
	if st == nil {
		return &PolicyRolloutView{Phase: "Pending", Message: "not analysed yet"}
	}
	v := &PolicyRolloutView{Phase: st.Phase, Reason: st.Reason, Message: st.Message,
		Waiting: st.Phase == meshv1.PolicyPhaseDryRun || st.Phase == meshv1.PolicyPhaseHeld}
	if st.DryRunSince != nil && v.Waiting {
		v.Since = st.DryRunSince.UTC().Format(time.RFC3339) + " (" + duration.HumanDuration(now.Sub(st.DryRunSince.Time)) + " ago)"
	}
	for _, c := range st.DeniedCalls {
		v.Calls = append(v.Calls, fmt.Sprintf("would deny %s %s from %s (%d requests)", orAny(nonEmpty(c.Method)), orAny(nonEmpty(c.Path)), c.SourcePrincipal, c.Count))
	}
	for _, c := range st.PlaintextClients {
		v.Calls = append(v.Calls, fmt.Sprintf("calls without mTLS: %s/%s (%d requests)", c.Namespace, c.Workload, c.Count))
	}
	return v
}

// nonEmpty is s as a list of one, or none when s is empty.
func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

func callers(a *meshv1.Authorization) []string {
	if a == nil {
		return []string{"anyone (no authorization)"}
	}
	var out []string
	if a.DefaultDeny {
		out = append(out, "nobody but the rules below (default deny)")
	}
	action := string(a.Action)
	if action == "" {
		action = "ALLOW"
	}
	for _, r := range a.Rules {
		var from, to []string
		for _, f := range r.From {
			from = appendList(from, "service accounts", f.ServiceAccounts)
			from = appendList(from, "namespaces", f.Namespaces)
			from = appendList(from, "principals", f.Principals)
			from = appendList(from, "not service accounts", f.NotServiceAccounts)
			from = appendList(from, "not namespaces", f.NotNamespaces)
			from = appendList(from, "not principals", f.NotPrincipals)
		}
		for _, t := range r.To {
			to = appendList(to, "methods", t.Methods)
			to = appendList(to, "paths", t.Paths)
			if len(t.Ports) > 0 {
				to = append(to, fmt.Sprintf("ports %v", t.Ports))
			}
		}
		line := action + " from " + orAny(from)
		if len(to) > 0 {
			line += " to " + strings.Join(to, "; ")
		}
		if len(r.When) > 0 {
			line += fmt.Sprintf(" (%d conditions)", len(r.When))
		}
		out = append(out, line)
	}
	if len(out) == 0 {
		out = append(out, action+" with no rules")
	}
	return out
}

func appendList(out []string, what string, vals []string) []string {
	if len(vals) == 0 {
		return out
	}
	return append(out, what+" "+strings.Join(vals, ", "))
}

func orAny(s []string) string {
	if len(s) == 0 {
		return "anyone"
	}
	return strings.Join(s, "; ")
}

func resilience(r *meshv1.Resilience) []string {
	if r == nil {
		return []string{"mesh defaults"}
	}
	var out []string
	if r.Timeout != "" {
		out = append(out, "timeout "+string(r.Timeout))
	}
	if rt := r.Retries; rt != nil {
		out = append(out, "retries "+compact(rt))
	}
	if cb := r.CircuitBreaker; cb != nil {
		out = append(out, "circuit breaking "+compact(cb))
	}
	if cp := r.ConnectionPool; cp != nil {
		out = append(out, "connection pool "+compact(cp))
	}
	if r.LoadBalancer != "" {
		out = append(out, "load balancer "+string(r.LoadBalancer))
	}
	if len(out) == 0 {
		out = append(out, "mesh defaults")
	}
	return out
}

// compact is a spec struct as its JSON fields, without braces or quotes: "attempts:3, perTryTimeout:2s".
func compact(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	r := strings.NewReplacer(`"`, "", "{", "", "}", "", ",", ", ")
	return r.Replace(string(b))
}
