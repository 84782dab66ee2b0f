package cli

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/dashboard"
	"canopy.dev/canopy/internal/scheme"
)

type dashboardOptions struct {
	*rootOptions
	address       string
	prometheusURL string
	window        time.Duration
	history       int
}

func (o *rootOptions) dashboardCommand() *cobra.Command {
	d := &dashboardOptions{rootOptions: o}
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Serve a local web UI of every Canary and MeshPolicy, live, with the manual controls",
		Long: `Serve a local web UI of the cluster's Canaries and MeshPolicies that updates live from
watches, with the manual controls (promote, abort, pause, resume, retry) as buttons.

It runs here, as you: with your kubeconfig (and --as, --context...), so your RBAC decides
what it shows and what it may request; nothing runs in the cluster. It listens on
127.0.0.1 by default, answers only to that address (or localhost), and opens no browser:
it prints the URL. Every namespace is watched unless -n is given.

The weight charts come from the history this process keeps from the watch (bounded by
--history), or with --prometheus-url from canopy's canopy_canary_weight metric.`,
		Example: `  kubectl canopy dashboard
  kubectl canopy dashboard -n bookinfo --address 127.0.0.1:3200
  kubectl canopy dashboard --prometheus-url http://127.0.0.1:9090`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return d.run(cmd.Context()) },
	}
	cmd.Flags().StringVar(&d.address, "address", "127.0.0.1:3200", "Where to listen (host:port; port 0 picks a free one). Anything but loopback exposes your cluster credentials' power to that network")
	cmd.Flags().StringVar(&d.prometheusURL, "prometheus-url", "", "Prometheus that scrapes canopy: the weight charts then come from canopy_canary_weight")
	cmd.Flags().DurationVar(&d.window, "prometheus-window", time.Hour, "How far back the charts read Prometheus")
	cmd.Flags().IntVar(&d.history, "history", 500, "Weight changes and check measurements kept per Canary (without Prometheus)")
	return cmd
}

func (d *dashboardOptions) run(ctx context.Context) error {
	host, _, err := net.SplitHostPort(d.address)
	if err != nil {
		return &exitError{code: ExitError, msg: fmt.Sprintf("error: --address %q: %v; want host:port, e.g. 127.0.0.1:3200", d.address, err)}
	}
	// The dashboard answers only to the name it listens on (DNS rebinding): an address of
	// every interface would be one no browser can use.
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return &exitError{code: ExitError, msg: fmt.Sprintf(
			"error: --address %q: give the one address browsers will use (e.g. 127.0.0.1:3200): the dashboard answers only requests addressed to it", d.address)}
	}
	if d.history <= 0 {
		return &exitError{code: ExitError, msg: fmt.Sprintf("error: --history %d: want a positive number of points", d.history)}
	}
	cl, err := d.client()
	if err != nil {
		return err
	}
	srv, err := dashboard.New(dashboard.Options{
		Client: cl, Views: dashboardViews{d.rootOptions, cl},
		Namespace:     d.overrides.Context.Namespace,
		PrometheusURL: d.prometheusURL, PrometheusWindow: d.window, HistorySize: d.history,
		Now: d.settings.now,
	})
	if err != nil {
		return &exitError{code: ExitError, msg: "error: " + err.Error()}
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", d.address)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", d.address, err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	if !addr.IP.IsLoopback() {
		printLine(d.streams.ErrOut, d.paletteFor(d.streams.ErrOut).yellow(
			"warning: the dashboard listens beyond this machine: whoever reaches "+ln.Addr().String()+" acts with your credentials"))
	}
	printf(d.streams.Out, "canopy dashboard: http://%s/ (Ctrl-C to stop)\n", net.JoinHostPort(addr.IP.String(), strconv.Itoa(addr.Port)))
	return srv.Serve(ctx, ln)
}

// dashboardViews lends the dashboard the plugin's words and requests.
type dashboardViews struct {
	o  *rootOptions
	cl client.Client
}

var _ dashboard.Views = dashboardViews{}

