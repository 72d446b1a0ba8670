//go:build unix

package batcher

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time the process has used (user + system).
// Benchmarks report it per op beside ns/op: on a machine shared with
// other jobs it is far less inflated than wall time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
