package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/test/testenv"
)

// The security tests (issue 19) try each attack as a tenant: a ServiceAccount bound to the
// built-in edit ClusterRole in one namespace, into which canopy's editor role is
// aggregated, as a chart install does. What the tenant cannot do itself (read canopy's
// status of another namespace, reach the operator's network) is what canopy must not do
// for it.

// tenantClient returns a client acting as a namespace editor of ns (newTenant also makes
// the namespace).
func tenantClient(t *testing.T, ns string) client.Client {
	t.Helper()
	installEditorRole(t)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tenant"}}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tenant-edit"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "edit"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: "tenant"}},
	}
	for _, o := range []client.Object{sa, binding} {
		if err := env.Client.Create(t.Context(), o); err != nil {
			t.Fatal(err)
		}
	}
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + ns + ":tenant",
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}
	// The aggregation controller copies canopy's editor rules into edit a moment later.
	cs := kubernetes.NewForConfigOrDie(cfg)
	testenv.Eventually(t, time.Minute, func() error {
		for _, res := range []string{"canaries", "meshpolicies", "metrictemplates"} {
			review, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(t.Context(), &authorizationv1.SelfSubjectAccessReview{
				Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
					Verb: "create", Group: meshv1.GroupVersion.Group, Resource: res, Namespace: ns,
				}},
			}, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			if !review.Status.Allowed {
				return fmt.Errorf("the tenant may not create %s yet", res)
			}
		}
		return nil
	})
	expectForbidden(t, cfg, authorizationv1.ResourceAttributes{Verb: "get", Resource: "secrets", Namespace: "kube-system"})
	expectForbidden(t, cfg, authorizationv1.ResourceAttributes{Verb: "create", Group: "networking.istio.io", Resource: "gateways", Namespace: "istio-system"})
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var editorRoleOnce sync.Mutex

// installEditorRole creates canopy's editor ClusterRole (config/rbac), aggregated to edit,
// once for the whole run: it is cluster-wide and the same for every test.
func installEditorRole(t *testing.T) {
	t.Helper()
	editorRoleOnce.Lock()
	defer editorRoleOnce.Unlock()
	var role rbacv1.ClusterRole
	readRBAC(t, "canary_editor_role.yaml", &role)
	if err := env.Client.Create(context.Background(), &role); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// request is what a stand-in server saw of one request.
type request struct {
	path, query, auth, header string
}

// receiver is a server on loopback that records what reaches it: it stands for whatever a
// tenant would point canopy at (its own host, an internal service, the metadata service).
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	seen []request
}

// newReceiver answers every request with handler (a Prometheus answer of 1 when nil).
func newReceiver(t *testing.T, handler http.HandlerFunc) *receiver {
	t.Helper()
	r := &receiver{}
	if handler == nil {
		handler = func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"1"]}]}}`))
		}
	}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_ = req.ParseForm()
		r.mu.Lock()
		r.seen = append(r.seen, request{path: req.URL.Path, query: req.Form.Get("query"), auth: req.Header.Get("Authorization"), header: req.Header.Get("X-Token")})
		r.mu.Unlock()
		handler(w, req)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) requests() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen)
}

// startRollout deploys reviews with the tenant's Canary c and gives it a new revision, so
// that its checks and gates run.
func startRollout(t *testing.T, tc client.Client, c *meshv1.Canary) {
	t.Helper()
	if err := tc.Create(t.Context(), newDeployment(c.Namespace, c.Spec.TargetRef.Name, "bookinfo/reviews:v1", 1)); err != nil {
		t.Fatal(err)
	}
	if err := tc.Create(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logCanary(t, c.Namespace, c.Name)
		}
	})
	waitPhase(t, c.Namespace, c.Name, meshv1.PhaseInitialized)
	setImage(t, c.Namespace, c.Spec.TargetRef.Name, "bookinfo/reviews:v2")
}

// waitCheck waits until the Canary's check name has a message containing every want, and
// returns it.
func waitCheck(t *testing.T, ns, canary, name string, want ...string) meshv1.CheckStatus {
	t.Helper()
	var got meshv1.CheckStatus
	waitMessage(t, "check "+name, func() (string, bool) {
		ch := findCheck(getCanary(t, ns, canary), name)
		if ch != nil {
			got = *ch
		}
		return string(got.Outcome) + " " + got.Message, ch != nil
	}, want)
	return got
}

// waitGate waits until the Canary's gate name has a message containing every want.
func waitGate(t *testing.T, ns, canary, name string, want ...string) {
	t.Helper()
	waitMessage(t, "gate "+name, func() (string, bool) {
		g := findGate(getCanary(t, ns, canary), name)
		if g == nil {
			return "", false
		}
		return g.Message, true
	}, want)
}

// waitMessage waits until message() exists and contains every want.
func waitMessage(t *testing.T, what string, message func() (string, bool), want []string) {
	t.Helper()
	testenv.Eventually(t, time.Minute, func() error {
		msg, ok := message()
		if !ok {
			return fmt.Errorf("no %s yet", what)
		}
		for _, w := range want {
			if !strings.Contains(msg, w) {
				return fmt.Errorf("%s: %q, want it to say %q", what, msg, w)
			}
		}
		return nil
	})
}

// expectNowhere fails if any of leaks shows in the Canary's status or events: what the
// tenant can read.
func expectNowhere(t *testing.T, ns, canary string, leaks ...string) {
	t.Helper()
	c := getCanary(t, ns, canary)
	var seen strings.Builder
	fmt.Fprintf(&seen, "%+v", c.Status)
	seen.WriteString(notes(canaryEvents(t, ns, canary, "")))
	for _, leak := range leaks {
		if strings.Contains(seen.String(), leak) {
			t.Errorf("the tenant can read %q in Canary %s/%s's status or events", leak, ns, canary)
		}
	}
}

// withTemplates creates, as the tenant, a MetricTemplate of c's namespace per provider
// (name -> provider, query vector(1)) and gives c a check of each.
func withTemplates(t *testing.T, tc client.Client, c *meshv1.Canary, providers map[string]meshv1.MetricProvider) {
	t.Helper()
	for name, p := range providers {
		mt := &meshv1.MetricTemplate{
			ObjectMeta: metav1.ObjectMeta{Namespace: c.Namespace, Name: name},
			Spec:       meshv1.MetricTemplateSpec{Provider: p, Query: "vector(1)"},
		}
		if err := tc.Create(t.Context(), mt); err != nil {
			t.Fatal(err)
		}
		c.Spec.Analysis.Metrics = append(c.Spec.Analysis.Metrics, meshv1.CanaryMetric{
			Name: name, TemplateRef: &meshv1.TemplateRef{Name: name}, ThresholdRange: meshv1.ThresholdRange{Min: ptr.To(0.0)},
		})
	}
}

// providerCanary is a Canary of target whose built-in success rate is read from address.
func providerCanary(ns, target, address string) *meshv1.Canary {
	c := newCanary(ns, target, 10, 30)
	c.Spec.TargetRef.Name = target
	c.Spec.Analysis.Provider = &meshv1.MetricProvider{Address: address}
	return c
}
