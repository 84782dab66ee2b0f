package analysis

import (
	"strings"
	"testing"
)

func TestValidateFor(t *testing.T) {
	tests := []struct {
		typ, query string
		wantErr    string
	}{
		{typ: "prometheus", query: `sum(up{namespace="{{ namespace }}"})`},
		{typ: "victoriametrics", query: `sum(rate(x[{{ interval }}]))`},
		{typ: "victoriametrics", query: `sum(`, wantErr: "not valid MetricsQL"},
		// MetricsQL, not PromQL: a rollup without a window.
		{typ: "victoriametrics", query: `max(last_over_time(x{namespace="{{ namespace }}"}))`},
		{typ: "prometheus", query: `max(last_over_time(x{namespace="{{ namespace }}"}))`, wantErr: "not valid PromQL"},
		{typ: "victoriametrics", query: `x{a="{{ variables.v }}"}`},
		{typ: "web", query: "{.status.successRate}"},
		{typ: "web", query: ".status.successRate"},
		{typ: "web", query: `{.checks[?(@.name=="{{ name }}")].ok}`, wantErr: "takes no placeholders"},
		{typ: "web", query: "rate is {.status.successRate}", wantErr: "not one expression"},
		{typ: "web", query: "{.a", wantErr: "not a JSONPath"},
	}
	for _, tt := range tests {
		err := ValidateFor(tt.typ, tt.query)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s %q: %v", tt.typ, tt.query, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s %q: error %v, want %q", tt.typ, tt.query, err, tt.wantErr)
		}
	}
}
