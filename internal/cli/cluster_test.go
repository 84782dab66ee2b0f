package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/apply"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/internal/scheme"
	"canopy.dev/canopy/test/testenv"
)

// env is an envtest apiserver with canopy's, Istio's and cert-manager's CRDs. No operator
// runs: the tests write the statuses canopy would, and a goroutine plays the operator where
// a command waits for it.
var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, testenv.Options{}, &env) }

// kubectlCanopy runs the plugin against the test apiserver.
func kubectlCanopy(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return cliRun(t, "", append([]string{"--kubeconfig", env.Kubeconfig}, args...)...)
}

func newCanary(ns, name string) *meshv1.Canary {
	return &meshv1.Canary{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: meshv1.CanarySpec{
			TargetRef: meshv1.TargetRef{Name: name},
			Service:   meshv1.CanaryService{Port: 9080},
			Analysis: meshv1.CanaryAnalysis{
				Interval: "30s", Threshold: 3, StepWeight: ptr.To[int32](10), MaxWeight: 50,
				Metrics: []meshv1.CanaryMetric{{Name: "request-success-rate", ThresholdRange: meshv1.ThresholdRange{Min: ptr.To(99.0)}}},
			},
		},
	}
}

// createCanary creates c and writes its status through the status subresource, as canopy does.
func createCanary(t *testing.T, c *meshv1.Canary) *meshv1.Canary {
	t.Helper()
	st := c.Status
	if err := env.Client.Create(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	setStatus(t, c, func(s *meshv1.CanaryStatus) { *s = st })
	return c
}

func setStatus(t testing.TB, c *meshv1.Canary, mutate func(*meshv1.CanaryStatus)) {
	t.Helper()
	if err := updateStatus(c, mutate); err != nil {
		t.Fatal(err)
	}
}

// updateStatus is setStatus for goroutines, which must not call t.Fatal.
func updateStatus(c *meshv1.Canary, mutate func(*meshv1.CanaryStatus)) error {
	ctx := context.Background()
	for {
		cur := &meshv1.Canary{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(c), cur); err != nil {
			return err
		}
		mutate(&cur.Status)
		cur.Status.ObservedGeneration = cur.Generation
		err := env.Client.Status().Update(ctx, cur)
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return err
		}
		*c = *cur
		return nil
	}
}

func progressing(weight, step int32) meshv1.CanaryStatus {
	return meshv1.CanaryStatus{
		Phase: meshv1.PhaseProgressing, CanaryWeight: weight, StepIndex: step,
		CurrentRevision: "7f9c2d1e4b5a", LastPromotedRevision: "1a2b3c4d5e6f",
	}
}

func TestGetListsCanaries(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	c := newCanary(ns, "reviews")
	c.Status = progressing(30, 3)
	createCanary(t, c)
	r := newCanary(ns, "ratings")
	r.Status = meshv1.CanaryStatus{Phase: meshv1.PhaseSucceeded, CurrentRevision: "aaa", LastPromotedRevision: "aaa"}
	createCanary(t, r)

	out, errOut, code := kubectlCanopy(t, "get", "-n", ns)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME      PHASE         WEIGHT   STEP   FAILED   AGE") ||
		!strings.HasPrefix(lines[1], "ratings   Succeeded     0%       -      0/3") ||
		!strings.HasPrefix(lines[2], "reviews   Progressing   30%      3/5    0/3") {
		t.Errorf("get:\n%s", out)
	}

	out, _, code = kubectlCanopy(t, "get", "-A")
	if code != ExitOK || !strings.Contains(out, ns+"   reviews") {
		t.Errorf("get -A (exit %d) lacks %s/reviews:\n%s", code, ns, out)
	}

	out, _, code = kubectlCanopy(t, "get", "reviews", "-n", ns, "-o", "yaml")
	got := &meshv1.Canary{}
	if err := yaml.UnmarshalStrict([]byte(out), got); code != ExitOK || err != nil {
		t.Fatalf("get -o yaml (exit %d) does not parse back (%v):\n%s", code, err, out)
	}
	if got.Kind != "Canary" || got.Status.CanaryWeight != 30 || got.ManagedFields != nil {
		t.Errorf("get -o yaml: %+v", got)
	}

	_, errOut, code = kubectlCanopy(t, "get", "details", "-n", ns)
	if want := "error: no Canary details in namespace " + ns + "; list them with kubectl canopy get -A"; code != ExitError || !strings.Contains(errOut, want) {
		t.Errorf("get of a missing Canary: exit %d, %q; want %q", code, errOut, want)
	}
	empty := env.CreateNamespace(t)
	out, errOut, code = kubectlCanopy(t, "get", "-n", empty)
	if code != ExitOK || out != "" || !strings.Contains(errOut, "No Canaries in namespace "+empty+"; list every namespace's with kubectl canopy get -A") {
		t.Errorf("get in an empty namespace: exit %d, %q, %q", code, out, errOut)
	}
}

