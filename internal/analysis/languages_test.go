package analysis

import (
	"strings"
	"testing"
	"time"
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

// A Canary's value stays inside the InfluxQL string or identifier it is written in, and is
// one token elsewhere; a regular expression takes none.
func TestRenderForInfluxQL(t *testing.T) {
	render := func(tmpl, v string) (string, error) {
		return RenderFor("influxql", tmpl, QueryVars{Interval: 5 * time.Minute, Vars: map[string]string{"v": v}})
	}
	for _, tt := range []struct{ tmpl, v, want string }{
		{`SELECT mean("errors") FROM "requests" WHERE "service" = '{{ variables.v }}' AND time > now() - {{ interval }}`, "reviews",
			`SELECT mean("errors") FROM "requests" WHERE "service" = 'reviews' AND time > now() - 5m`},
		{`SELECT mean(x) FROM m WHERE s = '{{ variables.v }}'`, `a' OR s =~ /.*/ --`, `SELECT mean(x) FROM m WHERE s = 'a\' OR s =~ /.*/ --'`},
		{`SELECT mean(x) FROM m WHERE s = '{{ variables.v }}'`, `a\`, `SELECT mean(x) FROM m WHERE s = 'a\\'`},
		{`SELECT mean("{{ variables.v }}") FROM m`, `x") FROM secret --`, `SELECT mean("x\") FROM secret --") FROM m`},
		{`SELECT sum(a) / sum(b) FROM m WHERE s = '{{ variables.v }}'`, `it's`, `SELECT sum(a) / sum(b) FROM m WHERE s = 'it\'s'`},
		{"SELECT mean(x) FROM m -- it's a comment\nWHERE s = '{{ variables.v }}'", "a'b", "SELECT mean(x) FROM m -- it's a comment\nWHERE s = 'a\\'b'"},
		{`SELECT mean(x) FROM /it's/ WHERE s = '{{ variables.v }}'`, "a'b", `SELECT mean(x) FROM /it's/ WHERE s = 'a\'b'`},
		{`SELECT mean(x) FROM m WHERE a =~ /x'y/ AND s = '{{ variables.v }}'`, "a'b", `SELECT mean(x) FROM m WHERE a =~ /x'y/ AND s = 'a\'b'`},
		{`SELECT mean(x) FROM m WHERE s = '{{ variables.v }}'`, "two\nlines", `SELECT mean(x) FROM m WHERE s = 'two\nlines'`},
	} {
		got, err := render(tt.tmpl, tt.v)
		if err != nil || got != tt.want {
			t.Errorf("template %q with %q: %q, %v; want %q", tt.tmpl, tt.v, got, err, tt.want)
		}
	}
	for _, tt := range []struct{ tmpl, v, wantErr string }{
		{`SELECT mean(x) FROM m WHERE s = {{ variables.v }}`, "a OR 1=1", "not an identifier"},
		{`SELECT mean(x) FROM m WHERE s = {{ variables.v }}`, "or", "keyword"},
		{`SELECT mean(x) FROM m WHERE s =~ /{{ variables.v }}/`, "a", "regular expression"},
		{`SELECT mean(x) FROM m /* {{ variables.v }} */`, "*/ OR", "not an identifier"},
		{`SELECT mean(x) FROM m WHERE s = '{{ variables.v }}'`, "a\rb", "carriage return"},
		{`SELECT mean(x) FROM m WHERE s = '{{ variables.v }}`, "a", "unterminated string"},
	} {
		if got, err := render(tt.tmpl, tt.v); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("template %q with %q: %q, %v; want an error containing %q", tt.tmpl, tt.v, got, err, tt.wantErr)
		}
	}
}

