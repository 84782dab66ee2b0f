package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

type getOptions struct {
	*rootOptions
	all    bool
	output string
}

func (o *rootOptions) getCommand() *cobra.Command {
	g := &getOptions{rootOptions: o}
	cmd := &cobra.Command{
		Use:   "get [NAME]",
		Short: "List Canaries with their phase, weight, step and failed checks",
		Example: `  kubectl canopy get -A
  kubectl canopy get reviews -n bookinfo -o wide
  kubectl canopy get -n bookinfo -o yaml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return g.run(cmd, args) },
	}
	cmd.Flags().BoolVarP(&g.all, "all-namespaces", "A", false, "List the Canaries of every namespace")
	cmd.Flags().StringVarP(&g.output, "output", "o", "", "Output format: wide, json or yaml")
	return cmd
}

func (g *getOptions) run(cmd *cobra.Command, args []string) error {
	switch g.output {
	case "", formatWide, formatJSON, formatYAML:
	default:
		return &exitError{code: ExitError, msg: fmt.Sprintf("error: unknown output format %q: use wide, json or yaml", g.output)}
	}
	if g.all && len(args) > 0 {
		return &exitError{code: ExitError, msg: "error: a Canary is named within one namespace: use -n NAMESPACE, not -A, with a NAME"}
	}
	ctx := cmd.Context()
	cl, err := g.client()
	if err != nil {
		return err
	}
	ns := g.namespace()
	var items []meshv1.Canary
	if len(args) == 1 {
		c := &meshv1.Canary{}
		if err := cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: args[0]}, c); err != nil {
			if apierrors.IsNotFound(err) {
				return notFound(ns, args[0])
			}
			return err
		}
		items = append(items, *c)
	} else {
		list := &meshv1.CanaryList{}
		var opts []client.ListOption
		if !g.all {
			opts = append(opts, client.InNamespace(ns))
		}
		if err := cl.List(ctx, list, opts...); err != nil {
			return err
		}
		items = list.Items
		if len(items) == 0 && (g.output == "" || g.output == formatWide) {
			if g.all {
				printLine(g.streams.ErrOut, "No Canaries in any namespace; canopy delivers a Deployment once a Canary targets it (see config/samples)")
			} else {
				printf(g.streams.ErrOut, "No Canaries in namespace %s; list every namespace's with kubectl canopy get -A\n", ns)
			}
			return nil
		}
	}
	slices.SortFunc(items, func(a, b meshv1.Canary) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	switch g.output {
	case formatJSON, formatYAML:
		return printObjects(g.streams.Out, g.output, items, len(args) == 1)
	default:
		writeCanaryTable(g.streams.Out, items, g.all, g.output == formatWide, g.now(), g.palette())
		return nil
	}
}

// writeCanaryTable prints Canaries as get does.
func writeCanaryTable(w io.Writer, items []meshv1.Canary, allNamespaces, wide bool, now time.Time, p palette) {
	header := []string{colName, "PHASE", "WEIGHT", "STEP", "FAILED", "AGE"}
	if allNamespaces {
		header = append([]string{"NAMESPACE"}, header...)
	}
	if wide {
		header = append(header, "REVISION", "PROMOTED", colMessage)
	}
	rows := make([][]cell, 0, len(items))
	for i := range items {
		c := &items[i]
		st := &c.Status
		phase := c.Status.Phase
		failedStyle := (func(string) string)(nil)
		if st.FailedChecks > 0 {
			failedStyle = p.yellow
		}
		row := []cell{
			{text: c.Name, style: p.bold},
			{text: phaseText(c), style: func(s string) string { return p.phase(phase, s) }},
			plain(fmt.Sprintf("%d%%", st.CanaryWeight)),
			plain(stepText(c)),
			{text: fmt.Sprintf("%d/%d", st.FailedChecks, thresholdOf(&c.Spec.Analysis)), style: failedStyle},
			plain(age(c.CreationTimestamp, now)),
		}
		if allNamespaces {
			row = append([]cell{plain(c.Namespace)}, row...)
		}
		if wide {
			row = append(row, plain(orDash(st.CurrentRevision)), plain(orDash(st.LastPromotedRevision)), plain(readyMessage(c)))
		}
		rows = append(rows, row)
	}
	writeTable(w, header, rows, "")
}

// printObjects prints Canaries as kubectl -o json|yaml does: one object, or a v1 List.
func printObjects(w io.Writer, format string, items []meshv1.Canary, single bool) error {
	gvk := meshv1.GroupVersion.WithKind("Canary")
	out := make([]any, 0, len(items))
	for i := range items {
		c := items[i].DeepCopy()
		c.SetGroupVersionKind(gvk)
		c.ManagedFields = nil // kubectl hides them too
		out = append(out, c)
	}
	var v any = map[string]any{"apiVersion": "v1", "kind": kindList, "metadata": map[string]any{}, "items": out}
	if single && len(out) == 1 {
		v = out[0]
	}
	var b []byte
	var err error
	if format == formatJSON {
		b, err = json.MarshalIndent(v, "", "    ")
		b = append(b, '\n')
	} else {
		b, err = yaml.Marshal(v)
	}
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
