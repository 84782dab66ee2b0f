package analysis

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRenderQuery(t *testing.T) {
	base := QueryVars{
		Namespace: "shop",
		Name:      "reviews",
		Target:    "reviews",
		Service:   "reviews",
		Interval:  time.Minute,
	}
	with := func(kv ...string) QueryVars {
		v := base
		v.Vars = map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			v.Vars[kv[i]] = kv[i+1]
		}
		return v
	}
	tests := []struct {
		name    string
		tmpl    string
		vars    QueryVars
		want    string
		wantErr string
	}{
		{
			name: "built-in variables in strings and a range",
			tmpl: `sum(rate(m{namespace="{{ namespace }}",pod=~"{{target}}-.*"}[{{ interval }}]))`,
			vars: base,
			want: `sum(rate(m{namespace="shop",pod=~"reviews-.*"}[1m]))`,
		},
		{
			name: "double quote and backslash escaped",
			tmpl: `m{a="{{ variables.v }}"}`,
			vars: with("v", `x"} or vector(1) or m{a="\`),
			want: `m{a="x\"} or vector(1) or m{a=\"\\"}`,
		},
		{
			name: "single quote escaped, double quote left alone",
			tmpl: `m{a='{{ variables.v }}'}`,
			vars: with("v", `it's "quoted"`),
			want: `m{a='it\'s "quoted"'}`,
		},
		{
			name: "newline and control characters escaped",
			tmpl: `m{a="{{ variables.v }}"}`,
			vars: with("v", "a\nb\tc\x00"),
			want: `m{a="a\nb\tc\x00"}`,
		},
		{
			name: "raw string takes a value verbatim",
			tmpl: "m{a=`{{ variables.v }}`}",
			vars: with("v", `a\b"c'`),
			want: "m{a=`a\\b\"c'`}",
		},
		{
			name:    "raw string refuses a backquote",
			tmpl:    "m{a=`{{ variables.v }}`}",
			vars:    with("v", "a` or vector(1) or `"),
			wantErr: "backquote",
		},
		{
			name: "number outside a literal",
			tmpl: `m > {{ variables.limit }}`,
			vars: with("limit", "0.5"),
			want: `m > 0.5`,
		},
		{
			name: "identifier outside a literal",
			tmpl: `{{ variables.metric }}{job="x"}`,
			vars: with("metric", "http_requests_total"),
			want: `http_requests_total{job="x"}`,
		},
		{
			name: "duration outside a literal",
			tmpl: `rate(m[{{ variables.window }}])`,
			vars: with("window", "5m30s"),
			want: `rate(m[5m30s])`,
		},
		{
			name:    "operator outside a literal refused",
			tmpl:    `m > {{ variables.limit }}`,
			vars:    with("limit", "0 or vector(1)"),
			wantErr: "not an identifier, number or duration",
		},
		{
			name:    "negative number outside a literal refused",
			tmpl:    `m{{ variables.limit }}`,
			vars:    with("limit", "-1"),
			wantErr: "not an identifier, number or duration",
		},
		{
			name:    "keyword outside a literal refused",
			tmpl:    `m {{ variables.op }} n`,
			vars:    with("op", "OR"),
			wantErr: "keyword",
		},
		{
			name:    "namespace outside a literal refused when not an identifier",
			tmpl:    `m_{{ namespace }}`,
			vars:    QueryVars{Namespace: "a-b", Interval: time.Minute},
			wantErr: "not an identifier",
		},
		{
			name: "quote inside a comment does not open a string",
			tmpl: "m # it's \"fine\"\n{a=\"{{ variables.v }}\"}",
			vars: with("v", `"`),
			want: "m # it's \"fine\"\n{a=\"\\\"\"}",
		},
		{
			name:    "comment value cannot end the comment",
			tmpl:    "m # {{ variables.v }}\n",
			vars:    with("v", "x\nor vector(1)"),
			wantErr: "not an identifier",
		},
		{
			name: "escaped quote in the template keeps the string open",
			tmpl: `m{a="x\"{{ variables.v }}"}`,
			vars: with("v", "y"),
			want: `m{a="x\"y"}`,
		},
		{
			name:    "placeholder after a backslash refused",
			tmpl:    `m{a="x\{{ variables.v }}"}`,
			vars:    with("v", "n"),
			wantErr: "follows a backslash",
		},
		{
			name:    "unknown variable",
			tmpl:    `m{a="{{ variables.missing }}"}`,
			vars:    with(),
			wantErr: `"missing" is not set`,
		},
		{
			name:    "unknown placeholder",
			tmpl:    `m{a="{{ pod }}"}`,
			vars:    base,
			wantErr: "unknown placeholder",
		},
		{
			name:    "malformed placeholder",
			tmpl:    `m{a="{{ variables.a b }}"}`,
			vars:    with("a", "x"),
			wantErr: "malformed placeholder",
		},
		{
			name:    "unterminated literal",
			tmpl:    `m{a="{{ namespace }}}`,
			vars:    base,
			wantErr: "unterminated",
		},
		{
			name:    "invalid UTF-8 refused",
			tmpl:    `m{a="{{ variables.v }}"}`,
			vars:    with("v", "\xff"),
			wantErr: "UTF-8",
		},
		{
			name: "sub-minute interval",
			tmpl: `rate(m[{{ interval }}])`,
			vars: QueryVars{Interval: 90 * time.Second},
			want: `rate(m[90s])`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RenderQuery(tt.tmpl, tt.vars)
			if tt.wantErr != "" {
				var te *TemplateError
				if !errors.As(err, &te) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("RenderQuery() error = %v, want a TemplateError containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("RenderQuery() error = %v", err)
			}
			if got != tt.want {
				t.Errorf("RenderQuery() =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestPromDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Minute:             "1m",
		90 * time.Second:        "90s",
		2 * time.Hour:           "2h",
		1500 * time.Millisecond: "1500ms",
		61 * time.Minute:        "61m",
	} {
		if got := PromDuration(d); got != want {
			t.Errorf("PromDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// fuzzTemplates place two user values in every lexical position a template can give them.
// strings returns the literals the rendered query must contain, decoded, in order.
var fuzzTemplates = []struct {
	tmpl    string
	strings func(a, b string) []string
}{
	{
		tmpl:    `sum(rate(m{ns="{{ namespace }}",x="{{ variables.a }}",y='{{ variables.b }}'}[{{ interval }}]))`,
		strings: func(a, b string) []string { return []string{"shop", a, b} },
	},
	{
		tmpl:    "m{x=~`pre-{{ variables.a }}`, y!=\"\\\"{{ variables.b }}\\\\\"}",
		strings: func(a, b string) []string { return []string{"pre-" + regexp.QuoteMeta(a), `"` + b + `\`} },
	},
	{
		tmpl:    "m{x='{{ variables.a }}'} > {{ variables.b }} # '{{ variables.b }}\n+ on() vector(\"{{ variables.a }}\")",
		strings: func(a, b string) []string { return []string{a, a} },
	},
	{
		tmpl:    `label_replace({{ variables.a }}, "dst", "{{ variables.b }}", "src", "(.*)") offset {{ variables.b }}`,
		strings: func(a, b string) []string { return []string{"dst", b, "src", "(.*)"} },
	},
}

func FuzzRenderQuery(f *testing.F) {
	for i := range fuzzTemplates {
		f.Add(uint8(i), "x", "y")
		f.Add(uint8(i), `"} or vector(1) #`, `'}) or up{a='`)
		f.Add(uint8(i), "`", "\\")
		f.Add(uint8(i), "a\nb", "5m")
	}
	f.Fuzz(func(t *testing.T, which uint8, a, b string) {
		ft := fuzzTemplates[int(which)%len(fuzzTemplates)]
		vars := func(a, b string) QueryVars {
			return QueryVars{Namespace: "shop", Interval: time.Minute, Vars: map[string]string{"a": a, "b": b}}
		}
		benign, err := RenderQuery(ft.tmpl, vars("x", "y"))
		if err != nil {
			t.Fatalf("benign render: %v", err)
		}
		wantShape := shape(t, benign)

		got, err := RenderQuery(ft.tmpl, vars(a, b))
		if err != nil {
			var te *TemplateError
			if !errors.As(err, &te) {
				t.Fatalf("error %v is not a TemplateError", err)
			}
			return // refusing a value is always safe
		}
		gotShape := shape(t, got)
		if gotShape.structure != wantShape.structure {
			t.Fatalf("query shape changed:\n%s\nhas structure %q, want %q", got, gotShape.structure, wantShape.structure)
		}
		want := ft.strings(a, b)
		if fmt.Sprint(gotShape.literals) != fmt.Sprint(want) {
			t.Fatalf("string literals of\n%s\nare %q, want %q", got, gotShape.literals, want)
		}
	})
}

type queryShape struct {
	structure string   // every token but identifiers and numbers, in order
	literals  []string // string literals, decoded
}

// shape lexes a rendered query the way PromQL does, independently of RenderQuery's scanner:
// a value that escaped its literal shows up as punctuation, a literal or a comment that
// the template did not have.
func shape(t *testing.T, q string) queryShape {
	t.Helper()
	var s queryShape
	var structure strings.Builder
	isWord := func(c byte) bool {
		return c == '_' || c == ':' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
	}
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			end := strings.IndexAny(q[i:], "\r\n")
			if end < 0 {
				end = len(q) - i
			}
			structure.WriteString("#comment ")
			i += end
		case c == '"' || c == '\'':
			var lit strings.Builder
			i++
			for {
				if i >= len(q) || q[i] == '\n' {
					t.Fatalf("unterminated string in %q", q)
				}
				if q[i] == c {
					i++
					break
				}
				r, _, tail, err := strconv.UnquoteChar(q[i:], c)
				if err != nil {
					t.Fatalf("bad escape at %d in %q: %v", i, q, err)
				}
				lit.WriteRune(r)
				i = len(q) - len(tail)
			}
			s.literals = append(s.literals, lit.String())
			structure.WriteString("STR ")
		case c == '`':
			end := strings.IndexByte(q[i+1:], '`')
			if end < 0 {
				t.Fatalf("unterminated raw string in %q", q)
			}
			s.literals = append(s.literals, q[i+1:i+1+end])
			structure.WriteString("STR ")
			i += end + 2
		case isWord(c):
			for i < len(q) && isWord(q[i]) {
				i++
			}
			structure.WriteString("W ")
		default:
			structure.WriteByte(c)
			structure.WriteByte(' ')
			i++
		}
	}
	s.structure = structure.String()
	return s
}

// A value in a regular expression matcher's string matches itself and nothing more: ".*"
// must not widen a matcher to every series (issue 19, item 8). Equality matchers and
// strings that are no matcher keep the value as it is.
func TestRenderQueryEscapesRegexMatchers(t *testing.T) {
	tmpl := `sum(m{a=~"{{ variables.v }}", b !~ '{{ variables.v }}', c=` + "`{{ variables.v }}`" + `, d=~"api-{{ variables.v }}|web", e="{{ variables.v }}"})` +
		` / label_replace(n, "x", "{{ variables.v }}", "y", "(.*)")`
	for _, v := range []string{".*", "a|b", `shop.+`, `x\d`, "(?i)A", "[a-z]", "^$"} {
		got, err := RenderQuery(tmpl, QueryVars{Vars: map[string]string{"v": v}})
		if err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		lits := shape(t, got).literals
		quoted := regexp.QuoteMeta(v)
		want := []string{quoted, quoted, v, "api-" + quoted + "|web", v, "x", v, "y", "(.*)"}
		if fmt.Sprint(lits) != fmt.Sprint(want) {
			t.Errorf("%q renders %s\nliterals %q, want %q", v, got, lits, want)
		}
		// Anchored as Prometheus anchors it, the matcher's expression matches the value alone.
		re := regexp.MustCompile("^(?:" + lits[0] + ")$")
		if !re.MatchString(v) || re.MatchString(v+"x") || (v != "" && re.MatchString("")) {
			t.Errorf("%q: the rendered matcher %q matches more than the value", v, lits[0])
		}
	}
}
