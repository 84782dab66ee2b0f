package install

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"canopy.dev/canopy/internal/manager"
)

// expectation is what a rendering must hold besides the invariants.
type expectation struct {
	image string
	// namespace holds every namespaced object except the Roles of watched namespaces.
	namespace string
	// flagsNotInTree are manager flags the rendering may pass that this tree's manager
	// does not define (see webhookManifests); they are left out of the flag check.
	flagsNotInTree []string
}

// clusterScoped are the cluster-scoped kinds the install paths render.
var clusterScoped = []string{
	"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
	"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
	"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
}

// rendering is a parsed rendering with typed views of the objects the checks follow.
type rendering struct {
	objs       []*unstructured.Unstructured
	deployment *appsv1.Deployment
	options    manager.Options
}

func find(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, u := range objs {
		if u.GetKind() == kind {
			out = append(out, u)
		}
	}
	return out
}

func findNamed(objs []*unstructured.Unstructured, kind, namespace, name string) *unstructured.Unstructured {
	for _, u := range find(objs, kind) {
		if u.GetNamespace() == namespace && u.GetName() == name {
			return u
		}
	}
	return nil
}

func convert[T any](t testing.TB, u *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, out, true); err != nil {
		t.Fatalf("%s: %v", describe(u), err)
	}
	return out
}

// check runs every invariant on a rendering and returns its typed views.
func check(t *testing.T, objs []*unstructured.Unstructured, want expectation) rendering {
	t.Helper()
	r := rendering{objs: objs}
	checkLabelsAndNamespaces(t, objs, want)
	checkRBAC(t, objs)
	r.deployment, r.options = checkDeployment(t, objs, want)
	checkServices(t, objs, r.deployment)
	checkWebhooks(t, objs, r.deployment)
	return r
}

func checkLabelsAndNamespaces(t *testing.T, objs []*unstructured.Unstructured, want expectation) {
	t.Helper()
	for _, u := range objs {
		if got := u.GetLabels()["app.kubernetes.io/part-of"]; got != "canopy" {
			t.Errorf("%s: label app.kubernetes.io/part-of is %q, want canopy", describe(u), got)
		}
		switch {
		case slices.Contains(clusterScoped, u.GetKind()):
			if u.GetNamespace() != "" {
				t.Errorf("%s: a cluster-scoped object with a namespace", describe(u))
			}
		case u.GetNamespace() == "":
			t.Errorf("%s: a namespaced object without a namespace", describe(u))
		case u.GetNamespace() != want.namespace && !slices.Contains([]string{"Role", "RoleBinding"}, u.GetKind()):
			t.Errorf("%s: not in the install namespace %s", describe(u), want.namespace)
		}
	}
}

// checkRBAC refuses wildcards: canopy's rules list what it uses, and a wildcard would
// silently grant what a future API adds.
func checkRBAC(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, u := range append(find(objs, "ClusterRole"), find(objs, "Role")...) {
		role := convert[rbacv1.ClusterRole](t, u)
		if len(role.Rules) == 0 {
			t.Errorf("%s: no rules", describe(u))
		}
		for _, rule := range role.Rules {
			for _, list := range [][]string{rule.APIGroups, rule.Resources, rule.Verbs, rule.ResourceNames, rule.NonResourceURLs} {
				if slices.Contains(list, "*") {
					t.Errorf("%s: a wildcard in rule %v", describe(u), rule)
				}
			}
		}
	}
}