// fakeOperator plays canopy's part in a request: it records each new value of the request
// annotation as handled and applies handle to the status; an ignored request gets the
// Warning event canopy writes.
func fakeOperator(t *testing.T, c *meshv1.Canary, handle func(req string, st *meshv1.CanaryStatus) (ignored string)) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	t.Cleanup(func() { cancel(); wg.Wait() })
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			time.Sleep(30 * time.Millisecond)
			cur := &meshv1.Canary{}
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(c), cur); err != nil {
				continue
			}
			req := cur.Annotations[meshv1.AnnotationRequest]
			if req == "" || req == cur.Status.LastHandledRequest {
				continue
			}
			var ignored string
			if err := updateStatus(cur, func(st *meshv1.CanaryStatus) {
				ignored = handle(req, st)
				st.LastHandledRequest = req
			}); err != nil {
				t.Error(err)
				return
			}
			if ignored != "" {
				recordEvent(t, cur, corev1.EventTypeWarning, "ManualPromotion", fmt.Sprintf("Request %q ignored: %s", req, ignored))
			}
		}
	}()
}

func recordEvent(t testing.TB, c *meshv1.Canary, typ, reason, note string) {
	t.Helper()
	e := &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Namespace: c.Namespace, GenerateName: c.Name + "-"},
		EventTime:           metav1.NewMicroTime(time.Now()),
		ReportingController: "canopy", ReportingInstance: "canopy-test",
		Action: reason, Reason: reason, Type: typ, Note: note,
		Regarding: corev1.ObjectReference{
			APIVersion: meshv1.GroupVersion.String(), Kind: "Canary", Namespace: c.Namespace, Name: c.Name, UID: c.UID,
		},
	}
	if err := env.Client.Create(context.Background(), e); err != nil {
		t.Error(err)
	}
}

