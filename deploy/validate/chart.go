package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
)

// Release settings used for rendering.
const (
	releaseName = "demo"
	namespace   = "inference"
	kubeVersion = "v1.33.0"
)

// object is one rendered manifest decoded into its API type.
type object struct {
	source string // template file
	kind   string // apiVersion/kind
	name   string
	obj    any
}

// valueSets returns the values to test the chart with: its defaults
// ("default") and each ci/*-values.yaml.
func valueSets(chartDir string) (map[string]map[string]any, error) {
	sets := map[string]map[string]any{"default": {}}
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		v, err := chartutil.ReadValuesFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", f, err)
		}
		sets[filepath.Base(f)] = v.AsMap()
	}
	return sets, nil
}

// checkChart lints, renders, strictly decodes and cross-checks the chart
// with the given user values.
func checkChart(chartDir string, values map[string]any) ([]object, error) {
	if err := lintChart(chartDir, values); err != nil {
		return nil, err
	}
	files, err := renderChart(chartDir, values)
	if err != nil {
		return nil, err
	}
	objs, err := decodeAll(files)
	if err != nil {
		return nil, err
	}
	if err := crossCheck(objs); err != nil {
		return objs, err
	}
	return objs, nil
}

// lintChart runs Helm's linter (`helm lint`); warnings and errors fail.
func lintChart(chartDir string, values map[string]any) error {
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		return err
	}
	l := lint.AllWithKubeVersion(chartDir, values, namespace, kv)
	var errs []error
	for _, m := range l.Messages {
		if m.Severity >= support.WarningSev {
			errs = append(errs, fmt.Errorf("helm lint: %s", m.Error()))
		}
	}
	return errors.Join(errs...)
}

// renderChart renders every template (`helm template`), hooks included,
// and returns the non-empty manifests by template path.
func renderChart(chartDir string, values map[string]any) (map[string]string, error) {
	chrt, err := loader.Load(chartDir)
	if err != nil {
		return nil, fmt.Errorf("loading chart: %w", err)
	}
	caps := chartutil.DefaultCapabilities.Copy()
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		return nil, err
	}
	caps.KubeVersion = *kv
	caps.APIVersions = append(caps.APIVersions, "keda.sh/v1alpha1", "keda.sh/v1alpha1/ScaledObject",
		"monitoring.coreos.com/v1", "monitoring.coreos.com/v1/ServiceMonitor")
	vals, err := chartutil.ToRenderValues(chrt, values,
		chartutil.ReleaseOptions{Name: releaseName, Namespace: namespace, Revision: 1, IsInstall: true}, caps)
	if err != nil {
		return nil, fmt.Errorf("computing values: %w", err)
	}
	out, err := engine.Render(chrt, vals)
	if err != nil {
		return nil, fmt.Errorf("rendering: %w", err)
	}
	files := map[string]string{}
	for name, body := range out {
		base := filepath.Base(name)
		if strings.HasPrefix(base, "_") || strings.HasSuffix(base, ".txt") || strings.TrimSpace(body) == "" {
			continue
		}
		files[name] = body
	}
	return files, nil
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// decodeAll splits every manifest into documents and decodes each strictly.
func decodeAll(files map[string]string) ([]object, error) {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var objs []object
	var errs []error
	for _, n := range names {
		for i, doc := range docSep.Split(files[n], -1) {
			if isBlankYAML(doc) {
				continue
			}
			o, err := decodeStrict([]byte(doc))
			if err != nil {
				errs = append(errs, fmt.Errorf("%s (document %d): %w", n, i, err))
				continue
			}
			o.source = n
			objs = append(objs, o)
		}
	}
	if len(objs) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("chart rendered no objects"))
	}
	return objs, errors.Join(errs...)
}

func isBlankYAML(doc string) bool {
	for line := range strings.SplitSeq(doc, "\n") {
		t := strings.TrimSpace(line)
		if t != "" && !strings.HasPrefix(t, "#") {
			return false
		}
	}
	return true
}

// newTyped returns a pointer to the Go type for apiVersion/kind.
func newTyped(apiVersion, kind string) (any, error) {
	switch apiVersion + "/" + kind {
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "v1/Service":
		return &corev1.Service{}, nil
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, nil
	case "batch/v1/Job":
		return &batchv1.Job{}, nil
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "keda.sh/v1alpha1/ScaledObject":
		return &kedav1alpha1.ScaledObject{}, nil
	case "monitoring.coreos.com/v1/ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}, nil
	}
	return nil, fmt.Errorf("no API type registered for %s/%s", apiVersion, kind)
}

// decodeStrict converts one YAML document to JSON (duplicate keys are an
// error) and unmarshals it into its API type with the API server's strict
// rules: unknown fields, duplicate fields and case-mismatched names fail.
func decodeStrict(doc []byte) (object, error) {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return object{}, fmt.Errorf("converting YAML: %w", err)
	}
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(js, &meta); err != nil {
		return object{}, fmt.Errorf("reading type meta: %w", err)
	}
	target, err := newTyped(meta.APIVersion, meta.Kind)
	if err != nil {
		return object{}, err
	}
	strictErrs, err := sigsjson.UnmarshalStrict(js, target)
	if err != nil {
		return object{}, fmt.Errorf("decoding %s %q: %w", meta.Kind, meta.Metadata.Name, err)
	}
	if len(strictErrs) > 0 {
		return object{}, fmt.Errorf("decoding %s %q strictly: %w", meta.Kind, meta.Metadata.Name, errors.Join(strictErrs...))
	}
	if meta.Metadata.Name == "" {
		return object{}, fmt.Errorf("%s without metadata.name", meta.Kind)
	}
	return object{kind: meta.APIVersion + "/" + meta.Kind, name: meta.Metadata.Name, obj: target}, nil
}
