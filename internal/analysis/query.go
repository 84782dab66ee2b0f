package analysis

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// QueryVars are the values a PromQL template may refer to. Vars holds a Canary's
// templateVariables, written {{ variables.KEY }}.
type QueryVars struct {
	Namespace string
	Name      string
	Target    string
	Service   string
	Interval  time.Duration
	Vars      map[string]string
}

// TemplateError says why a template could not be rendered; it is a bad query, never a
// reason to run something else.
type TemplateError struct {
	Msg string
}

func (e *TemplateError) Error() string { return "query template: " + e.Msg }

func templateErrorf(format string, args ...any) error {
	return &TemplateError{Msg: fmt.Sprintf(format, args...)}
}

// lexical places of PromQL a placeholder can stand in. Each gets its own escaping, so
// that a substituted value always stays inside the token the template author wrote.
type lexState int

const (
	stateCode lexState = iota
	stateComment
	stateDoubleQuoted
	stateSingleQuoted
	stateRaw
)

var (
	placeholderRe = regexp.MustCompile(`^\{\{\s*([A-Za-z][A-Za-z0-9_.\-]*)\s*\}\}`)
	// Outside a string literal a value must be a single token that cannot open a string,
	// a comment, a selector, a range or an operator.
	identRe    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	numberRe   = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)
	durationRe = regexp.MustCompile(`^([0-9]+(ms|s|m|h|d|w|y))+$`)
)

// PromQL keywords that would turn a bare identifier into an operator or a modifier.
var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "atan2": true, "by": true, "without": true,
	"on": true, "ignoring": true, "group_left": true, "group_right": true, "offset": true,
	"bool": true, "start": true, "end": true, "step": true, "range": true,
}

// RenderQuery substitutes the placeholders of a PromQL template: {{ namespace }},
// {{ name }}, {{ target }}, {{ service }}, {{ interval }} and {{ variables.KEY }}.
//
// The template is scanned as PromQL's lexer would, and each value is escaped for the
// place it lands in: inside a "..." or '...' literal backslashes, the quote and control
// characters are escaped; inside a `...` literal a backquote is refused; anywhere else
// (code or comment) the value must be a plain identifier, number or duration. In the string
// of a regular expression matcher (=~, !~) the value is first quoted for the regular
// expression, so that it matches itself and nothing more. A value that cannot be placed
// safely is refused with a TemplateError, never passed through.
func RenderQuery(tmpl string, vars QueryVars) (string, error) {
	var out strings.Builder
	out.Grow(len(tmpl))
	state := stateCode
	escaped := false // the previous character in a quoted string was a backslash
	regex := false   // the string being read is the value of a =~ or !~ matcher
	for i := 0; i < len(tmpl); {
		if strings.HasPrefix(tmpl[i:], "{{") {
			name, value, n, err := readPlaceholder(tmpl, i, vars, escaped, "a backslash")
			if err != nil {
				return "", err
			}
			if regex {
				value = regexp.QuoteMeta(value)
			}
			placed, err := place(value, state)
			if err != nil {
				return "", templateErrorf("{{ %s }}: %s", name, err)
			}
			out.WriteString(placed)
			i += n
			continue
		}
		c := tmpl[i]
		if state == stateCode && (c == '"' || c == '\'' || c == '`') {
			regex = afterRegexMatcher(out.String())
		}
		out.WriteByte(c)
		i++
		switch state {
		case stateCode:
			switch c {
			case '#':
				state = stateComment
			case '"':
				state = stateDoubleQuoted
			case '\'':
				state = stateSingleQuoted
			case '`':
				state = stateRaw
			}
		case stateComment:
			if c == '\n' || c == '\r' {
				state = stateCode
			}
		case stateDoubleQuoted, stateSingleQuoted:
			quote := byte('"')
			if state == stateSingleQuoted {
				quote = '\''
			}
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == quote:
				state = stateCode
			case c == '\n':
				return "", templateErrorf("newline inside a quoted string at offset %d", i-1)
			}
		case stateRaw:
			if c == '`' {
				state = stateCode
			}
		}
	}
	switch state {
	case stateDoubleQuoted, stateSingleQuoted, stateRaw:
		return "", templateErrorf("unterminated string literal")
	case stateCode, stateComment:
	}
	return out.String(), nil
}