func TestPromoteSetsTheAnnotationAndWaits(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	c := newCanary(ns, "reviews")
	c.Status = progressing(20, 2)
	createCanary(t, c)
	generation := c.Generation

	// Without --wait the command only asks.
	out, errOut, code := kubectlCanopy(t, "resume", "reviews", "-n", ns)
	if code != ExitOK || !strings.HasPrefix(out, "resume requested for "+ns+"/reviews (mesh.canopy.dev/request=resume:") {
		t.Fatalf("resume: exit %d, %q, %q", code, out, errOut)
	}
	if !strings.Contains(errOut, "warning: canopy will probably ignore resume on "+ns+"/reviews: it is not paused") {
		t.Errorf("no warning that the request does not apply: %q", errOut)
	}
	cur := &meshv1.Canary{}
	if err := env.Client.Get(t.Context(), client.ObjectKeyFromObject(c), cur); err != nil {
		t.Fatal(err)
	}
	if v := cur.Annotations[meshv1.AnnotationRequest]; !strings.HasPrefix(v, "resume:") || cur.Generation != generation {
		t.Errorf("annotation %q, generation %d (was %d): the spec must not change", v, cur.Generation, generation)
	}

	fakeOperator(t, c, func(req string, st *meshv1.CanaryStatus) string {
		switch {
		case strings.HasPrefix(req, "pause:"):
			st.Paused = true
		case strings.HasPrefix(req, "promote:"):
			st.Phase = meshv1.PhasePromoting
		}
		return ""
	})
	out, errOut, code = kubectlCanopy(t, "pause", "reviews", "-n", ns, "--wait")
	if code != ExitOK || !strings.Contains(out, "canopy handled pause: "+ns+"/reviews is Progressing (paused)") {
		t.Fatalf("pause --wait: exit %d, %q, %q", code, out, errOut)
	}
	out, errOut, code = kubectlCanopy(t, "promote", "reviews", "-n", ns, "--wait")
	if code != ExitOK {
		t.Fatalf("promote --wait: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "canopy handled promote: "+ns+"/reviews is Promoting (paused)") {
		t.Errorf("promote --wait:\n%s", out)
	}
	if err := env.Client.Get(t.Context(), client.ObjectKeyFromObject(c), cur); err != nil {
		t.Fatal(err)
	}
	if v := cur.Annotations[meshv1.AnnotationRequest]; !strings.HasPrefix(v, "promote:") || cur.Status.LastHandledRequest != v {
		t.Errorf("annotation %q, lastHandledRequest %q", v, cur.Status.LastHandledRequest)
	}
}

func TestARequestCanopyIgnoresFailsWithItsReason(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	c := newCanary(ns, "reviews")
	c.Status = meshv1.CanaryStatus{Phase: meshv1.PhaseSucceeded, CurrentRevision: "aaa", LastPromotedRevision: "aaa"}
	createCanary(t, c)
	fakeOperator(t, c, func(string, *meshv1.CanaryStatus) string { return "no rollout to promote in phase Succeeded" })

	_, errOut, code := kubectlCanopy(t, "promote", "reviews", "-n", ns, "--wait")
	if code != ExitNo {
		t.Fatalf("exit %d, want %d: %s", code, ExitNo, errOut)
	}
	for _, want := range []string{
		"warning: canopy will probably ignore promote on " + ns + "/reviews: there is no rollout in progress to promote (phase Succeeded)",
		"canopy ignored promote on " + ns + "/reviews: Request \"promote:",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}

	_, errOut, code = kubectlCanopy(t, "retry", "nope", "-n", ns)
	if code != ExitError || !strings.Contains(errOut, "no Canary nope in namespace "+ns) {
		t.Errorf("retry of a missing Canary: exit %d, %s", code, errOut)
	}
}

func TestRequestWaitTimesOutWithoutAnOperator(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	c := newCanary(ns, "reviews")
	c.Status = progressing(10, 1)
	createCanary(t, c)
	_, errOut, code := kubectlCanopy(t, "abort", "reviews", "-n", ns, "--wait", "--timeout", "300ms")
	if code != ExitError || !strings.Contains(errOut, "canopy did not handle the request within 300ms: is the operator running?") {
		t.Errorf("exit %d: %s", code, errOut)
	}
}

// targetFor creates the Canary's target Deployment and returns its revision as canopy
// computes it.
func targetFor(t *testing.T, c *meshv1.Canary) string {
	t.Helper()
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: c.Namespace, Name: c.Spec.TargetRef.Name},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": c.Name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": c.Name}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: "example/app:v2",
					EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"}}}},
				}}},
			},
		},
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: c.Namespace, Name: "app-config"}, Data: map[string]string{"level": "debug"}}
	for _, o := range []client.Object{d, cm} {
		if err := env.Client.Create(t.Context(), o); err != nil {
			t.Fatal(err)
		}
	}
	// The revision includes the ConfigMap the pods read, as the controller's does.
	rev := targetRevision(t.Context(), env.Client, c)
	if rev == "" || rev == render.Revision(&d.Spec.Template) {
		t.Fatalf("revision %q does not account for the ConfigMap", rev)
	}
	return rev
}

