package main

import (
	"github.com/jetinfer/jetinfer/worker/traffic"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// Stream and subject names: the worker's defaults. Traffic generation and
// the exactly-once audit are package worker/traffic, shared with the
// worker's tests.
const (
	model     = "digits"
	reqStream = wire.DefaultRequestStream
)

// target is where every scenario's traffic goes.
var target = traffic.Target{Model: model}

// rng returns a deterministic generator for a scenario.
var rng = traffic.Rand
