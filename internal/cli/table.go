package cli

import (
	"io"
	"strings"
	"time"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
)

// Column headers used by several tables.
const (
	colName    = "NAME"
	colType    = "TYPE"
	colMessage = "MESSAGE"
)

// cell is a table cell: its text, and how to colour it once padded (colour codes must not
// count in the column widths, which is why text/tabwriter is not used).
type cell struct {
	text  string
	style func(string) string
}

func plain(s string) cell { return cell{text: s} }

// table prints rows in columns three spaces apart, as kubectl does. The last column is not
// padded, so that a long message does not push trailing spaces.
func writeTable(w io.Writer, header []string, rows [][]cell, indent string) {
	widths := make([]int, len(header))
	for i, h := range header {
		widths[i] = utf8.RuneCountInString(h)
	}
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c.text))
		}
	}
	line := func(cells []cell) {
		var b strings.Builder
		b.WriteString(indent)
		for i, c := range cells {
			text := c.text
			if c.style != nil {
				text = c.style(text)
			}
			b.WriteString(text)
			if i < len(cells)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c.text)+3))
			}
		}
		b.WriteString("\n")
		_, _ = io.WriteString(w, strings.TrimRight(b.String(), " \n")+"\n")
	}
	if header != nil {
		hs := make([]cell, len(header))
		for i, h := range header {
			hs[i] = plain(h)
		}
		line(hs)
	}
	for _, r := range rows {
		line(r)
	}
}

// age is kubectl's short age: 5s, 3m, 2d.
func age(t metav1.Time, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}

// ago is "12s ago", or "-" when there is no time.
func ago(t *metav1.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	d := now.Sub(t.Time)
	if d < 0 {
		d = 0
	}
	return duration.HumanDuration(d) + " ago"
}