func TestStatusWaitExitsWithTheRolloutsResult(t *testing.T) {
	testenv.SkipIfShort(t)
	tests := []struct {
		name   string
		end    func(rev string, st *meshv1.CanaryStatus)
		code   int
		stdout string
		stderr string
	}{{
		name: "promoted",
		end: func(rev string, st *meshv1.CanaryStatus) {
			st.Phase, st.CanaryWeight, st.LastPromotedRevision = meshv1.PhaseSucceeded, 0, rev
		},
		code: ExitOK, stdout: "/reviews: revision %s promoted",
	}, {
		name: "rolled back",
		end: func(rev string, st *meshv1.CanaryStatus) {
			st.Phase, st.CanaryWeight, st.FailedChecks, st.LastFailedRevision = meshv1.PhaseFailed, 0, 3, rev
			st.Conditions = []metav1.Condition{{
				Type: meshv1.ConditionReady, Status: metav1.ConditionFalse, Reason: meshv1.ReasonRolledBack,
				Message: "Revision " + rev + " was rolled back after 3 failed checks", LastTransitionTime: metav1.Now(),
			}}
		},
		code: ExitNo, stderr: "/reviews: revision %s failed: Revision %[1]s was rolled back after 3 failed checks (3 failed checks)",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := env.CreateNamespace(t)
			c := newCanary(ns, "reviews")
			rev := targetFor(t, c)
			// The previous rollout succeeded; the new revision is not seen yet: --wait must
			// not take that success for this rollout's.
			c.Status = meshv1.CanaryStatus{Phase: meshv1.PhaseSucceeded, CurrentRevision: "1a2b3c4d5e6f", LastPromotedRevision: "1a2b3c4d5e6f"}
			createCanary(t, c)
			done := make(chan struct{})
			defer func() { <-done }()
			go func() {
				defer close(done)
				time.Sleep(300 * time.Millisecond)
				if err := updateStatus(c, func(st *meshv1.CanaryStatus) { *st = progressing(10, 1); st.CurrentRevision = rev }); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(300 * time.Millisecond)
				if err := updateStatus(c, func(st *meshv1.CanaryStatus) { tt.end(rev, st) }); err != nil {
					t.Error(err)
				}
			}()
			out, errOut, code := kubectlCanopy(t, "status", "reviews", "-n", ns, "--wait", "--timeout", "30s")
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out, errOut)
			}
			if tt.stdout != "" && !strings.Contains(out, fmt.Sprintf(tt.stdout, rev)) {
				t.Errorf("stdout lacks %q:\n%s", fmt.Sprintf(tt.stdout, rev), out)
			}
			if tt.stderr != "" && !strings.Contains(errOut, fmt.Sprintf(tt.stderr, rev)) {
				t.Errorf("stderr lacks %q:\n%s", fmt.Sprintf(tt.stderr, rev), errOut)
			}
			// One line per change of the rollout, for a CI log.
			if !strings.Contains(out, ns+"/reviews Progressing weight 10% step 1/5 failed checks 0/3") {
				t.Errorf("no progress line in:\n%s", out)
			}
		})
	}
}

func TestStatusShowsTheRolloutAndItsEvents(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	c := newCanary(ns, "reviews")
	c.Status = progressing(30, 3)
	c.Status.Checks = []meshv1.CheckStatus{{Name: "request-success-rate", Outcome: meshv1.OutcomeFail, Value: "97.5", Threshold: ">= 99"}}
	createCanary(t, c)
	recordEvent(t, c, corev1.EventTypeWarning, meshv1.ReasonCheckFailed, "request-success-rate 97.5 outside >= 99")
	// An event of another object of the same name is not the Canary's.
	other := c.DeepCopy()
	other.UID = "another-uid"
	recordEvent(t, other, corev1.EventTypeNormal, meshv1.ReasonPromoted, "an older Canary's event")

	out, errOut, code := kubectlCanopy(t, "status", "reviews", "-n", ns)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"Canary " + ns + "/reviews: Progressing",
		"Progress   [########################----------------]  30% to the canary, promoted after 50%",
		"request-success-rate   Fail      97.5    >= 99",
		"Warning   CheckFailed   request-success-rate 97.5 outside >= 99",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "an older Canary's event") {
		t.Errorf("status shows another object's event:\n%s", out)
	}

	_, errOut, code = kubectlCanopy(t, "status", "reviews", "-n", ns, "--wait", "--timeout", "200ms")
	if code != ExitError || !strings.Contains(errOut, "timed out after 200ms waiting for "+ns+"/reviews") {
		t.Errorf("status --wait --timeout: exit %d, %s", code, errOut)
	}
}

