//go:build !linux

package batchsim

import "time"

var wallStart = time.Now()

// threadCPU falls back to wall time where the thread's CPU clock is not
// read.
func threadCPU() time.Duration { return time.Since(wallStart) }
