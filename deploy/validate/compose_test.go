package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestComposeStack(t *testing.T) {
	p, err := checkCompose(t.Context(), filepath.Join("..", "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"nats", "worker", "scheduler", "otel-collector", "jaeger", "prometheus"} {
		if _, ok := p.Services[want]; !ok {
			t.Errorf("service %s missing", want)
		}
	}
	nats := p.Services["nats"]
	js := false
	for _, a := range nats.Command {
		if a == "--jetstream" || a == "-js" {
			js = true
		}
	}
	if !js {
		t.Errorf("nats without JetStream: %v", nats.Command)
	}
	w := p.Services["worker"]
	if w.Build == nil || filepath.Base(w.Build.Dockerfile) != "Dockerfile.cpu" {
		t.Errorf("worker not built from Dockerfile.cpu: %+v", w.Build)
	}
	if v := w.Environment["JETINFER_NATS_URL"]; v == nil || *v != "nats://nats:4222" {
		t.Errorf("worker NATS URL %v", v)
	}
}

func TestComposeRejectsInvalid(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(bad, []byte("services:\n  a:\n    image: x\n    restart: sometimes\n    portz: [1]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := checkCompose(t.Context(), bad); err == nil {
		t.Fatal("invalid compose file accepted")
	}
}
