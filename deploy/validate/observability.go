package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// metricCatalog is deploy/metrics.txt: the series names jetinfer exports,
// by name, with their type.
type metricCatalog map[string]string

// readMetricCatalog reads the catalog: one "name type source" per line,
// '#' comments and blank lines ignored.
func readMetricCatalog(path string) (metricCatalog, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading the metric catalog: %w", err)
	}
	defer f.Close()
	cat := metricCatalog{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 3 || !slices.Contains([]string{"counter", "gauge", "histogram"}, fields[1]) {
			return nil, fmt.Errorf("%s:%d: want `name counter|gauge|histogram source`, got %q", path, line, text)
		}
		if !model.LegacyValidation.IsValidMetricName(fields[0]) {
			return nil, fmt.Errorf("%s:%d: %q is not a valid metric name", path, line, fields[0])
		}
		if _, dup := cat[fields[0]]; dup {
			return nil, fmt.Errorf("%s:%d: %s listed twice", path, line, fields[0])
		}
		cat[fields[0]] = fields[1]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(cat) == 0 {
		return nil, fmt.Errorf("%s lists no metrics", path)
	}
	return cat, nil
}

// has reports whether a query may select series: a listed name, or a
// listed histogram's _bucket, _sum or _count series.
func (c metricCatalog) has(series string) bool {
	if t, ok := c[series]; ok && t != "histogram" {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(series, suffix); ok && c[base] == "histogram" {
			return true
		}
	}
	return false
}

// promQL parses as Prometheus does by default.
var promQL = parser.NewParser(parser.Options{})

// metricNames parses a PromQL expression and returns the metric name of
// every selector in it. A selector without a literal name is an error: it
// cannot be checked.
func metricNames(expr string) ([]string, error) {
	e, err := promQL.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	var errs []error
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if name == "" && m.Name == labels.MetricName && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
		if name == "" {
			errs = append(errs, fmt.Errorf("selector %s has no literal metric name", vs))
			return nil
		}
		names = append(names, name)
		return nil
	})
	return names, errors.Join(errs...)
}

// checkNames checks that every selector of expr uses a catalogued name.
func (c metricCatalog) checkNames(expr string) error {
	names, err := metricNames(expr)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		if !c.has(n) {
			errs = append(errs, fmt.Errorf("metric %s is not exported by jetinfer (deploy/metrics.txt)", n))
		}
	}
	return errors.Join(errs...)
}

// checkRules validates a Prometheus rule file as `promtool check rules`
// does (strict YAML, PromQL, label names, annotation templates) and checks
// every expression's metric names against cat. It returns the number of
// rules.
func checkRules(path string, cat metricCatalog) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading rules: %w", err)
	}
	groups, errs := rulefmt.Parse(b, false, model.LegacyValidation, promQL, slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		return 0, fmt.Errorf("%s: %w", path, errors.Join(errs...))
	}
	n := 0
	seen := map[string]bool{}
	for _, g := range groups.Groups {
		if len(g.Rules) == 0 {
			errs = append(errs, fmt.Errorf("group %s has no rules", g.Name))
		}
		for _, r := range g.Rules {
			n++
			name := r.Alert + r.Record
			if r.Alert != "" && seen[r.Alert] {
				errs = append(errs, fmt.Errorf("alert %s defined twice", r.Alert))
			}
			seen[r.Alert] = true
			if err := cat.checkNames(r.Expr); err != nil {
				errs = append(errs, fmt.Errorf("group %s, rule %s: %w", g.Name, name, err))
			}
			if r.Alert != "" && (r.Labels["severity"] == "" || r.Annotations["summary"] == "") {
				errs = append(errs, fmt.Errorf("group %s, alert %s: needs a severity label and a summary annotation", g.Name, r.Alert))
			}
		}
	}
	if n == 0 {
		errs = append(errs, errors.New("no rules"))
	}
	if err := errors.Join(errs...); err != nil {
		return n, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

// grafanaDashboard holds the parts of a Grafana dashboard model that are
// checked.
type grafanaDashboard struct {
	Title         string         `json:"title"`
	UID           string         `json:"uid"`
	SchemaVersion int            `json:"schemaVersion"`
	Panels        []grafanaPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

type grafanaPanel struct {
	ID      int            `json:"id"`
	Type    string         `json:"type"`
	Title   string         `json:"title"`
	Panels  []grafanaPanel `json:"panels"` // a collapsed row's panels
	GridPos *struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

var (
	// grafanaIntervals are Grafana's built-in interval variables; a
	// duration stands in for them so that the query parses.
	grafanaIntervals = regexp.MustCompile(`\$\{?__(rate_interval|interval|range)(_ms|_s)?\}?`)
	labelValues      = regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)$`)
)

// checkDashboard decodes a Grafana dashboard, parses every panel query as
// PromQL (Grafana's interval variables replaced by a duration; other
// variables may appear only inside label matcher strings) and checks the
// metric names against cat, as well as the template variables' label_values
// queries. It returns the number of queries checked.
func checkDashboard(path string, cat metricCatalog) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading dashboard: %w", err)
	}
	var d grafanaDashboard
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&d); err != nil {
		return 0, fmt.Errorf("%s: decoding: %w", path, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return 0, fmt.Errorf("%s: data after the dashboard object", path)
	}
	var errs []error
	if d.Title == "" || d.UID == "" || d.SchemaVersion == 0 {
		errs = append(errs, errors.New("dashboard needs a title, a uid and a schemaVersion"))
	}
	n := 0
	ids := map[int]bool{}
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			if ids[p.ID] || p.ID == 0 {
				errs = append(errs, fmt.Errorf("panel %q: id %d missing or repeated", p.Title, p.ID))
			}
			ids[p.ID] = true
			if p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
				errs = append(errs, fmt.Errorf("panel %q: gridPos missing or wider than the 24-column grid", p.Title))
			}
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if len(p.Targets) == 0 {
				errs = append(errs, fmt.Errorf("panel %q has no queries", p.Title))
			}
			refs := map[string]bool{}
			for _, t := range p.Targets {
				n++
				if refs[t.RefID] {
					errs = append(errs, fmt.Errorf("panel %q: refId %s repeated", p.Title, t.RefID))
				}
				refs[t.RefID] = true
				expr := grafanaIntervals.ReplaceAllString(t.Expr, "5m")
				if err := cat.checkNames(expr); err != nil {
					errs = append(errs, fmt.Errorf("panel %q, query %s: %w", p.Title, t.RefID, err))
				}
			}
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		n++
		q := v.Definition
		var obj struct {
			Query string `json:"query"`
		}
		if json.Unmarshal(v.Query, &obj) == nil && obj.Query != "" {
			q = obj.Query
		} else if s := ""; json.Unmarshal(v.Query, &s) == nil && s != "" {
			q = s
		}
		m := labelValues.FindStringSubmatch(strings.TrimSpace(q))
		switch {
		case m == nil:
			errs = append(errs, fmt.Errorf("variable %s: query %q is not label_values(metric, label)", v.Name, q))
		case !cat.has(m[1]):
			errs = append(errs, fmt.Errorf("variable %s: metric %s is not exported by jetinfer (deploy/metrics.txt)", v.Name, m[1]))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return n, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}
