package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	security "istio.io/api/security/v1beta1"
	istiosecv1 "istio.io/client-go/pkg/apis/security/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/analysis/providers"
	"canopy.dev/canopy/internal/analysis/providers/prometheus"
	"canopy.dev/canopy/internal/cli"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/test/meshsim"
	"canopy.dev/canopy/test/testenv"
)

// policyWindow is the rollouts' analysis window here: a few scrapes and analyses.
const policyWindow = 20 * time.Second

// rolloutPolicy is a MeshPolicy of reviews with a route (so the simulator sends it
// traffic) and a short rollout window.
func rolloutPolicy(ns string) *meshv1.MeshPolicy {
	return &meshv1.MeshPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"},
		Spec: meshv1.MeshPolicySpec{
			TargetRef: meshv1.ServiceRef{Name: "reviews"},
			Routes:    []meshv1.Route{{Name: "all"}},
			Rollout:   &meshv1.PolicyRollout{Window: meshv1.Duration(policyWindow.String()), Interval: "3s"},
		},
	}
}

// A policy change is analysed in Istio's dry-run with istiod, the mesh simulator (which
// evaluates the dry-run AuthorizationPolicies istiod sends the destination's sidecar) and
// Prometheus: one that would deny the real client is held and never enforced, naming the
// call; a harmless one is enforced after its window; a move to STRICT waits while a
// client calls in plaintext.
func TestMeshPolicyProgressiveChanges(t *testing.T) {
	testenv.SkipIfShort(t)
	denyNS, okNS, strictNS := env.CreateNamespace(t), env.CreateNamespace(t), env.CreateNamespace(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var addrs []string
	for _, o := range []meshsim.Options{
		{Namespaces: []string{denyNS, okNS}, Authorization: true},
		{Namespaces: []string{strictNS}, Plaintext: true},
	} {
		o.XDSAddress, o.RequestsPerSecond = env.Istio.XDSAddress, 20
		sim, err := meshsim.Start(ctx, env.Config, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cancel(); <-sim.Done() })
		addrs = append(addrs, sim.Addr())
	}
	prom, err := testenv.StartPrometheus(testenv.PrometheusOptions{Targets: addrs, ScrapeInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Prometheus log:\n%s", prom.Log())
		}
		_ = prom.Close()
	})
	startOperator(t, manager.Options{WatchNamespaces: strings.Join([]string{denyNS, okNS, strictNS}, ","), PrometheusAddress: prom.URL()})

	caller := func(ns string) string { return render.Principal(ns, "default") } // the simulator's client
	deny := rolloutPolicy(denyNS)
	deny.Spec.Authorization = &meshv1.Authorization{Rules: []meshv1.AuthorizationRule{{From: []meshv1.AuthorizationSource{{ServiceAccounts: []string{denyNS + "/web"}}}}}}
	// Harmless: the client is in the namespace and sends mTLS, so STRICT refuses nothing.
	harmless := rolloutPolicy(okNS)
	harmless.Spec.Authorization = &meshv1.Authorization{Rules: []meshv1.AuthorizationRule{{From: []meshv1.AuthorizationSource{{Namespaces: []string{okNS}}}}}}
	harmless.Spec.MTLS = &meshv1.MTLS{Mode: meshv1.MTLSStrict}
	// PERMISSIVE first (nothing to analyse: enforced at once), STRICT later.
	strict := rolloutPolicy(strictNS)
	strict.Spec.MTLS = &meshv1.MTLS{Mode: meshv1.MTLSPermissive}
	for _, p := range []*meshv1.MeshPolicy{deny, harmless, strict} {
		deployService(t, p.Namespace, "reviews")
		if err := env.Client.Create(t.Context(), p); err != nil {
			t.Fatal(err)
		}
	}

	// In force, an AuthorizationPolicy of the policy without the dry-run annotation.
	enforced := func(ns string) []string {
		list := &istiosecv1.AuthorizationPolicyList{}
		if err := env.Client.List(t.Context(), list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, ap := range list.Items {
			if !render.IsDryRun(ap) {
				out = append(out, ap.Name)
			}
		}
		return out
	}

	t.Run("a change that would deny a client is held", func(t *testing.T) {
		// While in dry-run, the new rules are applied beside (here: instead of nothing) in
		// Istio's dry-run mode only.
		sawDryRun := false
		p := waitPolicy(t, denyNS, "reviews", func(p *meshv1.MeshPolicy) error {
			if got := enforced(denyNS); len(got) > 0 {
				t.Fatalf("AuthorizationPolicies %v are enforced while the change is analysed", got)
			}
			ap := &istiosecv1.AuthorizationPolicy{}
			if err := env.Client.Get(t.Context(), objKey(denyNS, "reviews"+render.DryRunSuffix), ap); err == nil && render.IsDryRun(ap) && !sawDryRun {
				sawDryRun = true
				// Istio's analyzers find nothing wrong with the rules beside those in force.
				analyzeClean(t, denyNS)
			}
			return expectPolicyCondition(p, meshv1.ConditionPolicyRollout, metav1.ConditionFalse, "WouldDeny", "would have denied", caller(denyNS))
		})
		if !sawDryRun {
			t.Errorf("the dry-run AuthorizationPolicy was never seen")
		}
		st := p.Status.Rollout
		if st == nil || st.Phase != meshv1.PolicyPhaseHeld || len(st.DeniedCalls) == 0 {
			t.Fatalf("status.rollout: %+v", st)
		}
		if c := st.DeniedCalls[0]; c.SourcePrincipal != caller(denyNS) || c.Method != "GET" || c.Path != "/" || c.Count < 1 {
			t.Errorf("denied call: %+v", c)
		}
		// Held: the dry-run copy goes, nothing is enforced, and that stays so.
		testenv.Eventually(t, 30*time.Second, func() error {
			err := env.Client.Get(t.Context(), objKey(denyNS, "reviews"+render.DryRunSuffix), &istiosecv1.AuthorizationPolicy{})
			if !apierrors.IsNotFound(err) {
				return fmt.Errorf("the dry-run AuthorizationPolicy is still there (%v)", err)
			}
			return nil
		})
		time.Sleep(policyWindow)
		if got := enforced(denyNS); len(got) > 0 {
			t.Fatalf("AuthorizationPolicies %v were enforced after the change was held", got)
		}
		if evs := policyEvents(t, denyNS, "reviews", "WouldDeny"); len(evs) != 1 || !strings.Contains(evs[0].Note, "GET / from "+caller(denyNS)) {
			t.Errorf("WouldDeny events: %s", notes(evs))
		}
		// What the user sees: the held change, the call it would deny, the event.
		policyStatusShows(t, denyNS, "Rollout    Held: the new authorization would have denied", "Reason     WouldDeny",
			"Would deny", caller(denyNS)+"   GET      /", "PolicyRollout", "Warning   WouldDeny")
		// kubectl canopy diff of the policy's manifest sees what the operator keeps applied.
		if out := policyDiff(t, denyNS); strings.Contains(out, "AuthorizationPolicy") {
			t.Errorf("kubectl canopy diff of a held policy shows an AuthorizationPolicy:\n%s", out)
		}
	})

	t.Run("a held change is enforced on request", func(t *testing.T) {
		out := kubectlCanopy(t, 0, "promote", "meshpolicy/reviews", "-n", denyNS, "--wait")
		if !strings.Contains(out, "canopy handled promote: "+denyNS+"/meshpolicy/reviews is Enforced: promoted by request promote:") {
			t.Errorf("kubectl canopy promote meshpolicy/reviews --wait:\n%s", out)
		}
		waitPolicy(t, denyNS, "reviews", func(p *meshv1.MeshPolicy) error {
			return expectPolicyCondition(p, meshv1.ConditionPolicyRollout, metav1.ConditionTrue, "Enforced", "promoted by request promote:")
		})
		testenv.Eventually(t, 30*time.Second, func() error {
			if got := enforced(denyNS); !slices.Equal(got, []string{"reviews"}) {
				return fmt.Errorf("enforced AuthorizationPolicies %v, want [reviews]", got)
			}
			return nil
		})
	})

	t.Run("a harmless change is enforced after its window", func(t *testing.T) {
		p := waitPolicy(t, okNS, "reviews", func(p *meshv1.MeshPolicy) error {
			return expectPolicyCondition(p, meshv1.ConditionPolicyRollout, metav1.ConditionTrue, "Enforced", "enforced after a window of "+policyWindow.String())
		})
		if since := p.Status.Rollout; since == nil || since.Phase != meshv1.PolicyPhaseEnforced || len(since.DeniedCalls) != 0 {
			t.Errorf("status.rollout: %+v", since)
		}
		// The simulator did evaluate the dry-run rules, and they allowed the client.
		q := fmt.Sprintf(`sum(istio_requests_total{reporter="destination", destination_service_namespace=%q, dry_run_result="allowed", source_principal="spiffe://%s"})`, okNS, render.Principal(okNS, "default"))
		if n, err := promClient(t, prom.URL()).Query(t.Context(), q); err != nil || n < 1 {
			t.Errorf("%s: %v, %v: the harmless rules were never evaluated", q, n, err)
		}
		testenv.Eventually(t, 30*time.Second, func() error {
			if got := enforced(okNS); !slices.Equal(got, []string{"reviews"}) {
				return fmt.Errorf("enforced AuthorizationPolicies %v, want [reviews]", got)
			}
			if mode := peerMode(t, okNS); mode != security.PeerAuthentication_MutualTLS_STRICT {
				return fmt.Errorf("PeerAuthentication reviews: mode %v, want STRICT", mode)
			}
			if err := env.Client.Get(t.Context(), objKey(okNS, "reviews"+render.DryRunSuffix), &istiosecv1.AuthorizationPolicy{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("the dry-run AuthorizationPolicy is still there (%v)", err)
			}
			return nil
		})
	})

	t.Run("PERMISSIVE to STRICT waits for plaintext clients", func(t *testing.T) {
		waitPolicy(t, strictNS, "reviews", func(p *meshv1.MeshPolicy) error {
			return expectPolicyCondition(p, meshv1.ConditionPolicyRollout, metav1.ConditionTrue, "Enforced")
		})
		if mode := peerMode(t, strictNS); mode != security.PeerAuthentication_MutualTLS_PERMISSIVE {
			t.Fatalf("PeerAuthentication reviews: mode %v, want PERMISSIVE in force", mode)
		}
		p := waitPolicy(t, strictNS, "reviews", func(*meshv1.MeshPolicy) error { return nil })
		p.Spec.MTLS = &meshv1.MTLS{Mode: meshv1.MTLSStrict}
		if err := env.Client.Update(t.Context(), p); err != nil {
			t.Fatal(err)
		}
		p = waitPolicy(t, strictNS, "reviews", func(p *meshv1.MeshPolicy) error {
			return expectPolicyCondition(p, meshv1.ConditionPolicyRollout, metav1.ConditionFalse, "PlaintextClients", strictNS+"/meshsim-client")
		})
		if st := p.Status.Rollout; st == nil || st.Reason != "PlaintextClients" || len(st.PlaintextClients) != 1 || st.PlaintextClients[0].Workload != "meshsim-client" {
			t.Errorf("status.rollout: %+v", st)
		}
		if evs := policyEvents(t, strictNS, "reviews", "PlaintextClients"); len(evs) != 1 || !strings.Contains(evs[0].Note, strictNS+"/meshsim-client") {
			t.Errorf("PlaintextClients events: %s", notes(evs))
		}
		time.Sleep(policyWindow)
		analyzeClean(t, okNS, strictNS)
		if mode := peerMode(t, strictNS); mode != security.PeerAuthentication_MutualTLS_PERMISSIVE {
			t.Errorf("PeerAuthentication reviews: mode %v, want PERMISSIVE kept in force", mode)
		}
		policyStatusShows(t, strictNS, "Held: clients called without mTLS", "Reason     PlaintextClients", "Plaintext clients", strictNS+"   meshsim-client")
	})

	t.Run("an aborted change stays out of force", func(t *testing.T) {
		out := kubectlCanopy(t, 0, "abort", "meshpolicy/reviews", "-n", strictNS, "--wait")
		if !strings.Contains(out, "canopy handled abort: "+strictNS+"/meshpolicy/reviews is Held: aborted by request abort:") {
			t.Errorf("kubectl canopy abort meshpolicy/reviews --wait:\n%s", out)
		}
		p := waitPolicy(t, strictNS, "reviews", func(p *meshv1.MeshPolicy) error {
			return expectPolicyCondition(p, meshv1.ConditionPolicyRollout, metav1.ConditionFalse, "Aborted", "aborted by request abort:")
		})
		analysed := p.Status.Rollout.LastAnalysis
		time.Sleep(2 * policyWindow / 3) // several intervals: aborted, nothing is asked again
		p = waitPolicy(t, strictNS, "reviews", func(p *meshv1.MeshPolicy) error {
			return expectPolicyCondition(p, meshv1.ConditionPolicyRollout, metav1.ConditionFalse, "Aborted")
		})
		if st := p.Status.Rollout; st.Reason != "Aborted" || !st.LastAnalysis.Equal(analysed) {
			t.Errorf("status.rollout after the abort: %+v (last analysis was %v)", st, analysed)
		}
		if mode := peerMode(t, strictNS); mode != security.PeerAuthentication_MutualTLS_PERMISSIVE {
			t.Errorf("PeerAuthentication reviews: mode %v, want PERMISSIVE kept in force", mode)
		}
		if evs := policyEvents(t, strictNS, "reviews", "Aborted"); len(evs) != 1 || evs[0].Type != "Warning" {
			t.Errorf("Aborted events: %s", notes(evs))
		}
		if out := policyDiff(t, strictNS); !strings.Contains(out, "PeerAuthentication "+strictNS+"/reviews: same") {
			t.Errorf("kubectl canopy diff of an aborted move to STRICT:\n%s", out)
		}
	})
}

// peerMode is the mTLS mode of the PeerAuthentication reviews in force in ns (UNSET when
// there is none).
func peerMode(t *testing.T, ns string) security.PeerAuthentication_MutualTLS_Mode {
	t.Helper()
	pa := &istiosecv1.PeerAuthentication{}
	if err := env.Client.Get(t.Context(), objKey(ns, "reviews"), pa); apierrors.IsNotFound(err) {
		return security.PeerAuthentication_MutualTLS_UNSET
	} else if err != nil {
		t.Fatal(err)
	}
	return pa.Spec.GetMtls().GetMode()
}

// policyStatusShows fails the test unless kubectl canopy status meshpolicy/reviews prints
// each of wants.
func policyStatusShows(t *testing.T, ns string, wants ...string) {
	t.Helper()
	out := kubectlCanopy(t, 0, "status", "meshpolicy/reviews", "-n", ns)
	for _, want := range wants {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl canopy status meshpolicy/reviews: no %q in\n%s", want, out)
		}
	}
}

