// Package cli is the kubectl canopy plugin: its commands, built so that tests run them
// in-process (Main with buffers for streams) against envtest or with no cluster at all.
//
// Exit codes follow diff(1) and kubectl diff: 0 when all is well, 1 when the answer is
// "no" (a rollout failed, a request was ignored, the cluster differs from the files), 2
// when the command could not tell (bad usage, no cluster, a timeout).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"canopy.dev/canopy/internal/scheme"
)

// The exit codes.
const (
	ExitOK = 0
	// ExitNo: a rollout failed, a request was ignored, or diff found differences.
	ExitNo = 1
	// ExitError: the command failed (usage, cluster unreachable, timeout).
	ExitError = 2
)

// IOStreams are where a command reads and writes.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
}

// exitError carries an exit code; its message, when not empty, is printed to ErrOut.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// failed is an answer of "no" (exit 1) with the line that says why.
func failed(format string, args ...any) error {
	return &exitError{code: ExitNo, msg: fmt.Sprintf(format, args...)}
}

// settings are what tests replace: the clock, the polling interval and the request token.
type settings struct {
	now   func() time.Time
	poll  time.Duration
	token func(time.Time) string
	// color forces colours on (tests of the coloured output); nil detects a terminal.
	color *bool
}

func defaultSettings() settings {
	return settings{
		now:  time.Now,
		poll: time.Second,
		// A timestamp is unique enough for one person's requests and says when it was made.
		token: func(t time.Time) string { return t.UTC().Format("20060102T150405.000Z") },
	}
}

// Main runs the plugin with args (without the program name) and returns the exit code.
func Main(ctx context.Context, args []string, streams IOStreams) int {
	return run(ctx, args, streams, defaultSettings())
}

func run(ctx context.Context, args []string, streams IOStreams, s settings) int {
	o := &rootOptions{streams: streams, settings: s}
	cmd := o.command()
	cmd.SetArgs(args)
	cmd.SetIn(streams.In)
	cmd.SetOut(streams.Out)
	cmd.SetErr(streams.ErrOut)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			printLine(streams.ErrOut, o.paletteFor(streams.ErrOut).red(ee.msg))
		}
		return ee.code
	}
	msg := "error: " + explain(err).Error()
	if strings.HasPrefix(err.Error(), "unknown command") {
		msg += "\nRun 'kubectl canopy --help' for the commands."
	}
	printLine(streams.ErrOut, o.paletteFor(streams.ErrOut).red(msg))
	return ExitError
}

// rootOptions are the flags every command shares and the clients built from them.
type rootOptions struct {
	streams    IOStreams
	settings   settings
	kubeconfig string
	overrides  clientcmd.ConfigOverrides
	noColor    bool

	clientConfig clientcmd.ClientConfig
	cl           client.WithWatch
}

func (o *rootOptions) command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kubectl-canopy",
		Short: "See and steer canopy's progressive rollouts",
		Long: `kubectl canopy shows canopy's Canaries and steers their rollouts.

  get                  list Canaries: phase, weight, step, failed checks
  status NAME          a rollout's progress, checks, gates and events (--watch, --wait)
  promote|abort|pause|resume|retry NAME
                       the manual controls, through the mesh.canopy.dev/request annotation
                       (GitOps tools do not revert it)
  render -f FILE...    the Istio, cert-manager and core objects canopy would generate, offline
  diff -f FILE...      those objects against the cluster (exit 1 when they differ)
  dashboard            a local web UI of every Canary and MeshPolicy, live, with the controls`,
		SilenceUsage:  true,
		SilenceErrors: true,
		CompletionOptions: cobra.CompletionOptions{
			HiddenDefaultCmd: true,
		},
	}
	// kubectl's plugin mechanism calls this binary as "kubectl canopy".
	cmd.Annotations = map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl canopy"}
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &exitError{code: ExitError, msg: fmt.Sprintf("error: %v\nSee '%s --help'.", err, c.CommandPath())}
	})
	flags := cmd.PersistentFlags()
	flags.StringVar(&o.kubeconfig, "kubeconfig", "", "Path to the kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
	clientcmd.BindOverrideFlags(&o.overrides, flags, clientcmd.RecommendedConfigOverrideFlags(""))
	flags.BoolVar(&o.noColor, "no-color", false, "Print no colours (they are only used on a terminal anyway; NO_COLOR is honoured too)")

	cmd.AddCommand(
		o.getCommand(),
		o.statusCommand(),
		o.renderCommand(),
		o.diffCommand(),
		o.dashboardCommand(),
	)
	for _, a := range requestActions {
		cmd.AddCommand(o.requestCommand(a))
	}
	return cmd
}

func (o *rootOptions) loader() clientcmd.ClientConfig {
	if o.clientConfig == nil {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		rules.ExplicitPath = o.kubeconfig
		o.clientConfig = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &o.overrides)
	}
	return o.clientConfig
}

// namespace is -n, else the kubeconfig context's namespace, else "default". It needs
// neither a reachable cluster nor a kubeconfig (render uses it for manifests without a
// namespace); a broken kubeconfig shows when the client is built.
func (o *rootOptions) namespace() string {
	if ns := o.overrides.Context.Namespace; ns != "" {
		return ns
	}
	if ns, _, err := o.loader().Namespace(); err == nil && ns != "" {
		return ns
	}
	return "default"
}

// client connects to the cluster of the kubeconfig.
func (o *rootOptions) client() (client.WithWatch, error) {
	if o.cl != nil {
		return o.cl, nil
	}
	cfg, err := o.loader().ClientConfig()
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading the kubeconfig: %w; check --kubeconfig and KUBECONFIG", err)
	}
	if err != nil {
		return nil, err
	}
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "kubectl-canopy"
	// diff reads one object per generated object: do not let client-side throttling show.
	cfg.QPS, cfg.Burst = 50, 100
	cfg.WarningHandler = rest.NewWarningWriter(o.streams.ErrOut, rest.WarningWriterOptions{Deduplicate: true})
	cl, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return nil, err
	}
	o.cl = cl
	return cl, nil
}

func (o *rootOptions) now() time.Time { return o.settings.now() }

// palette colours standard output only on a terminal, unless --no-color or NO_COLOR.
func (o *rootOptions) palette() palette { return o.paletteFor(o.streams.Out) }

func (o *rootOptions) paletteFor(w io.Writer) palette {
	if o.settings.color != nil {
		return palette{on: *o.settings.color}
	}
	if o.noColor || os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return palette{}
	}
	return palette{on: isTerminal(w)}
}
