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
		{typ: "datadog", query: "avg:trace.http.request.duration{service:{{ service }},env:{{ variables.env }}}"},
		{typ: "datadog", query: "avg:m{service:{{ nope }}}", wantErr: "unknown placeholder"},
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

// A Canary's value cannot leave the tag it is written in: a comma would add a tag, a brace
// close the scope, a space or colon start another expression.
func TestRenderForDatadogRefusesHostileValues(t *testing.T) {
	tmpl := "sum:trace.http.request.errors{service:{{ variables.svc }},env:prod}.as_count()"
	got, err := RenderFor("datadog", tmpl, QueryVars{Vars: map[string]string{"svc": "web-api.v2"}})
	if err != nil || got != "sum:trace.http.request.errors{service:web-api.v2,env:prod}.as_count()" {
		t.Fatalf("RenderFor = %q, %v", got, err)
	}
	for _, hostile := range []string{"web},env:*", "web,env:staging", "web} + sum:other{*", "a b", "web:x", "", "*"} {
		if got, err := RenderFor("datadog", tmpl, QueryVars{Vars: map[string]string{"svc": hostile}}); err == nil {
			t.Errorf("value %q rendered as %q", hostile, got)
		}
	}
}

// A Canary's value stays inside the NRQL string or name it is written in.
func TestRenderForNRQLRefusesHostileValues(t *testing.T) {
	render := func(tmpl, v string) (string, error) {
		return RenderFor("newrelic", tmpl, QueryVars{Namespace: "shop", Vars: map[string]string{"v": v}})
	}
	tmpl := "SELECT percentage(count(*), WHERE error IS false) FROM Transaction WHERE appName = '{{ variables.v }}' SINCE 5 minutes ago"
	for v, want := range map[string]string{
		"reviews":               "appName = 'reviews' SINCE",
		"x' OR appName LIKE '%": `appName = 'x\' OR appName LIKE \'%' SINCE`,
		`x\' OR 1=1 --`:         `appName = 'x\\\' OR 1=1 --' SINCE`,
	} {
		got, err := render(tmpl, v)
		if err != nil || !strings.Contains(got, want) {
			t.Errorf("value %q: %q, %v; want it to contain %q", v, got, err, want)
		}
	}
	for _, tt := range []struct{ tmpl, v string }{
		{"SELECT count(*) FROM Transaction WHERE appName = {{ variables.v }}", "x OR true"},
		{"SELECT count(*) FROM Transaction WHERE `{{ variables.v }}` = 1", "a` = 1 OR `b"},
		// In a comment the lexer must not see a string: the value would be code to NRQL.
		{"SELECT count(*) FROM Transaction -- it's\nWHERE appName = {{ variables.v }}", "x' OR '1"},
		{"SELECT count(*) FROM T /* it's */ WHERE a = {{ variables.v }}", "x' OR '1"},
		{"SELECT count(*) FROM T WHERE a = '{{ variables.v }}", "x"},
	} {
		if got, err := render(tt.tmpl, tt.v); err == nil {
			t.Errorf("template %q with %q rendered as %q", tt.tmpl, tt.v, got)
		}
	}
}

// A Canary's value stays inside the Dynatrace selector string it is written in.
func TestRenderForDynatraceRefusesHostileValues(t *testing.T) {
	tmpl := `builtin:service.errors.total.rate:filter(eq("dt.entity.service.name","{{ variables.v }}")):splitBy()`
	render := func(tmpl, v string) (string, error) {
		return RenderFor("dynatrace", tmpl, QueryVars{Vars: map[string]string{"v": v}})
	}
	for v, want := range map[string]string{
		"reviews":               `"reviews"`,
		`x"),or(eq("a","b`:      `"x~"),or(eq(~"a~",~"b"`,
		`x~"):filter(eq("a","b`: `"x~~~"):filter(eq(~"a~",~"b"`,
	} {
		got, err := render(tmpl, v)
		if err != nil || !strings.Contains(got, want) {
			t.Errorf("value %q: %q, %v; want it to contain %q", v, got, err, want)
		}
	}
	for _, tt := range []struct{ tmpl, v string }{
		{`builtin:host.cpu.usage:filter(eq(x,{{ variables.v }}))`, "a),or(eq(b"},
		{`builtin:host.cpu.usage:filter(eq("x","{{ variables.v }}))`, "a"},
		{`builtin:x:filter(eq("a","{{ variables.v }}"))`, "line\nbreak"},
	} {
		if got, err := render(tt.tmpl, tt.v); err == nil {
			t.Errorf("template %q with %q rendered as %q", tt.tmpl, tt.v, got)
		}
	}
}

// A Canary's value is one node of a Graphite path: it cannot add nodes, wildcards or
// arguments.
func TestRenderForGraphiteRefusesHostileValues(t *testing.T) {
	tmpl := `sumSeries(stats.{{ namespace }}.{{ variables.v }}.errors)`
	got, err := RenderFor("graphite", tmpl, QueryVars{Namespace: "shop", Vars: map[string]string{"v": "reviews-v2"}})
	if err != nil || got != "sumSeries(stats.shop.reviews-v2.errors)" {
		t.Errorf("RenderFor = %q, %v", got, err)
	}
	for _, v := range []string{"*", "a.b", "{a,b}", "a),sumSeries(other.*", "x'", "[0-9]", ""} {
		if got, err := RenderFor("graphite", tmpl, QueryVars{Namespace: "shop", Vars: map[string]string{"v": v}}); err == nil {
			t.Errorf("value %q rendered as %q", v, got)
		}
	}
}
