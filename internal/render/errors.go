package render

import (
	"errors"
	"fmt"
	"strings"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// FieldError is a value the CRD schema could not reject: a duration that does not parse,
// a regular expression that does not compile, a route port the Service lacks, or two
// settings that contradict each other. Rendering again cannot fix it: a resource must
// change, so the controller marks the owner Stalled and returns a terminal error.
type FieldError struct {
	// Object is the resource the field belongs to when it is not the one being rendered,
	// e.g. "MeshPolicy/reviews" when a Canary is rendered with its service's MeshPolicy.
	Object string
	// Field is the path of the field, e.g. "spec.service.timeout".
	Field string
	// Reason is the condition reason to report: meshv1.ReasonInvalidSpec for a value that
	// is wrong on its own, meshv1.ReasonInconsistent for settings that contradict,
	// meshv1.ReasonNotAllowed for a value the operator's Tenancy forbids.
	Reason  string
	Message string
}

func (e *FieldError) Error() string {
	if e.Object != "" {
		return e.Object + " " + e.Field + ": " + e.Message
	}
	return e.Field + ": " + e.Message
}

// Warning is a setting that renders but probably does not do what its author meant, or
// that another setting overrides.
type Warning struct {
	Object  string
	Field   string
	Message string
}

func (w Warning) String() string {
	if w.Object != "" {
		return w.Object + " " + w.Field + ": " + w.Message
	}
	return w.Field + ": " + w.Message
}

// ReasonOf returns the condition reason of the first FieldError in err, or "" when err
// holds none (a bug in the caller, such as weights that do not add up).
func ReasonOf(err error) string {
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe.Reason
	}
	return ""
}

type errSink struct {
	list     []error
	warnings []Warning
}

// errs collects field errors and warnings while resources are rendered, so that one
// render reports every problem at once. Each errs speaks for one object; about returns
// one for another object feeding the same sink.
type errs struct {
	obj string
	s   *errSink
}

func newErrs() *errs { return &errs{s: &errSink{}} }

func (e *errs) about(obj string) *errs { return &errs{obj: obj, s: e.s} }

func (e *errs) invalid(field, format string, args ...any) {
	e.s.list = append(e.s.list, &FieldError{Object: e.obj, Field: field, Reason: meshv1.ReasonInvalidSpec, Message: fmt.Sprintf(format, args...)})
}

func (e *errs) inconsistent(field, format string, args ...any) {
	e.s.list = append(e.s.list, &FieldError{Object: e.obj, Field: field, Reason: meshv1.ReasonInconsistent, Message: fmt.Sprintf(format, args...)})
}

func (e *errs) notAllowed(field, format string, args ...any) {
	e.s.list = append(e.s.list, &FieldError{Object: e.obj, Field: field, Reason: meshv1.ReasonNotAllowed, Message: fmt.Sprintf(format, args...)})
}

func (e *errs) warn(field, format string, args ...any) {
	e.s.warnings = append(e.s.warnings, Warning{Object: e.obj, Field: field, Message: fmt.Sprintf(format, args...)})
}

// describe names a field of this errs' object for a message about another object.
func (e *errs) describe(field string) string {
	if e.obj == "" {
		return field
	}
	return e.obj + " " + field
}

func (e *errs) err() error { return errors.Join(e.s.list...) }

func (e *errs) warnings() []Warning { return e.s.warnings }

// Describe puts a render error on one line, for a condition message or an event: the
// errors of one render, joined, are separated by "; ".
func Describe(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
