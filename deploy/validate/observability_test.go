package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var (
	catalogPath   = filepath.Join("..", "metrics.txt")
	alertsPath    = filepath.Join("..", "prometheus", "alerts.yaml")
	dashboardPath = filepath.Join("..", "grafana", "jetinfer.json")
)

// TestAlertsAndDashboard checks the shipped rules and dashboard: the rules
// as promtool would, every query's metric names against deploy/metrics.txt.
func TestAlertsAndDashboard(t *testing.T) {
	cat, err := readMetricCatalog(catalogPath)
	if err != nil {
		t.Fatal(err)
	}
	n, err := checkRules(alertsPath, cat)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d rules", alertsPath, n)
	if n, err = checkDashboard(dashboardPath, cat); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d queries", dashboardPath, n)
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestObservabilityChecksCatchMistakes feeds the checks broken rules and
// dashboards and expects each mistake to be named.
func TestObservabilityChecksCatchMistakes(t *testing.T) {
	cat := metricCatalog{"jetinfer_rows_total": "counter", "jetinfer_queue_duration_seconds": "histogram"}
	rule := func(expr string) string {
		return "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: " + expr +
			"\n        labels: {severity: warning}\n        annotations: {summary: s}\n"
	}
	for _, c := range []struct{ name, rules, want string }{
		{"unknown metric", rule("rate(jetinfer_rowz_total[5m]) > 0"), "jetinfer_rowz_total is not exported"},
		{"histogram base name is not a series", rule("jetinfer_queue_duration_seconds > 0"), "jetinfer_queue_duration_seconds is not exported"},
		{"bad PromQL", rule("rate(jetinfer_rows_total[5m] > 0"), "unclosed"},
		{"no metric name", rule(`'{job="x"} > 0'`), "no literal metric name"},
		{"unknown field", "groups:\n  - name: g\n    rulez: []\n", "rulez"},
		{"bad template", strings.Replace(rule("jetinfer_rows_total > 0"), "summary: s", `summary: "{{ $labels.model "`, 1), "summary"},
		{"no severity", strings.Replace(rule("jetinfer_rows_total > 0"), "severity: warning", "team: x", 1), "severity"},
	} {
		t.Run("rules/"+c.name, func(t *testing.T) {
			_, err := checkRules(writeFile(t, "r.yaml", c.rules), cat)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("checkRules = %v, want an error containing %q", err, c.want)
			}
		})
	}
	if _, err := checkRules(writeFile(t, "r.yaml", rule(`histogram_quantile(0.99, sum by (le) (rate(jetinfer_queue_duration_seconds_bucket[5m]))) > 1`)), cat); err != nil {
		t.Errorf("a good rule: %v", err)
	}

	dash := func(expr, variable string) string {
		return `{"title":"t","uid":"u","schemaVersion":39,
		"templating":{"list":[{"name":"model","type":"query","query":{"query":"` + variable + `"}}]},
		"panels":[{"id":1,"type":"timeseries","title":"p","gridPos":{"h":8,"w":12,"x":0,"y":0},
		"targets":[{"refId":"A","expr":"` + expr + `"}]}]}`
	}
	good := `sum(rate(jetinfer_rows_total{model=~\"$model\"}[$__rate_interval]))`
	if n, err := checkDashboard(writeFile(t, "d.json", dash(good, "label_values(jetinfer_rows_total, model)")), cat); err != nil || n != 2 {
		t.Errorf("a good dashboard: %d queries, %v", n, err)
	}
	for _, c := range []struct{ name, dash, want string }{
		{"unknown metric", dash(`rate(jetinfer_rowz_total[$__rate_interval])`, "label_values(jetinfer_rows_total, model)"), "jetinfer_rowz_total"},
		{"unknown variable metric", dash(good, "label_values(jetinfer_rowz_total, model)"), "variable model"},
		{"bad PromQL", dash(`sum(rate(jetinfer_rows_total[5m])`, "label_values(jetinfer_rows_total, model)"), "panel"},
		{"not JSON", `{"title": `, "decoding"},
	} {
		t.Run("dashboard/"+c.name, func(t *testing.T) {
			_, err := checkDashboard(writeFile(t, "d.json", c.dash), cat)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("checkDashboard = %v, want an error containing %q", err, c.want)
			}
		})
	}
}
