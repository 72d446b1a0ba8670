package tensorrt

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/jetinfer/jetinfer/trt"
)

// BuiltOn identifies the machine a plan was built on.
type BuiltOn struct {
	GPU    trt.Device // the CUDA device the plan was built on (UUID included)
	MIG    string     // its MIG profile, "" for a whole GPU
	Driver string     // NVIDIA driver version, "" if unknown
}

// NewManifest describes a plan that Build produced: res and o are Build's
// result and options, spec is the plan's Spec (from Inspect), onnx the
// source model (nil if unknown), on the machine it was built on. Write it
// beside the plan.
func NewManifest(res BuildResult, spec trt.Spec, o BuildOptions, onnx []byte, on BuiltOn) trt.Manifest {
	gpu := on.GPU
	major, _ := strconv.Atoi(strings.SplitN(res.TensorRT, ".", 2)[0])
	hw := o.HardwareCompat
	if hw == "" {
		hw = trt.HardwareCompatNone
	}
	m := trt.Manifest{
		Schema:            trt.ManifestSchema,
		TensorRT:          res.TensorRT,
		TensorRTCUDAMajor: CUDAMajor(res.CUDARuntime),
		Platform:          Platform(),
		GPU:               trt.ManifestGPU{Name: gpu.Name, ComputeCapability: gpu.Compute, UUID: gpu.UUID, MIG: on.MIG},
		DriverVersion:     on.Driver,
		Compatibility: trt.Compatibility{
			Hardware:           hw,
			VersionCompatible:  o.VersionCompatible,
			ExcludeLeanRuntime: o.ExcludeLeanRuntime,
		},
		Precision: trt.Precision{
			StronglyTyped: o.StronglyTyped || major >= 11,
			FP16:          o.Precision.FP16,
			BF16:          o.Precision.BF16,
			INT8:          o.Precision.INT8,
		},
		PlanSHA256: trt.SHA256Hex(res.Plan),
		PlanBytes:  int64(len(res.Plan)),
		Build: trt.BuildInfo{
			WorkspaceBytes:    o.WorkspaceBytes,
			OptimizationLevel: o.optimizationLevel(),
			Plugins:           o.Plugins,
			Tool:              "jetinfer engine build",
		},
	}
	if res.CUDARuntime > 0 {
		m.CUDARuntime = fmt.Sprintf("%d.%d", res.CUDARuntime/1000, res.CUDARuntime%1000/10)
	}
	if onnx != nil {
		m.ONNXSHA256 = trt.SHA256Hex(onnx)
	}
	if o.Calibration != nil {
		c := &trt.Calibration{Batches: len(o.Calibration.Batches)}
		if len(res.CalibrationCache) > 0 {
			c.CacheSHA256 = trt.SHA256Hex(res.CalibrationCache)
		}
		m.Precision.Calibration = c
	}
	m.SetSpec(spec)
	return m
}