// policyDiff runs kubectl canopy diff on the manifest of the MeshPolicy reviews of ns as
// the cluster has it, wants no difference, and returns the output.
func policyDiff(t *testing.T, ns string) string {
	t.Helper()
	live := waitPolicy(t, ns, "reviews", func(*meshv1.MeshPolicy) error { return nil })
	manifest := &meshv1.MeshPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: meshv1.GroupVersion.String(), Kind: "MeshPolicy"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"},
		Spec:       live.Spec,
	}
	b, err := yaml.Marshal(manifest)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return kubectlCanopy(t, 0, "diff", "-f", file, "-n", ns)
}

// kubectlCanopy runs the plugin against the local cluster, fails the test unless it exits
// with code, and returns its output.
func kubectlCanopy(t *testing.T, code int, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append([]string{"--kubeconfig", env.Kubeconfig}, args...)
	if got := cli.Main(t.Context(), args, cli.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}); got != code {
		t.Fatalf("kubectl canopy %s: exit %d, want %d\n%s%s", strings.Join(args[2:], " "), got, code, out.String(), errOut.String())
	}
	return out.String()
}

func objKey(ns, name string) client.ObjectKey { return client.ObjectKey{Namespace: ns, Name: name} }

// policyEvents lists the events about the MeshPolicy with reason, oldest first.
func policyEvents(t *testing.T, ns, name, reason string) []eventsv1.Event {
	t.Helper()
	return eventsAbout(t, ns, "MeshPolicy", name, reason)
}

