//go:build linux

package bench

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// sample is one line of the Prometheus text format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// samples are the series of one scrape.
type samples []sample

// parseMetrics reads the Prometheus text exposition format (comments skipped).
func parseMetrics(r io.Reader) (samples, error) {
	var out samples
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		s := sample{labels: map[string]string{}}
		var rest string
		if i := strings.IndexAny(line, "{ "); i >= 0 && line[i] == '{' {
			s.name = line[:i]
			end := strings.LastIndex(line, "}")
			if end < i {
				return nil, fmt.Errorf("malformed metric line %q", line)
			}
			if err := parseLabels(line[i+1:end], s.labels); err != nil {
				return nil, fmt.Errorf("metric line %q: %w", line, err)
			}
			rest = strings.TrimSpace(line[end+1:])
		} else {
			name, v, _ := strings.Cut(line, " ")
			s.name, rest = name, strings.TrimSpace(v)
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return nil, fmt.Errorf("metric line %q has no value", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metric line %q: %w", line, err)
		}
		s.value = v
		out = append(out, s)
	}
	return out, sc.Err()
}

// parseLabels reads `a="x",b="y"` (with the format's escapes) into m.
func parseLabels(s string, m map[string]string) error {
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s), ",")) {
		name, rest, ok := strings.Cut(s, "=")
		if !ok || !strings.HasPrefix(rest, `"`) {
			return fmt.Errorf("malformed labels %q", s)
		}
		var b strings.Builder
		i := 1
		for ; i < len(rest) && rest[i] != '"'; i++ {
			if rest[i] == '\\' && i+1 < len(rest) {
				i++
				switch rest[i] {
				case 'n':
					b.WriteByte('\n')
				default:
					b.WriteByte(rest[i])
				}
				continue
			}
			b.WriteByte(rest[i])
		}
		if i >= len(rest) {
			return fmt.Errorf("unterminated label value in %q", s)
		}
		m[strings.TrimSpace(name)] = b.String()
		s = rest[i+1:]
	}
	return nil
}

// sum adds the values of the series named name whose labels match every pair of match.
func (ss samples) sum(name string, match map[string]string) float64 {
	total := 0.0
	for _, s := range ss {
		if s.name == name && matches(s.labels, match) {
			total += s.value
		}
	}
	return total
}

// by adds the values of the series named name by the key key builds from their labels
// (an empty key leaves the series out).
func (ss samples) by(name string, key func(map[string]string) string) map[string]float64 {
	out := map[string]float64{}
	for _, s := range ss {
		if s.name != name {
			continue
		}
		if k := key(s.labels); k != "" {
			out[k] += s.value
		}
	}
	return out
}

func matches(labels, match map[string]string) bool {
	for k, v := range match {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// diff is after minus before, key by key, keeping the keys that changed.
func diff(before, after map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// histogram is the cumulative bucket counts of one histogram, by upper bound.
type histogram map[float64]float64

func (ss samples) histogram(name string, match map[string]string) histogram {
	h := histogram{}
	for _, s := range ss {
		if s.name != name+"_bucket" || !matches(s.labels, match) {
			continue
		}
		le, err := strconv.ParseFloat(s.labels["le"], 64)
		if err != nil {
			continue
		}
		h[le] += s.value
	}
	return h
}

// sub is the histogram of the observations made between before and h.
func (h histogram) sub(before histogram) histogram {
	out := histogram{}
	for le, v := range h {
		out[le] = v - before[le]
	}
	return out
}

// quantile interpolates within the bucket the quantile falls in, as Prometheus's
// histogram_quantile does; NaN without observations.
func (h histogram) quantile(q float64) float64 {
	bounds := make([]float64, 0, len(h))
	for le := range h {
		bounds = append(bounds, le)
	}
	sort.Float64s(bounds)
	if len(bounds) == 0 || h[bounds[len(bounds)-1]] == 0 {
		return math.NaN()
	}
	total := h[bounds[len(bounds)-1]]
	rank := q * total
	prevBound, prevCount := 0.0, 0.0
	for _, le := range bounds {
		if h[le] >= rank {
			if math.IsInf(le, 1) {
				return prevBound
			}
			if h[le] == prevCount {
				return le
			}
			return prevBound + (le-prevBound)*(rank-prevCount)/(h[le]-prevCount)
		}
		prevBound, prevCount = le, h[le]
	}
	return prevBound
}

var scrapeClient = &http.Client{Timeout: 10 * time.Second}

// scrape reads a /metrics endpoint, uncompressed: compressing a scrape of thousands of
// Canaries' series costs the manager more CPU than sending it over the loopback.
func scrape(url string) (samples, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := scrapeClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return parseMetrics(resp.Body)
}
