package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
)

var chartDir = filepath.Join("..", "helm", "jetinfer")

// TestChart lints, renders and strictly decodes the chart for its defaults
// and every ci/*-values.yaml, then cross-checks the objects.
func TestChart(t *testing.T) {
	sets, err := valueSets(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(sets) < 2 {
		t.Fatalf("only %d value sets: ci/*-values.yaml missing", len(sets))
	}
	for name, vals := range sets {
		t.Run(name, func(t *testing.T) {
			objs, err := checkChart(chartDir, vals)
			if err != nil {
				t.Fatal(err)
			}
			kinds := map[string]int{}
			for _, o := range objs {
				kinds[o.kind]++
			}
			if kinds["apps/v1/Deployment"] < 1 {
				t.Fatalf("no Deployment rendered: %v", kinds)
			}
			t.Logf("%d objects: %v", len(objs), kinds)
		})
	}
}

// TestDefaultsWireKEDAToScheduler pins what the default install must
// contain: a GPU worker pool at zero, its ScaledObject on the scheduler's
// hint plus the activation trigger, and the drain contract.
func TestDefaultsWireKEDAToScheduler(t *testing.T) {
	objs, err := checkChart(chartDir, map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	var worker *appsv1.Deployment
	var so *kedav1alpha1.ScaledObject
	for _, o := range objs {
		switch v := o.obj.(type) {
		case *appsv1.Deployment:
			if v.Spec.Template.Labels["app.kubernetes.io/component"] == "worker" {
				worker = v
			}
		case *kedav1alpha1.ScaledObject:
			so = v
		}
	}
	if worker == nil || so == nil {
		t.Fatal("worker Deployment or ScaledObject missing")
	}
	c := worker.Spec.Template.Spec.Containers[0]
	if q, ok := c.Resources.Limits["nvidia.com/gpu"]; !ok || q.Value() != 1 {
		t.Fatalf("GPU limit: %v", c.Resources.Limits)
	}
	if *worker.Spec.Template.Spec.TerminationGracePeriodSeconds != 75 {
		t.Fatalf("grace %d; want drain 60 + 15", *worker.Spec.Template.Spec.TerminationGracePeriodSeconds)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Exec == nil ||
		!slices.Equal(c.Lifecycle.PreStop.Exec.Command, []string{"/usr/local/bin/jetinfer", "drain", "-addr", "127.0.0.1:9464"}) {
		t.Fatalf("no preStop drain hook running `jetinfer drain` against the worker port: %+v", c.Lifecycle)
	}
	if so.Spec.MinReplicaCount == nil || *so.Spec.MinReplicaCount != 0 {
		t.Fatal("default pool does not scale to zero")
	}
	types := []string{}
	for _, tr := range so.Spec.Triggers {
		types = append(types, tr.Type)
	}
	if strings.Join(types, ",") != "metrics-api,nats-jetstream" {
		t.Fatalf("triggers %v", types)
	}
	want := "http://demo-jetinfer-scheduler.inference.svc.cluster.local:8080/v1/models/digits/hint"
	if got := so.Spec.Triggers[0].Metadata["url"]; got != want {
		t.Fatalf("hint url %q; want %q", got, want)
	}
}

// TestRepositoryPool pins what modelSource: repository renders: the
// worker's source, a writable artifact cache on an emptyDir (the root
// filesystem is read-only), and the pool's settings, an alias for a model
// that follows one; a model overriding it back to file gets none of it.
func TestRepositoryPool(t *testing.T) {
	vals, err := valueSets(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := checkChart(chartDir, vals["repository-values.yaml"])
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, o := range objs {
		d, ok := o.obj.(*appsv1.Deployment)
		if !ok || d.Spec.Template.Labels["app.kubernetes.io/component"] != "worker" {
			continue
		}
		found++
		c := d.Spec.Template.Spec.Containers[0]
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		mounted := slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
			return m.Name == "artifact-cache" && m.MountPath == env["JETINFER_MODEL_CACHE_DIR"]
		})
		switch model := env["JETINFER_MODEL"]; model {
		case "digits":
			if env["JETINFER_MODEL_SOURCE"] != "repository" || env["JETINFER_MODEL_CACHE_DIR"] == "" || !mounted ||
				env["JETINFER_PINNED_WAIT"] != "1m" || env["JETINFER_GATE_RTOL"] != "0.02" || env["JETINFER_MODEL_CACHE_BYTES"] != "1536MiB" {
				t.Fatalf("digits worker: env %v, cache mounted %v", env, mounted)
			}
			if _, ok := env["JETINFER_MODEL_ALIAS"]; ok {
				t.Fatalf("digits worker follows an alias: %v", env)
			}
			vol := slices.IndexFunc(d.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == "artifact-cache" })
			if vol < 0 || d.Spec.Template.Spec.Volumes[vol].EmptyDir == nil || d.Spec.Template.Spec.Volumes[vol].EmptyDir.SizeLimit.String() != "2Gi" {
				t.Fatalf("artifact cache volume: %+v", d.Spec.Template.Spec.Volumes)
			}
		case "tagger":
			if env["JETINFER_MODEL_SOURCE"] != "repository" || env["JETINFER_MODEL_ALIAS"] != "stable" || !mounted {
				t.Fatalf("tagger worker: env %v, cache mounted %v; want the repository, following alias stable", env, mounted)
			}
		case "legacy":
			if _, ok := env["JETINFER_MODEL_SOURCE"]; ok || mounted {
				t.Fatalf("file-serving worker has repository settings: %v", env)
			}
		default:
			t.Fatalf("worker for unknown model %q", model)
		}
	}
	if found != 3 {
		t.Fatalf("%d worker Deployments, want 3", found)
	}
}

// TestStrictDecodingRejects proves the decoder is strict: each mutation of a
// valid manifest must fail.
func TestStrictDecodingRejects(t *testing.T) {
	valid := `apiVersion: apps/v1
kind: Deployment
metadata:
  name: x
spec:
  selector:
    matchLabels: {a: b}
  template:
    metadata:
      labels: {a: b}
    spec:
      containers:
        - name: c
          image: i
`
	if _, err := decodeStrict([]byte(valid)); err != nil {
		t.Fatalf("valid manifest rejected: %v", err)
	}
	bad := map[string]string{
		"unknown field":        strings.Replace(valid, "  selector:", "  replicaz: 3\n  selector:", 1),
		"wrong case":           strings.Replace(valid, "  selector:", "  Selector:", 1),
		"duplicate key":        strings.Replace(valid, "  name: x\n", "  name: x\n  name: y\n", 1),
		"wrong type":           strings.Replace(valid, "  selector:", "  replicas: three\n  selector:", 1),
		"unknown kind":         strings.Replace(valid, "kind: Deployment", "kind: Deploymnet", 1),
		"field at wrong level": strings.Replace(valid, "          image: i", "          image: i\n          replicas: 1", 1),
	}
	for name, doc := range bad {
		if _, err := decodeStrict([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	so := `apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: s
spec:
  scaleTargetRef:
    name: x
  triggers:
    - type: metrics-api
      metadata: {url: "http://a/b"}
      metricType: AverageValue
      activationThreshold: "1"
`
	if _, err := decodeStrict([]byte(so)); err == nil {
		t.Error("ScaledObject with unknown trigger field accepted")
	}
}

// TestRenderRejectsBadValues checks the chart's own guards.
func TestRenderRejectsBadValues(t *testing.T) {
	cases := map[string]map[string]any{
		"model name with a dot":  {"models": []any{map[string]any{"name": "a.b", "minReplicas": 0, "maxReplicas": 1}}},
		"max below min":          {"models": []any{map[string]any{"name": "a", "minReplicas": 3, "maxReplicas": 2}}},
		"keda without scheduler": {"scheduler": map[string]any{"enabled": false}},
		"unknown model source":   {"worker": map[string]any{"modelSource": "s3"}},
		"alias on a file pool":   {"models": []any{map[string]any{"name": "a", "minReplicas": 0, "maxReplicas": 1, "modelAlias": "canary"}}},
		"alias not a name": {"worker": map[string]any{"modelSource": "repository"},
			"models": []any{map[string]any{"name": "a", "minReplicas": 0, "maxReplicas": 1, "modelAlias": "Canary!"}}},
	}
	for name, vals := range cases {
		if _, err := renderChart(chartDir, vals); err == nil {
			t.Errorf("%s: rendered", name)
		}
	}
}
