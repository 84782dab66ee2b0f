package influxdb

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"canopy.dev/canopy/internal/analysis/providers"
)

// fluxValue reads an annotated CSV answer of /api/v2/query: blocks of #datatype, #group
// and #default rows, a header row and data rows, whose first column is the annotation
// column; tables are told apart by their result and table columns. An error during the
// query comes as a block with the columns error and reference.
func fluxValue(resp *http.Response, body []byte) (float64, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return 0, providers.Errorf(providers.NoData, "the query returned no table")
	}
	r := csv.NewReader(bytes.NewReader(body))
	r.FieldsPerRecord = -1
	r.ReuseRecord = false
	notFlux := func() error {
		return providers.Errorf(providers.Other, "%s", providers.DescribeAnswer(backend, resp, body))
	}
	var (
		datatypes, defaults, header []string
		expectHeader                bool
		tables                      = map[string]bool{}
		last                        *float64
	)
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil || len(rec) < 2 {
			return 0, notFlux()
		}
		switch rec[0] {
		case "#datatype":
			datatypes, defaults, expectHeader = rec, nil, true
			continue
		case "#default":
			defaults = rec
			continue
		case "#group":
			continue
		case "":
		default:
			return 0, notFlux()
		}
		if datatypes == nil {
			return 0, notFlux()
		}
		if expectHeader {
			header, expectHeader = rec, false
			if len(header) != len(datatypes) {
				return 0, notFlux()
			}
			continue
		}
		if len(rec) != len(header) {
			return 0, notFlux()
		}
		cell := func(col string) (string, bool) {
			for i, h := range header {
				if h != col {
					continue
				}
				if rec[i] == "" && i < len(defaults) {
					return defaults[i], true
				}
				return rec[i], true
			}
			return "", false
		}
		if msg, ok := cell("error"); ok {
			return 0, providers.Errorf(providers.BadQuery, "InfluxDB failed the query: %s", providers.QuoteError(msg))
		}
		result, _ := cell("result")
		table, ok := cell("table")
		if !ok {
			return 0, notFlux()
		}
		tables[result+"/"+table] = true
		raw, ok := cell("_value")
		if !ok {
			return 0, providers.Errorf(providers.BadQuery, "the query's table has no _value column")
		}
		if raw == "" {
			continue
		}
		v, err := parseValue(raw, datatypes[indexOf(header, "_value")])
		if err != nil {
			return 0, err
		}
		last = &v
	}
	switch {
	case len(tables) > 1:
		return 0, providers.Errorf(providers.BadQuery, "the query returned %d tables, want one: group and aggregate them (|> group() |> last())", len(tables))
	case last == nil:
		return 0, providers.Errorf(providers.NoData, "the query returned no value")
	}
	return *last, nil
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

// parseValue reads a _value cell of the annotated type datatype.
func parseValue(raw, datatype string) (float64, error) {
	switch datatype {
	case "double", "long", "unsignedLong":
		v, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return 0, providers.Errorf(providers.Other, "the %s value %s is not a number", datatype, providers.QuoteError(raw))
		}
		return v, nil
	case "boolean":
		if raw == "true" {
			return 1, nil
		}
		return 0, nil
	}
	return 0, providers.Errorf(providers.BadQuery, "the query's _value is a %s, want a number", datatype)
}

// influxQLAnswer is /query's JSON answer; a statement's error comes with status 200.
type influxQLAnswer struct {
	Results *[]struct {
		StatementID int    `json:"statement_id"`
		Error       string `json:"error"`
		Series      []struct {
			Name    string              `json:"name"`
			Tags    map[string]string   `json:"tags"`
			Columns []string            `json:"columns"`
			Values  [][]json.RawMessage `json:"values"`
		} `json:"series"`
	} `json:"results"`
	Error string `json:"error"`
}

// influxQLValue reads the answer of one SELECT: one series, whose columns are time and one
// value; the last non-null value counts.
func influxQLValue(resp *http.Response, body []byte) (float64, error) {
	var ans influxQLAnswer
	if err := json.Unmarshal(body, &ans); err != nil || ans.Results == nil {
		if err == nil && ans.Error != "" {
			return 0, providers.Errorf(providers.BadQuery, "InfluxDB refused the query: %s", providers.QuoteError(ans.Error))
		}
		return 0, providers.Errorf(providers.Other, "%s", providers.DescribeAnswer(backend, resp, body))
	}
	results := *ans.Results
	if len(results) != 1 {
		return 0, providers.Errorf(providers.BadQuery, "the query has %d statements, want one", len(results))
	}
	res := results[0]
	if res.Error != "" {
		return 0, providers.Errorf(providers.BadQuery, "InfluxDB refused the query: %s", providers.QuoteError(res.Error))
	}
	switch len(res.Series) {
	case 0:
		return 0, providers.Errorf(providers.NoData, "the query returned no series")
	case 1:
	default:
		return 0, providers.Errorf(providers.BadQuery, "the query returned %d series, want one: drop the GROUP BY or aggregate it", len(res.Series))
	}
	s := res.Series[0]
	col := -1
	for i, c := range s.Columns {
		if c == "time" {
			continue
		}
		if col >= 0 {
			return 0, providers.Errorf(providers.BadQuery, "the query selects %d values (%s), want one", len(s.Columns)-1, strings.Join(s.Columns, ", "))
		}
		col = i
	}
	if col < 0 {
		return 0, providers.Errorf(providers.BadQuery, "the query selects no value")
	}
	for i := len(s.Values) - 1; i >= 0; i-- {
		row := s.Values[i]
		if col >= len(row) {
			return 0, providers.Errorf(providers.Other, "a row of %d values under %d columns", len(row), len(s.Columns))
		}
		if string(row[col]) == "null" {
			continue
		}
		var v float64
		if err := json.Unmarshal(row[col], &v); err != nil {
			return 0, providers.Errorf(providers.BadQuery, "the query's %s is %s, want a number", s.Columns[col], providers.QuoteError(string(row[col])))
		}
		return v, nil
	}
	return 0, providers.Errorf(providers.NoData, "the series has no value")
}
