package analysis

import (
	"strings"
	"unicode/utf8"
)

// renderDynatrace substitutes the placeholders of a Dynatrace metric selector. Inside a
// "..." string a value has Dynatrace's escape character applied (~ before ~ and "), so it
// cannot close the string; anywhere else it must be a plain identifier or number, so it
// cannot add a transformation or a filter.
func renderDynatrace(tmpl string, vars QueryVars) (string, error) {
	var out strings.Builder
	inString := false
	escaped := false
	for i := 0; i < len(tmpl); {
		if strings.HasPrefix(tmpl[i:], "{{") {
			name, value, n, err := readPlaceholder(tmpl, i, vars, escaped, "a ~")
			if err != nil {
				return "", err
			}
			switch {
			case !utf8.ValidString(value) || strings.ContainsAny(value, "\r\n"):
				return "", templateErrorf("{{ %s }}: value %q is not one line of valid UTF-8", name, value)
			case inString:
				value = strings.NewReplacer("~", "~~", `"`, `~"`).Replace(value)
			case !identRe.MatchString(value) && !numberRe.MatchString(value):
				return "", templateErrorf("{{ %s }}: value %q is substituted outside a quoted string and is not an identifier or number", name, value)
			}
			out.WriteString(value)
			i += n
			continue
		}
		c := tmpl[i]
		out.WriteByte(c)
		i++
		switch {
		case !inString && c == '"':
			inString = true
		case inString && escaped:
			escaped = false
		case inString && c == '~':
			escaped = true
		case inString && c == '"':
			inString = false
		}
	}
	if inString {
		return "", templateErrorf("unterminated string literal")
	}
	return out.String(), nil
}