// analyzeClean fails the test on any finding of istioctl analyze in the namespaces.
func analyzeClean(t *testing.T, namespaces ...string) {
	t.Helper()
	msgs, err := env.AnalyzeIstio(t.Context(), namespaces...)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		t.Errorf("istioctl analyze: %s", m)
	}
}

func promClient(t *testing.T, addr string) *prometheus.Client {
	t.Helper()
	c, err := prometheus.New(providers.Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A namespace editor points a MeshPolicy's rollout at an address of the operator's network
// (loopback here, standing for a service on the operator's node): the URL policy of
// Canaries' providers refuses it before anything is dialed, the status names the field,
// and the change, never analysed, is never enforced.
func TestTenantPolicyRolloutProviderRefused(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	tc := tenantClient(t, ns)
	startOperator(t, manager.Options{WatchNamespaces: ns})
	internal := newReceiver(t, nil)
	deployService(t, ns, "reviews")
	p := rolloutPolicy(ns)
	p.Spec.Rollout = &meshv1.PolicyRollout{Window: "3s", Interval: "1s", Provider: &meshv1.MetricProvider{Address: internal.URL}}
	p.Spec.Authorization = &meshv1.Authorization{Rules: []meshv1.AuthorizationRule{{From: []meshv1.AuthorizationSource{{Namespaces: []string{ns}}}}}}
	if err := tc.Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	waitPolicy(t, ns, "reviews", func(p *meshv1.MeshPolicy) error {
		return expectPolicyCondition(p, meshv1.ConditionPolicyRollout, metav1.ConditionFalse, "AnalysisFailed",
			"MeshPolicy "+ns+"/reviews spec.rollout.provider.address", "refused range 127.0.0.0/8 (loopback)")
	})
	time.Sleep(5 * time.Second) // past the window
	if err := env.Client.Get(t.Context(), objKey(ns, "reviews"), &istiosecv1.AuthorizationPolicy{}); !apierrors.IsNotFound(err) {
		t.Errorf("AuthorizationPolicy reviews is enforced without an analysis (%v)", err)
	}
	if got := internal.requests(); len(got) != 0 {
		t.Errorf("the operator queried the loopback address %d times", len(got))
	}
}
