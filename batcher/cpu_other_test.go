//go:build !unix

package batcher

import "time"

// processCPU is not read on this platform.
func processCPU() time.Duration { return 0 }
