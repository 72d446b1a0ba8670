// Package backend opens the execution backend a worker runs: a TensorRT
// plan when one is configured and its manifest fits this node, otherwise
// ONNX Runtime on the CPU, and says which it chose and why.
//
// It is the selection the jetinfer binary uses, exported so that a
// program embedding the worker gets the same behaviour from the same
// configuration: Config's fields carry the env tags the binary reads
// (with the JETINFER_ prefix), so caarlos0/env fills it as the binary
// does.
package backend
