package browser

import (
	"context"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/test/e2e/fixture"
	"canopy.dev/canopy/test/testenv"
)

// text is the text of the first element matching the CSS selector, or "" when there is none.
func text(t testing.TB, ctx context.Context, selector string) string {
	t.Helper()
	return eval[string](t, ctx, fmt.Sprintf(`(function(){const e=document.querySelector(%q);return e?e.textContent:"";})()`, selector))
}

// waitText waits until the element's text satisfies ok, and returns it.
func waitText(t testing.TB, ctx context.Context, selector string, d time.Duration, ok func(string) error) string {
	t.Helper()
	var got string
	testenv.Eventually(t, d, func() error {
		got = text(t, ctx, selector)
		return ok(got)
	})
	return got
}

func contains(want ...string) func(string) error {
	return func(s string) error {
		for _, w := range want {
			if !strings.Contains(s, w) {
				return fmt.Errorf("%q lacks %q", s, w)
			}
		}
		return nil
	}
}

// The list shows a rolling Canary, and its weight changes on the page as the rollout
// steps, without a reload: the page hears of the change from the server's event stream.
func TestListShowsTheWeightChangeLive(t *testing.T) {
	testenv.SkipIfShort(t)
	ctx := browser(t)
	startOperator(t)
	ns := env.CreateNamespace(t)
	rollingCanary(t, ns, "reviews", "3s", 5)
	url := dashboard(t)

	row := fmt.Sprintf(`tr[data-canary="%s/reviews"]`, ns)
	run(t, ctx, "opening the list", chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(row)),
		// A mark a reload would wipe out.
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`window.notReloaded = true`)(ctx, tg)
			return err
		}))
	first := waitText(t, ctx, row+" .weight", 30*time.Second, func(s string) error {
		if s == "" || s == "0%" {
			return fmt.Errorf("weight %q, want the rollout's first step", s)
		}
		return nil
	})
	waitText(t, ctx, row+" .weight", time.Minute, func(s string) error {
		if s == first {
			return fmt.Errorf("weight still %s", s)
		}
		return nil
	})
	if !eval[bool](t, ctx, `window.notReloaded === true`) {
		t.Fatal("the page was reloaded to show the new weight")
	}
	if phase := text(t, ctx, row+" .phase"); !strings.HasPrefix(phase, string(meshv1.PhaseProgressing)) {
		t.Errorf("the row's phase is %q, want Progressing", phase)
	}
	// The filters: another phase hides the row, a search by name finds it.
	run(t, ctx, "searching", chromedp.SendKeys(chromedp.CSS("#f-q"), "no-such-canary"))
	waitText(t, ctx, "#canaries", 10*time.Second, contains("No Canary matches the filters."))
	// Select what was typed, and type over it.
	eval[bool](t, ctx, `(document.querySelector("#f-q").select(), true)`)
	run(t, ctx, "searching again", chromedp.SendKeys(chromedp.CSS("#f-q"), "revi"))
	waitText(t, ctx, row+" a", 10*time.Second, contains("reviews"))
}

// openRollout starts a rollout that steps once a minute, and opens its Canary's page in a
// dashboard run as the admin.
func openRollout(t *testing.T, name string) (context.Context, string) {
	t.Helper()
	ctx := browser(t)
	startOperator(t)
	ns := env.CreateNamespace(t)
	rollingCanary(t, ns, name, "1m", 10)
	url := dashboard(t)
	run(t, ctx, "opening the Canary", chromedp.Navigate(url+"#/canary/"+ns+"/"+name), chromedp.WaitVisible(chromedp.CSS("#action-promote")))
	waitText(t, ctx, "h2 .phase", 30*time.Second, contains("Progressing"))
	return ctx, ns
}

// Pressing promote on a Canary's page promotes the rollout: the request annotation is
// written as kubectl canopy promote writes it, canopy acts on it, and the page shows it.
func TestPromoteButtonPromotes(t *testing.T) {
	testenv.SkipIfShort(t)
	// Steps a minute apart: without the button the rollout would still be at its start.
	ctx, ns := openRollout(t, "ratings")
	run(t, ctx, "pressing promote", chromedp.Click(chromedp.CSS("#action-promote")))
	waitText(t, ctx, "#action-result", 30*time.Second, contains("promote requested for "+ns+"/ratings"))

	c := fixture.WaitPhase(t, env.Client, ns, "ratings", meshv1.PhaseSucceeded)
	req := c.Annotations[meshv1.AnnotationRequest]
	if !strings.HasPrefix(req, "promote:") || c.Status.LastHandledRequest != req {
		t.Errorf("request annotation %q, last handled %q: want a promote canopy handled", req, c.Status.LastHandledRequest)
	}
	if c.Status.LastPromotedRevision != c.Status.CurrentRevision {
		t.Errorf("promoted revision %q, want the rollout's %q", c.Status.LastPromotedRevision, c.Status.CurrentRevision)
	}
	// The page follows without a reload.
	waitText(t, ctx, "h2 .phase", time.Minute, contains("Succeeded"))
}

