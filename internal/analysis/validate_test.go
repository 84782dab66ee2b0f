package analysis

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
)

func TestValidateQuery(t *testing.T) {
	tests := []struct {
		name  string
		query string
		// wantErr are substrings of the error; none means valid.
		wantErr []string
		// template is true for errors of the template rather than of PromQL.
		template bool
	}{
		{name: "built-in request success rate", query: builtinQueries[CheckRequestSuccessRate]},
		{name: "built-in request duration", query: builtinQueries[CheckRequestDuration]},
		{name: "variable as a label value", query: `sum(rate(http_requests_total{job="{{ variables.job }}"}[{{ interval }}]))`},
		{name: "variable as a range", query: `sum(rate(errors_total{namespace="{{ namespace }}"}[{{ variables.window }}]))`},
		{name: "variable as a metric name", query: `sum({{ variables.metric }}{namespace="{{ namespace }}"})`},
		{name: "unbalanced parenthesis", query: `sum(rate(x[1m])`, wantErr: []string{"not valid PromQL", "1:", "parse error"}},
		{name: "by without a label list", query: `sum by rate(x[1m])`, wantErr: []string{"parse error"}},
		{name: "not PromQL at all", query: `SELECT * FROM metrics`, wantErr: []string{"parse error"}},
		{name: "unknown function", query: `frobnicate(x)`, wantErr: []string{"unknown function", "frobnicate"}},
		{name: "unknown placeholder", query: `x{a="{{ nope }}"}`, wantErr: []string{"unknown placeholder {{ nope }}"}, template: true},
		{name: "unclosed placeholder", query: `x{a="{{ namespace"}`, wantErr: []string{"malformed placeholder"}, template: true},
		{name: "closing braces only", query: `x{a="}}"} }}`, wantErr: []string{"parse error"}},
		{name: "unterminated string", query: `x{a="{{ namespace }}}`, wantErr: []string{"unterminated string literal"}, template: true},
		{name: "empty", query: ``, wantErr: []string{"parse error", "no expression found"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateQuery(tt.query)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("ValidateQuery(%q) = %v, want nil", tt.query, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidateQuery(%q) = nil, want an error with %q", tt.query, tt.wantErr)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			var te *TemplateError
			if errors.As(err, &te) != tt.template {
				t.Errorf("error %q: template error = %v, want %v", err, !tt.template, tt.template)
			}
		})
	}
}

// FuzzValidateQuery: any template is judged without a panic, and a template judged valid
// renders for a Canary (identifier values) into a query the parser accepts, unless one of
// its variables stands for a range.
func FuzzValidateQuery(f *testing.F) {
	for _, q := range []string{
		builtinQueries[CheckRequestSuccessRate], builtinQueries[CheckRequestDuration],
		`up{job="{{ variables.job }}"}`, `sum(rate(x[{{ variables.w }}]))`, `x{a="}}"}`, `{{`, `}}`, "`{{ name }}`", `# {{ target }}`,
	} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		if err := ValidateQuery(q); err != nil || anyPlaceholderRe.MatchString(q) && strings.Contains(q, "variables.") {
			return
		}
		rendered, err := RenderQuery(q, QueryVars{Namespace: "ns", Name: "n", Target: "t", Service: "s", Interval: time.Minute})
		if err != nil {
			t.Fatalf("ValidateQuery(%q) accepted a template RenderQuery refuses: %v", q, err)
		}
		if _, err := parser.ParseExpr(rendered); err != nil {
			t.Fatalf("ValidateQuery(%q) accepted a template that renders to %q, which does not parse: %v", q, rendered, err)
		}
	})
}