// writeBookinfo writes the Bookinfo samples with namespace ns into a directory.
func writeBookinfo(t *testing.T, ns string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"bookinfo.yaml", "mesh_v1alpha1_canary.yaml"} {
		b, err := os.ReadFile(samples + f)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(b), "namespace: bookinfo", "namespace: "+ns)
		s = strings.ReplaceAll(s, "name: bookinfo\n", "name: "+ns+"\n")
		if err := os.WriteFile(filepath.Join(dir, f), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestDiffAgainstTheCluster(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	dir := writeBookinfo(t, ns)
	ctx := t.Context()

	// Nothing applied yet: every generated object is missing.
	out, errOut, code := kubectlCanopy(t, "diff", "-f", dir)
	if code != ExitNo || strings.Count(out, ": missing") != 7 {
		t.Fatalf("diff before anything exists: exit %d:\n%s\n%s", code, out, errOut)
	}

	// Create the user's Deployment and Canary, and apply what canopy generates from them
	// as canopy does (server-side apply, its field owner), from the stored Deployment.
	files, err := readManifests([]string{dir}, false, nil, scheme.New(), ns, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range files {
		if _, ok := m.obj.(*corev1.Namespace); ok {
			continue
		}
		if err := env.Client.Create(ctx, m.obj.DeepCopyObject().(client.Object)); err != nil {
			t.Fatal(err)
		}
	}
	stored := asStored(ctx, env.Client, env.Scheme, files, "test", func(w string) { t.Error(w) })
	gen, err := generate(ctx, env.Scheme, stored, generateOptions{live: env.Client})
	if err != nil {
		t.Fatal(err)
	}
	applier := &apply.Applier{Client: env.Client, Reader: env.Client}
	for _, g := range gen.objects {
		if _, err := applier.Apply(ctx, g.obj.(client.Object)); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, code = kubectlCanopy(t, "diff", "-f", dir)
	if code != ExitOK || strings.Count(out, ": same") != 7 {
		t.Fatalf("diff right after applying: exit %d:\n%s\n%s", code, out, errOut)
	}

	// A rollout at 30%: the weights follow the live Canary's status, so nothing differs.
	c := &meshv1.Canary{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "reviews"}, c); err != nil {
		t.Fatal(err)
	}
	setStatus(t, c, func(st *meshv1.CanaryStatus) { *st = progressing(30, 3) })
	vs := &networkingv1.VirtualService{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "reviews"}, vs); err != nil {
		t.Fatal(err)
	}
	vs.Spec.Http[0].Route[0].Weight, vs.Spec.Http[0].Route[1].Weight = 70, 30
	if err := env.Client.Update(ctx, vs); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = kubectlCanopy(t, "diff", "-f", dir)
	if code != ExitOK {
		t.Fatalf("diff during a rollout: exit %d:\n%s\n%s", code, out, errOut)
	}

	// A hand edit of a field canopy sets, and a deleted DestinationRule.
	vs.Spec.Hosts = append(vs.Spec.Hosts, "reviews.example.com")
	if err := env.Client.Update(ctx, vs); err != nil {
		t.Fatal(err)
	}
	dr := &networkingv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews-canary"}}
	if err := env.Client.Delete(ctx, dr); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = kubectlCanopy(t, "diff", "-f", dir)
	if code != ExitNo {
		t.Fatalf("diff after edits: exit %d:\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"DestinationRule " + ns + "/reviews-canary: missing\n",
		"VirtualService " + ns + "/reviews: differs\n  --- live\n  +++ canopy\n",
		"\n  -  - reviews.example.com\n",
		"Service " + ns + "/reviews-canary: same\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("diff lacks %q:\n%s", want, out)
		}
	}

	// A change in the files: a new image is a new primary once promoted.
	b, _ := os.ReadFile(filepath.Join(dir, "bookinfo.yaml"))
	changed := strings.Replace(string(b), "reviews-v1:1.20.2", "reviews-v2:1.20.2", 1)
	if err := os.WriteFile(filepath.Join(dir, "bookinfo.yaml"), []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, _ = kubectlCanopy(t, "diff", "-f", dir)
	for _, want := range []string{
		"Deployment " + ns + "/reviews-primary: differs (written when the Canary initializes and when a revision is promoted)",
		"+      - image: docker.io/istio/examples-bookinfo-reviews-v2:1.20.2",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("diff lacks %q:\n%s", want, out)
		}
	}
}

// syncBuffer is a bytes.Buffer safe to read while the command writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Off a terminal, --watch prints a new view only when the rollout changed, and Ctrl-C
// (the context's end) is a normal exit.
func TestStatusWatchPrintsEachChange(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	c := newCanary(ns, "reviews")
	c.Status = progressing(10, 1)
	createCanary(t, c)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out, errOut syncBuffer
	s := defaultSettings()
	s.poll = 50 * time.Millisecond
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"--kubeconfig", env.Kubeconfig, "status", "reviews", "-n", ns, "--watch"}, IOStreams{Out: &out, ErrOut: &errOut}, s)
	}()
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := strings.Count(out.String(), "Canary "+ns+"/reviews"); n != 1 {
			return fmt.Errorf("%d views", n)
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond) // several polls: nothing changed, nothing printed
	setStatus(t, c, func(st *meshv1.CanaryStatus) { *st = progressing(20, 2) })
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := strings.Count(out.String(), "Canary "+ns+"/reviews"); n != 2 {
			return fmt.Errorf("%d views", n)
		}
		return nil
	})
	cancel()
	if got := <-code; got != ExitOK {
		t.Errorf("exit %d after Ctrl-C: %s", got, errOut.String())
	}
	if !strings.Contains(out.String(), "20% to the canary") || strings.Contains(out.String(), "\x1b[") {
		t.Errorf("watch output:\n%s", out.String())
	}
}