// A user whose RBAC does not allow requests (the view ClusterRole) sees the apiserver's
// refusal on the page, and the Canary is left alone.
func TestRefusalIsShown(t *testing.T) {
	testenv.SkipIfShort(t)
	ctx := browser(t)
	startOperator(t)
	ns := env.CreateNamespace(t)
	rollingCanary(t, ns, "details", "1m", 10)
	user := viewer(t, ns)
	url := dashboard(t, "--as", user, "-n", ns)

	run(t, ctx, "opening the list as a viewer", chromedp.Navigate(url))
	waitText(t, ctx, fmt.Sprintf(`tr[data-canary="%s/details"] .phase`, ns), 30*time.Second, contains("Progressing"))
	run(t, ctx, "opening the Canary", chromedp.Navigate(url+"#/canary/"+ns+"/details"), chromedp.WaitVisible(chromedp.CSS("#action-abort")))
	// The Canary's facts render above the buttons once read, moving them down: a click
	// aimed before that lands beside the button (seen under -race in CI), as a person's
	// would. Press once the page has settled.
	waitText(t, ctx, "h2 .phase", 30*time.Second, contains("Progressing"))
	run(t, ctx, "pressing abort", chromedp.Click(chromedp.CSS("#action-abort")))
	// The apiserver's own words.
	msg := waitText(t, ctx, "#action-result", 30*time.Second,
		contains("abort refused", `canaries.mesh.canopy.dev "details" is forbidden`, `User "`+user+`" cannot patch resource "canaries"`))
	t.Logf("the page says: %s", msg)

	c := fixture.Canary(t, env.Client, ns, "details")
	if req, ok := c.Annotations[meshv1.AnnotationRequest]; ok {
		t.Errorf("the viewer's request landed: %s=%s", meshv1.AnnotationRequest, req)
	}
	if c.Status.Phase != meshv1.PhaseProgressing {
		t.Errorf("phase %s, want the rollout still Progressing", c.Status.Phase)
	}
}

// Every control is reached with Tab and pressed with Enter: pause, then resume.
func TestControlsWorkFromTheKeyboard(t *testing.T) {
	testenv.SkipIfShort(t)
	ctx, ns := openRollout(t, "productpage")
	focused := func() string {
		return eval[string](t, ctx, `document.activeElement ? document.activeElement.id : ""`)
	}
	reached := map[string]bool{}
	for range 40 {
		run(t, ctx, "pressing Tab", chromedp.KeyEvent(kb.Tab))
		id := focused()
		reached[id] = true
		if id == "action-pause" {
			run(t, ctx, "pressing Enter", chromedp.KeyEvent(kb.Enter))
			break
		}
	}
	for _, a := range []string{"promote", "abort", "pause"} {
		if !reached["action-"+a] {
			t.Errorf("Tab never reached the %s button (reached %v)", a, reached)
		}
	}
	testenv.Eventually(t, time.Minute, func() error {
		c := fixture.Canary(t, env.Client, ns, "productpage")
		if !c.Status.Paused {
			return fmt.Errorf("not paused (request %q, last handled %q)", c.Annotations[meshv1.AnnotationRequest], c.Status.LastHandledRequest)
		}
		return nil
	})
	waitText(t, ctx, "h2 .phase", 30*time.Second, contains("paused"))
}

// A page of another site cannot steer rollouts through the dashboard: a request with
// another Host (DNS rebinding) or from another origin, or without the page's token (CSRF),
// is refused, and the Canary is left alone.
func TestOtherSitesAreRefused(t *testing.T) {
	testenv.SkipIfShort(t)
	startOperator(t)
	ns := env.CreateNamespace(t)
	rollingCanary(t, ns, "reviews", "1m", 10)
	base := dashboard(t)
	u, err := neturl.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	promote := base + "api/canaries/" + ns + "/reviews/promote"
	for _, tc := range []struct {
		name         string
		method, url  string
		host, origin string
		want         int
	}{
		{name: "a rebound name reads", method: http.MethodGet, url: base + "api/canaries", host: "attacker.example:" + u.Port(), want: http.StatusMisdirectedRequest},
		{name: "a rebound name writes", method: http.MethodPost, url: promote, host: "attacker.example:" + u.Port(), origin: "http://attacker.example:" + u.Port(), want: http.StatusMisdirectedRequest},
		{name: "another origin", method: http.MethodPost, url: promote, origin: "http://attacker.example", want: http.StatusForbidden},
		{name: "no origin", method: http.MethodPost, url: promote, want: http.StatusForbidden},
		{name: "the right origin without the token", method: http.MethodPost, url: promote, origin: "http://" + u.Host, want: http.StatusForbidden},
	} {
		req, err := http.NewRequestWithContext(t.Context(), tc.method, tc.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.host != "" {
			req.Host = tc.host
		}
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: HTTP %d (%s), want %d", tc.name, resp.StatusCode, body, tc.want)
		}
	}
	if c := fixture.Canary(t, env.Client, ns, "reviews"); c.Annotations[meshv1.AnnotationRequest] != "" {
		t.Errorf("a refused request landed: %s", c.Annotations[meshv1.AnnotationRequest])
	}
}