// checkDeployment checks the manager's Deployment and parses its arguments with the
// manager's own flag set, as main.go binds it.
func checkDeployment(t *testing.T, objs []*unstructured.Unstructured, want expectation) (*appsv1.Deployment, manager.Options) {
	t.Helper()
	deps := find(objs, "Deployment")
	if len(deps) != 1 {
		t.Fatalf("%d Deployments rendered, want 1", len(deps))
	}
	d := convert[appsv1.Deployment](t, deps[0])
	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("Deployment %s: %d containers, want the manager only", d.Name, len(d.Spec.Template.Spec.Containers))
	}
	c := d.Spec.Template.Spec.Containers[0]
	if c.Image != want.image {
		t.Errorf("Deployment %s: image %q, want %q", d.Name, c.Image, want.image)
	}
	if !labels.SelectorFromSet(d.Spec.Selector.MatchLabels).Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("Deployment %s: selector %v does not select its pods %v", d.Name, d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
	}
	if psc := d.Spec.Template.Spec.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("Deployment %s: the pod does not require a non-root user", d.Name)
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("Deployment %s: the manager's root filesystem is writable or it may escalate privileges", d.Name)
	}
	if c.LivenessProbe == nil || c.ReadinessProbe == nil {
		t.Errorf("Deployment %s: the manager has no liveness or readiness probe", d.Name)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("Deployment %s: the manager has no CPU request or memory limit", d.Name)
	}
	if sa := d.Spec.Template.Spec.ServiceAccountName; findNamed(objs, "ServiceAccount", d.Namespace, sa) == nil {
		t.Errorf("Deployment %s: service account %q is not rendered", d.Name, sa)
	}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret == nil {
			continue
		}
		if len(find(objs, "Certificate")) > 0 && !slices.ContainsFunc(find(objs, "Certificate"), func(u *unstructured.Unstructured) bool {
			name, _, _ := unstructured.NestedString(u.Object, "spec", "secretName")
			return name == v.Secret.SecretName
		}) {
			t.Errorf("Deployment %s: volume %s mounts Secret %s, which no Certificate writes", d.Name, v.Name, v.Secret.SecretName)
		}
	}

	var opts manager.Options
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	opts.BindFlags(fs)
	(&zap.Options{}).BindFlags(fs)
	args := slices.DeleteFunc(slices.Clone(c.Args), func(arg string) bool {
		name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		return slices.Contains(want.flagsNotInTree, name)
	})
	if err := fs.Parse(args); err != nil {
		t.Errorf("Deployment %s: the manager refuses its arguments %q: %v", d.Name, c.Args, err)
	}
	if fs.NArg() > 0 {
		t.Errorf("Deployment %s: arguments that are not flags: %q", d.Name, fs.Args())
	}
	// The probes and the metrics port must be where the flags make the manager listen.
	_, probePort, _ := strings.Cut(opts.ProbeAddr, ":")
	for _, probe := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
		if probe == nil || probe.HTTPGet == nil || containerPort(d, probe.HTTPGet.Port.String()) != probePort {
			t.Errorf("Deployment %s: a probe does not target --health-probe-bind-address %q", d.Name, opts.ProbeAddr)
		}
	}
	_, metricsPort, _ := strings.Cut(opts.MetricsAddr, ":")
	if !servesPort(d, metricsPort) || !opts.SecureMetrics {
		t.Errorf("Deployment %s: metrics on %q (secure: %v) are not a declared container port served over HTTPS", d.Name, opts.MetricsAddr, opts.SecureMetrics)
	}
	if *d.Spec.Replicas > 1 && !opts.LeaderElect {
		t.Errorf("Deployment %s: %d replicas without --leader-elect would reconcile twice", d.Name, *d.Spec.Replicas)
	}
	return d, opts
}