// afterRegexMatcher reports whether code, the query so far, ends with a regular expression
// matcher (=~ or !~, then blanks), whose string a value must not widen: "a.*" there would
// match every series, not the value itself. Values in such a string are quoted with
// regexp.QuoteMeta (Prometheus' regular expressions are RE2's, anchored at both ends).
func afterRegexMatcher(code string) bool {
	code = strings.TrimRight(code, " \t\r\n")
	return strings.HasSuffix(code, "=~") || strings.HasSuffix(code, "!~")
}

// readPlaceholder reads the placeholder that starts tmpl[i:] ("{{"), looks its value up and
// returns its name, its value and its length. escaped says the character before it was an
// escape character (escapeName), which would swallow the value's first character.
func readPlaceholder(tmpl string, i int, vars QueryVars, escaped bool, escapeName string) (name, value string, n int, err error) {
	m := placeholderRe.FindStringSubmatch(tmpl[i:])
	if m == nil {
		return "", "", 0, templateErrorf("malformed placeholder at offset %d: want {{ name }}", i)
	}
	if escaped {
		return "", "", 0, templateErrorf("placeholder {{ %s }} follows %s", m[1], escapeName)
	}
	value, err = lookupVar(m[1], vars)
	return m[1], value, len(m[0]), err
}

func lookupVar(name string, vars QueryVars) (string, error) {
	switch name {
	case "namespace":
		return vars.Namespace, nil
	case "name":
		return vars.Name, nil
	case "target":
		return vars.Target, nil
	case "service":
		return vars.Service, nil
	case "interval":
		if vars.Interval <= 0 {
			return "", templateErrorf("interval is not set")
		}
		return PromDuration(vars.Interval), nil
	}
	if key, ok := cutVariable(name); ok {
		v, ok := vars.Vars[key]
		if !ok {
			return "", templateErrorf("variable %q is not set in templateVariables", key)
		}
		return v, nil
	}
	return "", templateErrorf("unknown placeholder {{ %s }}", name)
}

// cutVariable returns KEY of a {{ variables.KEY }} placeholder's name.
func cutVariable(name string) (string, bool) {
	key, ok := strings.CutPrefix(name, "variables.")
	return key, ok && key != ""
}

// place escapes value for the lexical state it is substituted in.
func place(value string, state lexState) (string, error) {
	if !utf8.ValidString(value) {
		return "", fmt.Errorf("value is not valid UTF-8")
	}
	switch state {
	case stateDoubleQuoted:
		return escapeQuoted(value, '"'), nil
	case stateSingleQuoted:
		return escapeQuoted(value, '\''), nil
	case stateRaw:
		if strings.ContainsRune(value, '`') {
			return "", fmt.Errorf("value %q contains a backquote and is substituted in a `...` string", value)
		}
		return value, nil
	case stateCode, stateComment:
		if promqlKeywords[strings.ToLower(value)] {
			return "", fmt.Errorf("value %q is a PromQL keyword", value)
		}
		if identRe.MatchString(value) || numberRe.MatchString(value) || durationRe.MatchString(value) {
			return value, nil
		}
		return "", fmt.Errorf("value %q is substituted outside a string literal and is not an identifier, number or duration", value)
	}
	return "", fmt.Errorf("unknown lexical state %d", state)
}

// escapeQuoted escapes s for the inside of a PromQL string literal opened with quote, with
// the escapes PromQL's lexer accepts (Go's, with the string's own quote).
func escapeQuoted(s string, quote rune) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == quote:
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// PromDuration formats d as a PromQL duration ("90s", "5m", "1h", "250ms"). Go's own
// format ("1m30s", "1.5s") is not always valid PromQL.
func PromDuration(d time.Duration) string {
	ms := d.Milliseconds()
	switch {
	case ms <= 0:
		return "0s"
	case ms%(3600*1000) == 0:
		return strconv.FormatInt(ms/(3600*1000), 10) + "h"
	case ms%(60*1000) == 0:
		return strconv.FormatInt(ms/(60*1000), 10) + "m"
	case ms%1000 == 0:
		return strconv.FormatInt(ms/1000, 10) + "s"
	default:
		return strconv.FormatInt(ms, 10) + "ms"
	}
}
