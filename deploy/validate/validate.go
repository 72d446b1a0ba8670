// Command validate checks the jetinfer Helm chart offline, the way CI does:
// for the chart's default values and every values file in its ci/ folder it
// runs Helm's linter, renders the templates with Helm's engine (what `helm
// lint` and `helm template` do, as a library), and decodes every rendered
// object strictly — unknown or duplicate fields are errors, field names are
// case-sensitive — into the Kubernetes API types (k8s.io/api), KEDA's
// ScaledObject and the Prometheus Operator's ServiceMonitor. It then checks
// the contracts between the objects: selectors that select, the KEDA
// triggers pointing at the scheduler's hint endpoint and the model's
// consumer, a grace period that covers the worker's drain timeout. Last it
// loads deploy/compose.yaml as `docker compose config` would (schema,
// interpolation, files it refers to), and checks that the GPU image's
// runtime stage installs every TensorRT library the tensorrt build links.
// Then it checks the observability
// artifacts: deploy/prometheus/alerts.yaml is parsed and validated with
// Prometheus's own rule and PromQL packages (what `promtool check rules`
// runs), deploy/grafana/jetinfer.json is decoded and every query parsed as
// PromQL, and every metric name either uses must be listed in
// deploy/metrics.txt, the catalogue of what jetinfer exports.
//
// It lives in its own module so that Helm, Kubernetes, KEDA and Prometheus
// stay out of jetinfer's go.mod. Usage:
//
//	cd deploy/validate && go run . [chart-dir]   # default ../helm/jetinfer
//	cd deploy/validate && go test ./...          # the same, as tests
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

func main() {
	dir := filepath.Join("..", "helm", "jetinfer")
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	sets, err := valueSets(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "validate:", err)
		os.Exit(1)
	}
	failed := 0
	names := make([]string, 0, len(sets))
	for n := range sets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		objs, err := checkChart(dir, sets[name])
		if err != nil {
			failed++
			fmt.Printf("FAIL %s: %v\n", name, err)
			continue
		}
		fmt.Printf("ok   %s: lint clean, %d objects decoded strictly, cross-checks passed\n", name, len(objs))
	}
	total := len(sets) + 1
	if _, err := checkCompose(context.Background(), filepath.Join(filepath.Dir(filepath.Dir(dir)), "compose.yaml")); err != nil {
		failed++
		fmt.Printf("FAIL compose.yaml: %v\n", err)
	} else {
		fmt.Println("ok   compose.yaml: schema-valid, files it refers to exist")
	}
	deployDir := filepath.Dir(filepath.Dir(dir))
	total++
	if pkgs, err := checkGPUImage(filepath.Join(deployDir, "..", "trt", "tensorrt", "cgo.go"), filepath.Join(deployDir, "Dockerfile.gpu")); err != nil {
		failed++
		fmt.Printf("FAIL Dockerfile.gpu: %v\n", err)
	} else {
		fmt.Printf("ok   Dockerfile.gpu: the runtime stage installs and holds %s\n", strings.Join(pkgs, ", "))
	}
	total++
	if err := checkObservability(deployDir); err != nil {
		failed++
		fmt.Printf("FAIL %v\n", err)
	}
	fmt.Printf("%d passed, %d failed\n", total-failed, failed)
	if failed > 0 {
		os.Exit(1)
	}
}

// checkObservability checks deploy/prometheus/alerts.yaml and
// deploy/grafana/jetinfer.json against deploy/metrics.txt and prints a line
// for each that passes.
func checkObservability(deployDir string) error {
	cat, err := readMetricCatalog(filepath.Join(deployDir, "metrics.txt"))
	if err != nil {
		return err
	}
	n, err := checkRules(filepath.Join(deployDir, "prometheus", "alerts.yaml"), cat)
	if err != nil {
		return err
	}
	fmt.Printf("ok   prometheus/alerts.yaml: %d rules valid, metric names exported\n", n)
	if n, err = checkDashboard(filepath.Join(deployDir, "grafana", "jetinfer.json"), cat); err != nil {
		return err
	}
	fmt.Printf("ok   grafana/jetinfer.json: %d queries parse, metric names exported\n", n)
	return nil
}
