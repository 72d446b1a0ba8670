//go:build !cgo

package gpuinfo

import (
	"fmt"

	"github.com/jetinfer/jetinfer/trt"
)

var errNoCgo = fmt.Errorf("reading GPUs through NVML needs a cgo build: %w (%w)", ErrNoGPU, trt.ErrUnavailable)

// NVML is an initialized NVML session; none can exist without cgo.
type NVML struct{}

// Open fails: NVML needs cgo.
func Open(libraryPath string) (*NVML, error) { return nil, errNoCgo }

// Close does nothing.
func (n *NVML) Close() error { return nil }

// Info fails: NVML needs cgo.
func (n *NVML) Info() (Info, error) { return Info{}, errNoCgo }

// Usage fails: NVML needs cgo.
func (n *NVML) Usage(i int) (Usage, error) { return Usage{}, errNoCgo }

// Probe fails: NVML needs cgo.
func Probe() (Info, error) { return Info{}, errNoCgo }
