// Package models is jetinfer's model repository on JetStream: the
// artifacts of every model version (ONNX model, TensorRT plans with their
// manifests, reference inputs/outputs as Arrow IPC) in a NATS Object Store
// bucket, and the metadata of every version plus the active version of
// every model in a KV bucket.
//
// It owns the repository layout (bucket names default to
// wire.DefaultModelBucket and wire.DefaultArtifactBucket; keys and object
// names are described in docs/models.md), pushing versions with the
// SHA-256 of every artifact, promoting and rolling back the active
// version, aliases such as "stable" and "canary", refusing to remove the
// active or an aliased version, a content-addressed
// on-disk cache per node in which every entry is verified against its
// recorded digest before use and which is bounded by evicting the least
// recently used entries that no open engine pins (cache.go), and the per-node choice of artifact
// (Repository.Resolve): the best TensorRT plan whose manifest fits this
// node's GPU and TensorRT version (the rules are trt.Manifest's), else the
// ONNX model, with the reason each other artifact was skipped.
//
// It also runs the accuracy gate (CheckAccuracy): a version's reference
// inputs on a given engine, compared with its reference outputs within a
// Tolerance; and it watches the active version (WatchActive). It does
// not open engines or swap them in a running worker: the worker does
// (package worker, swap.go).
package models
