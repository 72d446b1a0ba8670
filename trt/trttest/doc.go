// Package trttest is the conformance suite that every trt.Engine backend
// runs, in the manner of go-cloud's drivertest: a backend's test calls Run
// with a function that opens its engine for a named test model, and the
// suite checks the Spec, reproduces PyTorch reference outputs at several
// batch sizes (zero-padding dynamic dimensions and batch rows the way the
// batcher does), compares caller-provided with engine-allocated outputs,
// checks that bad batches fail with trt.ErrInvalidInput, and runs batches
// from several goroutines at once.
//
// The test models and their references live in the repository's testdata
// directory (made by scripts/gen_models.py; see testdata/README.md):
//
//	digits        models/digits.onnx        digits_test.arrow + digits_ref.arrow
//	digits_fp16   models/digits_fp16.onnx   digits_fp16_ref.arrow
//	seq_encoder   models/seq_encoder.onnx   seq_ref.arrow
//
// Load* read the references from the Arrow IPC streams; a backend maps the
// model name to its own artifact (an ONNX file, a TensorRT plan built from
// it). The package is for tests: it imports testing, and its helpers
// allocate freely. Everything it returns is owned by the caller.
package trttest