// A Canary's value stays inside the Flux string it is written in and cannot interpolate.
func TestRenderForFlux(t *testing.T) {
	render := func(tmpl, v string) (string, error) {
		return RenderFor("influxdb", tmpl, QueryVars{Interval: 2 * time.Minute, Vars: map[string]string{"v": v}})
	}
	for _, tt := range []struct{ tmpl, v, want string }{
		{`from(bucket: "mesh") |> range(start: -{{ interval }}) |> filter(fn: (r) => r.service == "{{ variables.v }}")`, "reviews",
			`from(bucket: "mesh") |> range(start: -2m) |> filter(fn: (r) => r.service == "reviews")`},
		{`filter(fn: (r) => r.s == "{{ variables.v }}")`, `x" or true or r.s == "`, `filter(fn: (r) => r.s == "x\" or true or r.s == \"")`},
		{`filter(fn: (r) => r.s == "{{ variables.v }}")`, "a\\\nb", `filter(fn: (r) => r.s == "a\\\nb")`},
		{"// \"quoted\" comment\nfilter(fn: (r) => r.s == \"{{ variables.v }}\")", `a"b`, "// \"quoted\" comment\nfilter(fn: (r) => r.s == \"a\\\"b\")"},
		{`filter(fn: (r) => r.a =~ /"x/ and r.s == "{{ variables.v }}")`, `a"b`, `filter(fn: (r) => r.a =~ /"x/ and r.s == "a\"b")`},
		{`map(fn: (r) => ({r with v: r.a / 2.0})) |> filter(fn: (r) => r.s == "{{ variables.v }}")`, `a"b`, `map(fn: (r) => ({r with v: r.a / 2.0})) |> filter(fn: (r) => r.s == "a\"b")`},
	} {
		got, err := render(tt.tmpl, tt.v)
		if err != nil || got != tt.want {
			t.Errorf("template %q with %q: %q, %v; want %q", tt.tmpl, tt.v, got, err, tt.want)
		}
	}
	for _, tt := range []struct{ tmpl, v, wantErr string }{
		{`filter(fn: (r) => r.s == "{{ variables.v }}")`, "${secret}", "interpolation"},
		{`filter(fn: (r) => r.s == "${ {{ variables.v }} }")`, "x", "interpolation"},
		{`filter(fn: (r) => r.s == {{ variables.v }})`, `"x" or true`, "not an identifier"},
		{`filter(fn: (r) => r.s =~ /{{ variables.v }}/)`, "x", "regular expression"},
		{`filter(fn: (r) => r.s == "{{ variables.v }})`, "x", "unterminated string"},
	} {
		if got, err := render(tt.tmpl, tt.v); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("template %q with %q: %q, %v; want an error containing %q", tt.tmpl, tt.v, got, err, tt.wantErr)
		}
	}
}

// A Canary's value cannot leave the JSON string of a CloudWatch query, and the rendered
// query must be a list of MetricDataQuery with one returning data.
func TestRenderForCloudWatch(t *testing.T) {
	tmpl := `[{"Id": "e", "Expression": "SELECT SUM(HTTPCode_Target_5XX_Count) FROM SCHEMA(\"AWS/ApplicationELB\", TargetGroup) WHERE TargetGroup = '{{ variables.tg }}'"}]`
	got, err := RenderFor("cloudwatch", tmpl, QueryVars{Vars: map[string]string{"tg": "targetgroup/reviews-canary/0123"}})
	if err != nil || !strings.Contains(got, "TargetGroup = 'targetgroup/reviews-canary/0123'") {
		t.Errorf("RenderFor = %q, %v", got, err)
	}
	for _, v := range []string{`x"}, {"Id": "b`, `x' OR 1=1`, `a\`, "a b", ""} {
		if got, err := RenderFor("cloudwatch", tmpl, QueryVars{Vars: map[string]string{"tg": v}}); err == nil {
			t.Errorf("value %q rendered as %q", v, got)
		}
	}
	if err := ValidateFor("cloudwatch", tmpl); err != nil {
		t.Errorf("ValidateFor: %v", err)
	}
	if err := ValidateFor("cloudwatch", `[{"Id": "{{ name }}"}]`); err == nil || !strings.Contains(err.Error(), "Expression and MetricStat") {
		t.Errorf("ValidateFor of a query without a metric: %v", err)
	}
}
