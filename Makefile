# jetinfer development targets. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

ORT_VERSION ?= 1.30.0
# Where trt/onnxrt.FindLibrary looks (os.UserCacheDir), so that bin/jetinfer
# finds the library without JETINFER_ORT_LIBRARY.
ORT_DIR     ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/jetinfer/onnxruntime-$(ORT_VERSION)
export JETINFER_ORT_LIBRARY ?= $(ORT_DIR)/lib/libonnxruntime.so.1
GO          ?= go
# go-nvml (trt/gpuinfo) calls NVML functions that the nvml.h it bundles marks
# deprecated, so a cold build prints ~30 -Wdeprecated-declarations warnings
# about that header. cgo has no per-package C flags, so the build-wide
# CGO_CFLAGS (Go's default -O2 -g, plus the switch) is how go-nvml's users
# quiet them; a CGO_CFLAGS of your own takes precedence.
export CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations
# An execution count, not a duration: Go 1.26's fuzz coordinator can fail a
# duration-bounded run with a bare "context deadline exceeded" and no
# crasher (golang/go#75804, fixed in Go 1.27).
FUZZTIME    ?= 200000x
BENCHTIME   ?= 1s

.PHONY: help
help: ## list targets
	@grep -hE '^[a-z][a-z0-9-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: ort
ort: $(JETINFER_ORT_LIBRARY) ## fetch the ONNX Runtime CPU library (npm package onnxruntime-node), cached
$(JETINFER_ORT_LIBRARY):
	bash scripts/install-onnxruntime.sh $(ORT_DIR)

bin/jetinfer: $(shell find . -name '*.go' -not -path './deploy/*') go.mod go.sum
	$(GO) build -o bin/jetinfer ./cmd/jetinfer

.PHONY: build
build: bin/jetinfer ## build bin/jetinfer (ONNX Runtime backend; TensorRT needs -tags tensorrt)

.PHONY: demo
demo: ort bin/jetinfer ## embedded JetStream + ONNX Runtime: score the digits test split
	./bin/jetinfer demo

.PHONY: test
test: ort lint test-nocgo ## vet, gofmt, race tests, CGO_ENABLED=0 build, fuzz smoke
	$(GO) test -race -count=1 ./...
	$(MAKE) fuzz-smoke

.PHONY: test-nocgo
test-nocgo: ## the module builds without cgo (backends report ErrUnavailable)
	CGO_ENABLED=0 $(GO) build ./...

.PHONY: lint
lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

.PHONY: fuzz-smoke
fuzz-smoke: ## run each decoder fuzzer briefly (FUZZTIME=200000x executions)
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeRequest$$' -fuzztime=$(FUZZTIME) ./codec
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeResult$$' -fuzztime=$(FUZZTIME) ./codec
	$(GO) test -run='^$$' -fuzz='^FuzzRepLevels$$' -fuzztime=$(FUZZTIME) ./codec/table

.PHONY: bench
bench: ort ## codec, engine and worker-overhead benchmarks
	$(GO) test -run='^$$' -bench=. -benchmem -benchtime=$(BENCHTIME) ./codec ./trt/onnxrt ./worker

.PHONY: bench-scaler
bench-scaler: ## autoscaling simulation: jetinfer policy vs tuned KEDA lag scaler (same HPA) vs a fixed pool, three traces
	$(GO) run ./cmd/scalersim

.PHONY: deploy-check
deploy-check: ## helm lint + template, strict decoding, compose, alert rules + dashboard vs deploy/metrics.txt (offline)
	cd deploy/validate && $(GO) test -count=1 ./...

TRT_HEADERS ?=
.PHONY: check-tensorrt
check-tensorrt: ## compile the TensorRT shim against real header sets: TRT_HEADERS="dir ..."
	bash scripts/check-tensorrt.sh $(TRT_HEADERS)

.PHONY: bench-batcher
BATCHSIM_FLAGS ?=
bench-batcher: ort ## simulate the shape-aware batcher vs client-bucketed Triton peers (BATCHSIM_FLAGS="-model testdata/models/tagger.onnx -seq-min 1 -seq-max 128" for the transformer)
	$(GO) run ./cmd/batchsim $(BATCHSIM_FLAGS)

.PHONY: reliability
reliability: ort ## fault, load and bad-input scenarios against real workers; rewrites docs/reliability.md
	$(GO) run ./cmd/reliability

.PHONY: bench-ceiling
bench-ceiling: ort ## jetinfer's requests/s against JetStream's ceiling for its message pattern, same run
	$(GO) run ./cmd/ceiling

SCORE_ROWS ?= 2000000
# N: score on N CPUs (whole cores, from the end), server and worker on the rest;
# on 2 CPUs, 1 puts them on CPU 0 and score on CPU 1 (see TestBenchScore)
SCORE_SPLIT_CPUS ?=
.PHONY: bench-score
bench-score: ort ## offline scoring: a SCORE_ROWS-row Parquet file through `score` (interrupted once, resumed) vs the worker alone
	@set -o pipefail; $(GO) test -c -o bin/jetinfer.test ./cmd/jetinfer && \
	cd cmd/jetinfer && JETINFER_BENCH_SCORE_ROWS=$(SCORE_ROWS) JETINFER_BENCH_SCORE_SPLIT_CPUS=$(SCORE_SPLIT_CPUS) ../../bin/jetinfer.test -test.run '^TestBenchScore$$' -test.count=1 -test.timeout=30m | grep -v '^PASS$$'