// checkServices checks that every Service selects the manager's pods on a port it serves.
func checkServices(t *testing.T, objs []*unstructured.Unstructured, d *appsv1.Deployment) {
	t.Helper()
	for _, u := range find(objs, "Service") {
		svc := convert[corev1.Service](t, u)
		if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("%s: selector %v does not select the manager's pods %v", describe(u), svc.Spec.Selector, d.Spec.Template.Labels)
		}
		for _, p := range svc.Spec.Ports {
			if !servesPort(d, p.TargetPort.String()) {
				t.Errorf("%s: port %s targets %s, which the manager does not serve", describe(u), p.Name, p.TargetPort.String())
			}
		}
	}
	for _, u := range find(objs, "ServiceMonitor") {
		port, _, _ := unstructured.NestedSlice(u.Object, "spec", "endpoints")
		sel, _, _ := unstructured.NestedStringMap(u.Object, "spec", "selector", "matchLabels")
		matched := false
		for _, s := range find(objs, "Service") {
			if labels.SelectorFromSet(sel).Matches(labels.Set(s.GetLabels())) {
				matched = true
				svc := convert[corev1.Service](t, s)
				for _, e := range port {
					name, _ := e.(map[string]any)["port"].(string)
					if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == name }) {
						t.Errorf("%s: endpoint port %q is not a port of %s", describe(u), name, describe(s))
					}
				}
			}
		}
		if !matched {
			t.Errorf("%s: selector %v selects no rendered Service", describe(u), sel)
		}
	}
}

// containerPort returns the number of a container port given by name or number, or "".
func containerPort(d *appsv1.Deployment, port string) string {
	for _, p := range d.Spec.Template.Spec.Containers[0].Ports {
		if p.Name == port || fmt.Sprint(p.ContainerPort) == port {
			return fmt.Sprint(p.ContainerPort)
		}
	}
	if _, err := strconv.Atoi(port); err == nil {
		return port // an undeclared port still receives probes
	}
	return ""
}

func servesPort(d *appsv1.Deployment, port string) bool {
	for _, p := range d.Spec.Template.Spec.Containers[0].Ports {
		if p.Name == port || fmt.Sprint(p.ContainerPort) == port {
			return true
		}
	}
	return false
}

// checkWebhooks follows a webhook configuration to its Service, and its CA injection
// annotation to a Certificate that names that Service.
func checkWebhooks(t *testing.T, objs []*unstructured.Unstructured, d *appsv1.Deployment) {
	t.Helper()
	configs := append(find(objs, "ValidatingWebhookConfiguration"), find(objs, "MutatingWebhookConfiguration")...)
	for _, u := range configs {
		webhooks, _, _ := unstructured.NestedSlice(u.Object, "webhooks")
		if len(webhooks) == 0 {
			t.Errorf("%s: no webhooks", describe(u))
		}
		var svcNames []string
		for _, w := range webhooks {
			svc, _, _ := unstructured.NestedStringMap(w.(map[string]any), "clientConfig", "service")
			if findNamed(objs, "Service", svc["namespace"], svc["name"]) == nil {
				t.Errorf("%s: webhook %v calls Service %s/%s, which is not rendered", describe(u), w.(map[string]any)["name"], svc["namespace"], svc["name"])
			}
			if !strings.HasPrefix(svc["path"], "/validate-") && !strings.HasPrefix(svc["path"], "/mutate-") {
				t.Errorf("%s: webhook path %q is not controller-runtime's", describe(u), svc["path"])
			}
			svcNames = append(svcNames, svc["name"]+"."+svc["namespace"]+".svc")
		}
		ref := u.GetAnnotations()["cert-manager.io/inject-ca-from"]
		ns, name, _ := strings.Cut(ref, "/")
		cert := findNamed(objs, "Certificate", ns, name)
		if cert == nil {
			t.Errorf("%s: cert-manager.io/inject-ca-from %q names no rendered Certificate", describe(u), ref)
			continue
		}
		dnsNames, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
		for _, n := range svcNames {
			if !slices.Contains(dnsNames, n) {
				t.Errorf("%s: the webhook Service's name %s is not among its dnsNames %v", describe(cert), n, dnsNames)
			}
		}
		kind, _, _ := unstructured.NestedString(cert.Object, "spec", "issuerRef", "kind")
		group, _, _ := unstructured.NestedString(cert.Object, "spec", "issuerRef", "group")
		if kind == "" || group == "" {
			// Without cert-manager's webhook nothing defaults them (and the test bed has none).
			t.Errorf("%s: issuerRef without kind or group", describe(cert))
		}
	}
	if len(configs) > 0 && !servesPort(d, "webhook-server") {
		t.Errorf("Deployment %s: webhook configurations rendered but the manager serves no webhook-server port", d.Name)
	}
}

