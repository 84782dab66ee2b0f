package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/internal/scheme"
)

// Output formats, and the kind of kubectl's lists.
const (
	formatWide = "wide"
	formatJSON = "json"
	formatYAML = "yaml"
	kindList   = "List"
)

// fileFlags are the -f and -R flags of render and diff.
type fileFlags struct {
	files     []string
	recursive bool
}

func (f *fileFlags) bind(cmd *cobra.Command) {
	cmd.Flags().StringSliceVarP(&f.files, "filename", "f", nil, "Manifests: files, directories or - for standard input (repeatable)")
	cmd.Flags().BoolVarP(&f.recursive, "recursive", "R", false, "Read the directories given with -f recursively")
}

type renderOptions struct {
	*rootOptions
	fileFlags
	output      string
	certPending bool
}

func (o *rootOptions) renderCommand() *cobra.Command {
	r := &renderOptions{rootOptions: o}
	cmd := &cobra.Command{
		Use:   "render -f FILE...",
		Short: "Print the objects canopy would generate for the given manifests, offline",
		Long: `Print the Istio, cert-manager and core objects canopy would generate for the Canaries
and MeshPolicies in the given manifests, exactly as its controllers render them. It reads
nothing from the cluster: a Canary needs its target Deployment in the files (and its
autoscaler and the ConfigMaps its pods read, for the primary's revision), a MeshPolicy its
Service (or the Canary that generates it). Canaries are rendered at rest, all traffic to
the primary; ingress Gateways as they are once their certificate is issued.

Manifests without a namespace get -n's (or the kubeconfig context's, else default). The
API server's validation (CRD schema and CEL rules) is not run: kubectl apply --dry-run=server
does that.`,
		Example: `  kubectl canopy render -f config/samples/
  kustomize build overlays/prod | kubectl canopy render -f -
  kubectl canopy render -f app/ -R -o json | jq '.items[] | select(.kind == "VirtualService")'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return r.run(cmd) },
	}
	r.bind(cmd)
	cmd.Flags().StringVarP(&r.output, "output", "o", formatYAML, "Output format: yaml or json (a v1 List)")
	cmd.Flags().BoolVar(&r.certPending, "certificate-pending", false, "Render ingress Gateways as before their certificate is issued (plain HTTP only)")
	return cmd
}

func (r *renderOptions) run(cmd *cobra.Command) error {
	if r.output != formatYAML && r.output != formatJSON {
		return &exitError{code: ExitError, msg: fmt.Sprintf("error: unknown output format %q: use yaml or json", r.output)}
	}
	if len(r.files) == 0 {
		return &exitError{code: ExitError, msg: "error: give the manifests with -f FILE or -f DIR (-f - reads standard input)"}
	}
	ns := r.namespace()
	s := scheme.New()
	warn := r.warner()
	files, err := readManifests(r.files, r.recursive, r.streams.In, s, ns, warn)
	if err != nil {
		return err
	}
	res, genErr := generate(cmd.Context(), s, files, generateOptions{certificateReady: !r.certPending, now: r.now()})
	for _, w := range res.warnings {
		warn(w)
	}
	if err := writeObjects(r.streams.Out, r.output, res.objects); err != nil {
		return err
	}
	return genErr
}

func (o *rootOptions) warner() func(string) {
	p := o.paletteFor(o.streams.ErrOut)
	return func(s string) { printLine(o.streams.ErrOut, p.yellow("warning: "+s)) }
}

// writeObjects prints generated objects as YAML documents, each after a comment naming its
// owner, or as a JSON v1 List.
func writeObjects(w io.Writer, format string, objs []generated) error {
	items := make([]map[string]any, 0, len(objs))
	for _, g := range objs {
		u, err := render.ToUnstructured(g.obj)
		if err != nil {
			return err
		}
		items = append(items, u.Object)
	}
	if format == formatJSON {
		b, err := json.MarshalIndent(map[string]any{"apiVersion": "v1", "kind": kindList, "items": items}, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	var errs []error
	for i, m := range items {
		b, err := yaml.Marshal(m)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if i > 0 {
			printLine(w, "---")
		}
		printf(w, "# %s\n", describe(objs[i]))
		_, _ = w.Write(b)
	}
	return errors.Join(errs...)
}

func describe(g generated) string {
	s := "generated for " + g.owner
	if g.note != "" {
		s += "; " + g.note
	}
	return s
}