func (v dashboardViews) Row(c *meshv1.Canary, now time.Time) dashboard.CanaryRow {
	st := &c.Status
	return dashboard.CanaryRow{
		Namespace: c.Namespace, Name: c.Name,
		Phase: string(st.Phase), PhaseText: phaseText(c),
		Weight: st.CanaryWeight, MaxWeight: maxWeightOf(&c.Spec.Analysis), Step: stepText(c),
		Failed: st.FailedChecks, Threshold: thresholdOf(&c.Spec.Analysis),
		Revision: st.CurrentRevision, Promoted: st.LastPromotedRevision,
		Message: readyMessage(c), Age: age(c.CreationTimestamp, now), Paused: st.Paused, Rolling: rolling(st.Phase),
	}
}

func (v dashboardViews) Detail(c *meshv1.Canary, events []eventsv1.Event, eventsErr error, now time.Time) dashboard.CanaryDetail {
	st := &c.Status
	label, _, steps := progressOf(c)
	d := dashboard.CanaryDetail{CanaryRow: v.Row(c, now), Progress: label, Steps: steps, Hints: hints(c)}
	for i := range st.Checks {
		ck := &st.Checks[i]
		d.Checks = append(d.Checks, dashboard.Check{Name: ck.Name, Outcome: string(ck.Outcome), Value: checkValue(ck), Threshold: ck.Threshold,
			Measured: measuredText(ck, now), Message: ck.Message, DryRun: ck.DryRun})
	}
	for i := range st.Gates {
		g := &st.Gates[i]
		d.Gates = append(d.Gates, dashboard.Gate{Name: g.Name, Type: string(g.Type), State: gateState(g), Attempts: g.Attempts,
			LastCall: ago(g.LastAttempt, now), Message: g.Message})
	}
	for _, cond := range st.Conditions {
		d.Conditions = append(d.Conditions, dashboard.Condition{Type: cond.Type, Status: string(cond.Status), Reason: cond.Reason,
			Since: ago(&cond.LastTransitionTime, now), Message: cond.Message})
	}
	if eventsErr != nil {
		d.EventsErr = eventsErr.Error()
	}
	evs := lastEvents(events, 50)
	for i := range evs {
		e := &evs[i]
		d.Events = append(d.Events, dashboard.Event{When: eventWhen(e, now), Time: eventTime(e), Type: e.Type, Reason: e.Reason, Note: e.Note})
	}
	for _, a := range requestActions {
		d.Actions = append(d.Actions, dashboard.Action{Name: a.name, Short: a.short, Ignored: a.applies(c)})
	}
	return d
}

func (v dashboardViews) Actions() []string {
	out := make([]string, 0, len(requestActions))
	for _, a := range requestActions {
		out = append(out, a.name)
	}
	return out
}

func (v dashboardViews) Request(ctx context.Context, obj client.Object, action string) (string, error) {
	value := action + ":" + v.o.settings.token(v.o.now())
	return value, sendRequest(ctx, v.cl, obj, value)
}

func (v dashboardViews) Generated(ctx context.Context, obj client.Object) ([]dashboard.GeneratedObject, error) {
	s := scheme.New()
	res, err := generate(ctx, s, []manifest{{obj: obj, source: "the cluster"}}, generateOptions{live: v.cl, now: v.o.now(), origin: "the cluster"})
	if err != nil && len(res.objects) == 0 {
		return nil, explain(err)
	}
	out := make([]dashboard.GeneratedObject, 0, len(res.objects))
	for _, g := range res.objects {
		var b bytes.Buffer
		if err := writeObjects(&b, formatYAML, []generated{g}); err != nil {
			return nil, err
		}
		kind := g.obj.GetObjectKind().GroupVersionKind().Kind
		if gvks, _, err := s.ObjectKinds(g.obj); err == nil && len(gvks) > 0 {
			kind = gvks[0].Kind
		}
		out = append(out, dashboard.GeneratedObject{Kind: kind, Namespace: g.obj.GetNamespace(), Name: g.obj.GetName(), Note: describe(g), YAML: b.String()})
	}
	return out, nil
}