// checkNamespacedScope checks an install that watches the namespaces watched alone: the
// flag, a manager Role in each, no cluster-wide grant to the manager beyond the reviews of
// metrics scrapes, and admission webhooks that judge only those namespaces.
func checkNamespacedScope(t *testing.T, r rendering, watched ...string) {
	t.Helper()
	if got := r.options.WatchNamespaces; got != strings.Join(watched, ",") {
		t.Errorf("--watch-namespaces=%q, want %q", got, strings.Join(watched, ","))
	}
	checkManagerRules(t, r.objs, "Role")
	var ns []string
	for _, role := range find(r.objs, "Role") {
		if strings.HasSuffix(role.GetName(), "-manager") || strings.HasSuffix(role.GetName(), "manager-role") {
			ns = append(ns, role.GetNamespace())
		}
	}
	if !slices.Equal(ns, watched) {
		t.Errorf("manager Roles in %v, want %v", ns, watched)
	}
	for _, u := range find(r.objs, "ClusterRoleBinding") {
		if !strings.Contains(u.GetName(), "metrics-auth") {
			t.Errorf("%s: a cluster-wide grant to the manager in namespaced scope", describe(u))
		}
	}
	for _, u := range append(find(r.objs, "ValidatingWebhookConfiguration"), find(r.objs, "MutatingWebhookConfiguration")...) {
		webhooks, _, _ := unstructured.NestedSlice(u.Object, "webhooks")
		for _, w := range webhooks {
			exprs, _, _ := unstructured.NestedSlice(w.(map[string]any), "namespaceSelector", "matchExpressions")
			ok := len(exprs) == 1
			if ok {
				e := exprs[0].(map[string]any)
				values, _, _ := unstructured.NestedStringSlice(e, "values")
				ok = e["key"] == "kubernetes.io/metadata.name" && e["operator"] == "In" && slices.Equal(values, watched)
			}
			if !ok {
				t.Errorf("%s: webhook %v judges namespaces %v, want only %v", describe(u), w.(map[string]any)["name"], exprs, watched)
			}
		}
	}
}

// checkAdmissionPolicy checks that the rendering has the ValidatingAdmissionPolicy of
// config/admission-policy for the ServiceAccount user, bound with validationActions.
func checkAdmissionPolicy(t *testing.T, objs []*unstructured.Unstructured, user string, validationActions ...string) {
	t.Helper()
	policies, bindings := find(objs, "ValidatingAdmissionPolicy"), find(objs, "ValidatingAdmissionPolicyBinding")
	if len(policies) != 1 || len(bindings) != 1 {
		t.Fatalf("%d ValidatingAdmissionPolicies and %d bindings rendered, want one of each", len(policies), len(bindings))
	}
	conds, _, _ := unstructured.NestedSlice(policies[0].Object, "spec", "matchConditions")
	if len(conds) != 1 || conds[0].(map[string]any)["expression"] != fmt.Sprintf("request.userInfo.username == %q", user) {
		t.Errorf("%s: matches %v, want the manager's ServiceAccount %s", describe(policies[0]), conds, user)
	}
	if name, _, _ := unstructured.NestedString(bindings[0].Object, "spec", "policyName"); name != policies[0].GetName() {
		t.Errorf("%s: binds %q, not the rendered policy %q", describe(bindings[0]), name, policies[0].GetName())
	}
	if got, _, _ := unstructured.NestedStringSlice(bindings[0].Object, "spec", "validationActions"); !slices.Equal(got, validationActions) {
		t.Errorf("%s: validationActions %v, want %v", describe(bindings[0]), got, validationActions)
	}
}
