package analysis

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// influxLexer says how an InfluxDB query language is scanned: InfluxQL ('...' strings,
// "..." identifiers, -- and /* */ comments) or Flux ("..." strings with ${} interpolation,
// // comments). Both have /.../ regular expressions, told from a division by what precedes
// the slash, as their parsers do.
type influxLexer struct {
	name         string
	quotes       string // the characters that open a quoted string or identifier
	lineComments []string
	blockComment bool
	interpolates bool // "${" in a string starts code (Flux)
	keywords     map[string]bool
	regexAfter   []string // what, at the end of the query so far, makes a "/" open a regex
}

var influxQL = &influxLexer{
	name:         "InfluxQL",
	quotes:       `'"`,
	lineComments: []string{"--"},
	blockComment: true,
	keywords: map[string]bool{"and": true, "or": true, "not": true, "from": true, "where": true, "select": true, "group": true,
		"by": true, "order": true, "limit": true, "offset": true, "slimit": true, "soffset": true, "fill": true, "into": true, "tz": true},
	regexAfter: []string{"=~", "!~", ",", "(", "from", "select", "by"},
}

var flux = &influxLexer{
	name:         "Flux",
	quotes:       `"`,
	lineComments: []string{"//"},
	interpolates: true,
	keywords: map[string]bool{"and": true, "or": true, "not": true, "exists": true, "if": true, "then": true, "else": true,
		"return": true, "import": true, "option": true, "package": true, "builtin": true, "testcase": true},
	regexAfter: []string{"=~", "!~", ",", "(", "[", ":", "="},
}

const (
	influxCode = iota
	influxQuoted
	influxRegex
	influxLineComment
	influxBlockComment
)

// render substitutes the placeholders of tmpl. In a quoted string or identifier a value has
// its backslashes, its quote and its line breaks escaped (and, in a Flux string, may not hold
// a "$", which could start an interpolation); in a regular expression no placeholder may
// stand; anywhere else, comments included, a value must be an identifier that is not a
// keyword, a number or a duration. A value that cannot be placed safely is refused.
func (l *influxLexer) render(tmpl string, vars QueryVars) (string, error) {
	var out strings.Builder
	state := influxCode
	var quote byte
	escaped := false
	for i := 0; i < len(tmpl); {
		if strings.HasPrefix(tmpl[i:], "{{") {
			name, value, n, err := readPlaceholder(tmpl, i, vars, escaped, "a backslash")
			if err != nil {
				return "", err
			}
			placed, err := l.place(value, state, quote)
			if err != nil {
				return "", templateErrorf("{{ %s }}: %s", name, err)
			}
			out.WriteString(placed)
			i += n
			continue
		}
		c := tmpl[i]
		switch state {
		case influxCode:
			switch {
			case strings.IndexByte(l.quotes, c) >= 0:
				state, quote = influxQuoted, c
			case l.startsLineComment(tmpl[i:]):
				state = influxLineComment
			case l.blockComment && strings.HasPrefix(tmpl[i:], "/*"):
				out.WriteString("/*")
				i += 2
				state = influxBlockComment
				continue
			case c == '/' && l.regexFollows(out.String()):
				state = influxRegex
			}
		case influxQuoted, influxRegex:
			closing := quote
			if state == influxRegex {
				closing = '/'
			}
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == closing:
				state = influxCode
			case state == influxQuoted && l.interpolates && strings.HasPrefix(tmpl[i:], "${"):
				return "", templateErrorf("string interpolation ${...} at offset %d: write the placeholder in the string itself", i)
			}
		case influxLineComment:
			if c == '\n' {
				state = influxCode
			}
		case influxBlockComment:
			if strings.HasPrefix(tmpl[i:], "*/") {
				out.WriteString("*/")
				i += 2
				state = influxCode
				continue
			}
		}
		out.WriteByte(c)
		i++
	}
	switch state {
	case influxQuoted:
		return "", templateErrorf("unterminated string literal")
	case influxRegex:
		return "", templateErrorf("unterminated regular expression")
	case influxBlockComment:
		return "", templateErrorf("unterminated comment")
	}
	return out.String(), nil
}

func (l *influxLexer) startsLineComment(s string) bool {
	for _, p := range l.lineComments {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// regexFollows says whether a "/" after code opens a regular expression: after an operator
// or keyword that takes one, not after an operand (a division).
func (l *influxLexer) regexFollows(code string) bool {
	code = strings.ToLower(strings.TrimRight(code, " \t\r\n"))
	if code == "" {
		return true
	}
	for _, p := range l.regexAfter {
		if !strings.HasSuffix(code, p) {
			continue
		}
		// A keyword must be a whole word: "by", not "nearby".
		before := code[:len(code)-len(p)]
		if !isWordByte(p[0]) || before == "" || !isWordByte(before[len(before)-1]) {
			return true
		}
	}
	return false
}

func isWordByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func (l *influxLexer) place(value string, state int, quote byte) (string, error) {
	if !utf8.ValidString(value) {
		return "", fmt.Errorf("value is not valid UTF-8")
	}
	switch state {
	case influxQuoted:
		if l.interpolates && strings.Contains(value, "$") {
			return "", fmt.Errorf("value %q holds a $, which could start a %s interpolation", value, l.name)
		}
		if !l.interpolates && strings.Contains(value, "\r") {
			return "", fmt.Errorf("value %q holds a carriage return, which a string of %s cannot", value, l.name)
		}
		// \n is an escape of both languages, \r of Flux only.
		return strings.NewReplacer(`\`, `\\`, string(quote), `\`+string(quote), "\n", `\n`, "\r", `\r`).Replace(value), nil
	case influxRegex:
		return "", fmt.Errorf("a placeholder in a regular expression of %s: match the value with a string comparison", l.name)
	}
	if l.keywords[strings.ToLower(value)] {
		return "", fmt.Errorf("value %q is a %s keyword", value, l.name)
	}
	if identRe.MatchString(value) || numberRe.MatchString(value) || durationRe.MatchString(value) {
		return value, nil
	}
	return "", fmt.Errorf("value %q is substituted outside a string literal and is not an identifier, number or duration", value)
}
