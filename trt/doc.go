// Package trt is jetinfer's execution layer vocabulary: element types,
// shapes, tensor descriptions, optimization profiles and the Engine
// interface that every backend implements.
//
// Backends live in subpackages: trt/onnxrt runs ONNX models on ONNX Runtime
// (CPU nodes, laptops, CI); trt/tensorrt runs serialized TensorRT plans
// through a cgo shim behind the "tensorrt" build tag; trt/testengine is a
// pure-Go stand-in for tests of the pipeline, not a backend. This package itself
// imports nothing of jetinfer's and does no I/O, so codec and batcher may
// depend on its types.
//
// Tensor data is always raw little-endian bytes in row-major order: float16
// and bfloat16 values travel as their bit patterns and are never converted.
package trt