// A MeshPolicy that no longer generates an object: diff shows the object canopy deletes.
func TestDiffShowsWhatCanopyWouldDelete(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	ctx := t.Context()
	manifests := func(telemetry string) string {
		return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: web, namespace: %[1]s}
spec: {selector: {app: web}, ports: [{name: http, port: 80}]}
---
apiVersion: mesh.canopy.dev/v1alpha1
kind: MeshPolicy
metadata: {name: web, namespace: %[1]s}
spec:
  targetRef: {name: web}
  mtls: {mode: STRICT}
%[2]s`, ns, telemetry)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "web.yaml")
	if err := os.WriteFile(file, []byte(manifests("  telemetry: {accessLogging: true}\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	files, err := readManifests([]string{file}, false, nil, env.Scheme, ns, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	// Deployed by server-side apply, as Flux or kubectl apply --server-side do.
	for _, m := range files {
		u := &unstructured.Unstructured{}
		u.Object, err = runtime.DefaultUnstructuredConverter.ToUnstructured(m.obj)
		if err != nil {
			t.Fatal(err)
		}
		u.SetGroupVersionKind(m.obj.GetObjectKind().GroupVersionKind())
		unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
		unstructured.RemoveNestedField(u.Object, "status")
		if err := env.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("deployer")); err != nil {
			t.Fatal(err)
		}
	}
	gen, err := generate(ctx, env.Scheme, asStored(ctx, env.Client, env.Scheme, files, "deployer", func(w string) { t.Error(w) }), generateOptions{live: env.Client})
	if err != nil {
		t.Fatal(err)
	}
	applier := &apply.Applier{Client: env.Client, Reader: env.Client}
	for _, g := range gen.objects {
		if _, err := applier.Apply(ctx, g.obj.(client.Object)); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, code := kubectlCanopy(t, "diff", "-f", file, "--field-manager", "deployer")
	if code != ExitOK {
		t.Fatalf("diff right after applying: exit %d\n%s\n%s", code, out, errOut)
	}

	// The field manager is the deployer's, so the telemetry removed from the file is
	// removed from the policy the dry run returns.
	if err := os.WriteFile(file, []byte(manifests("")), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = kubectlCanopy(t, "diff", "-f", file, "--field-manager", "deployer")
	if want := "Telemetry " + ns + "/web: extra, canopy deletes it\n"; code != ExitNo || !strings.Contains(out, want) {
		t.Errorf("diff without the telemetry: exit %d, want %q in\n%s\n%s", code, want, out, errOut)
	}
}
