package analysis

import (
	"strings"
	"unicode/utf8"
)

// renderNRQL substitutes the placeholders of an NRQL template. The template is scanned as
// NRQL's lexer would: inside a '...' string a value has its backslashes and quotes escaped
// (\\, \'), inside a `...` attribute name a backquote is refused, and anywhere else (code
// and the three kinds of comment, --, // and /* */) it must be a plain identifier or number.
// A value that cannot be placed safely is refused, never passed through.
func renderNRQL(tmpl string, vars QueryVars) (string, error) {
	const (
		code = iota
		quoted
		backquoted
		lineComment
		blockComment
	)
	var out strings.Builder
	state := code
	escaped := false
	for i := 0; i < len(tmpl); {
		if strings.HasPrefix(tmpl[i:], "{{") {
			name, value, n, err := readPlaceholder(tmpl, i, vars, escaped, "a backslash")
			if err != nil {
				return "", err
			}
			if !utf8.ValidString(value) {
				return "", templateErrorf("{{ %s }}: value is not valid UTF-8", name)
			}
			switch state {
			case quoted:
				r := strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\n", `\n`, "\r", `\r`)
				value = r.Replace(value)
			case backquoted:
				if strings.ContainsAny(value, "`\n") {
					return "", templateErrorf("{{ %s }}: value %q contains a backquote and is substituted in a `...` name", name, value)
				}
			default:
				if !identRe.MatchString(value) && !numberRe.MatchString(value) {
					return "", templateErrorf("{{ %s }}: value %q is substituted outside a string literal and is not an identifier or number", name, value)
				}
			}
			out.WriteString(value)
			i += n
			continue
		}
		c := tmpl[i]
		out.WriteByte(c)
		i++
		switch state {
		case code:
			switch {
			case c == '\'':
				state = quoted
			case c == '`':
				state = backquoted
			case (c == '-' || c == '/') && i < len(tmpl) && tmpl[i] == c:
				state = lineComment
			case c == '/' && i < len(tmpl) && tmpl[i] == '*':
				out.WriteByte('*')
				i++
				state = blockComment
			}
		case quoted:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '\'':
				state = code
			}
		case backquoted:
			if c == '`' {
				state = code
			}
		case lineComment:
			if c == '\n' || c == '\r' {
				state = code
			}
		case blockComment:
			if c == '*' && i < len(tmpl) && tmpl[i] == '/' {
				out.WriteByte('/')
				i++
				state = code
			}
		}
	}
	if state == quoted || state == backquoted {
		return "", templateErrorf("unterminated string literal")
	}
	return out.String(), nil
}
