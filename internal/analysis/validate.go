package analysis

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/prometheus/prometheus/promql/parser"
)

// sampleIdent and sampleDuration stand in for the values a Canary gives a template. A
// variable may stand for a name or a label value (an identifier fits both) or for a range
// (a duration): the query is valid when it parses with one of the two.
const (
	sampleIdent    = "sample"
	sampleDuration = "5m"
)

// anyPlaceholderRe finds placeholders anywhere in a template (placeholderRe is anchored).
var anyPlaceholderRe = regexp.MustCompile(strings.TrimPrefix(placeholderRe.String(), "^"))

// ValidateQuery checks a MetricTemplate's query before any Canary uses it: the template
// renders (its placeholders are known and well formed, its string literals closed) and
// the rendered query is PromQL. Placeholders are filled with sample values through
// RenderQuery, the function the checks themselves use, so what passes here renders the
// same way at analysis time. A *TemplateError is a template problem; a *QueryError
// quotes the PromQL parser, with the position in the query as rendered.
func ValidateQuery(tmpl string) error {
	return validateRendered(tmpl, "PromQL", func(q string) error {
		_, err := parser.ParseExpr(q)
		return err
	})
}

// validateRendered renders tmpl with sample values and parses it with parse, a parser of
// the language named lang.
func validateRendered(tmpl, lang string, parse func(string) error) error {
	vars := sampleVars(tmpl)
	rendered, err := RenderQuery(tmpl, vars)
	if err != nil {
		return err
	}
	perr := parse(rendered)
	if perr == nil || len(vars.Vars) == 0 {
		return queryError(lang, rendered, perr)
	}
	for k := range vars.Vars {
		vars.Vars[k] = sampleDuration
	}
	if again, err := RenderQuery(tmpl, vars); err == nil {
		if err := parse(again); err == nil {
			return nil
		}
	}
	return queryError(lang, rendered, perr)
}

// QueryError is a rendered query the provider language's parser refuses.
type QueryError struct {
	// Lang is the query language, e.g. PromQL or MetricsQL.
	Lang string
	// Rendered is the query with sample values in its placeholders.
	Rendered string
	// Err is the parser's first error, e.g. "1:14: parse error: unexpected <by>".
	Err error
}

func (e *QueryError) Error() string {
	return fmt.Sprintf("not valid %s: %v (placeholders filled with sample values: %q)", e.Lang, e.Err, e.Rendered)
}

func (e *QueryError) Unwrap() error { return e.Err }

func queryError(lang, rendered string, err error) error {
	if err == nil {
		return nil
	}
	var perrs parser.ParseErrors
	if errors.As(err, &perrs) && len(perrs) > 0 {
		err = &perrs[0]
	}
	return &QueryError{Lang: lang, Rendered: rendered, Err: err}
}
