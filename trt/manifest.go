package trt

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ManifestSchema is the manifest schema version this package writes and
// the newest it reads.
const ManifestSchema = 1

// Hardware compatibility levels of a plan (TensorRT's
// HardwareCompatibilityLevel).
const (
	HardwareCompatNone        = "none"                    // this compute capability only (the default, fastest)
	HardwareCompatAmperePlus  = "ampere_plus"             // any GPU of compute capability 8.0 or newer; slower
	HardwareCompatSameCompute = "same_compute_capability" // any GPU of the same compute capability (TensorRT 10.9+); slower
)

// Manifest describes a serialized TensorRT plan. It is stored as JSON
// beside every plan (plan "m.plan", manifest "m.plan.json") because a plan
// cannot be inspected without deserializing it, and deserializing a plan
// built for another TensorRT version or GPU fails or crashes. The loader
// checks it first (CompatibleWith, CheckPlan).
type Manifest struct {
	Schema   int    `json:"schema"`
	TensorRT string `json:"tensorrt_version"` // "major.minor.patch" of the TensorRT that built the plan

	GPU           ManifestGPU   `json:"gpu"`                      // the GPU the plan was built on
	DriverVersion string        `json:"driver_version,omitempty"` // e.g. "580.159.04"
	CUDARuntime   string        `json:"cuda_runtime,omitempty"`   // e.g. "13.0"
	Compatibility Compatibility `json:"compatibility"`
	Precision     Precision     `json:"precision"`

	Inputs   []ManifestTensor  `json:"inputs"`
	Outputs  []ManifestTensor  `json:"outputs"`
	Profiles []ManifestProfile `json:"profiles"`

	PlanSHA256 string `json:"plan_sha256"`
	PlanBytes  int64  `json:"plan_bytes"`
	ONNXSHA256 string `json:"onnx_sha256,omitempty"`

	Build BuildInfo `json:"build"`
}

// ManifestGPU identifies the GPU a plan was built on.
type ManifestGPU struct {
	Name              string `json:"name"`
	ComputeCapability string `json:"compute_capability"` // "9.0"
	UUID              string `json:"uuid,omitempty"`
}

// Compatibility records the builder's compatibility options.
type Compatibility struct {
	Hardware           string `json:"hardware"`           // one of the HardwareCompat* constants
	VersionCompatible  bool   `json:"version_compatible"` // runs on later TensorRT of the same major
	ExcludeLeanRuntime bool   `json:"exclude_lean_runtime,omitempty"`
}

// Precision records how the network's precision was chosen.
type Precision struct {
	// StronglyTyped: precision came from the ONNX model itself (FP16
	// weights, Q/DQ nodes). Always true for TensorRT 11.
	StronglyTyped bool `json:"strongly_typed"`
	// FP16, BF16, INT8: TensorRT 10 builder flags of a weakly typed network.
	FP16 bool `json:"fp16,omitempty"`
	BF16 bool `json:"bf16,omitempty"`
	INT8 bool `json:"int8,omitempty"`
	// Calibration describes INT8 entropy calibration, if it ran.
	Calibration *Calibration `json:"calibration,omitempty"`
}

// Calibration describes the INT8 calibration of a plan.
type Calibration struct {
	Batches     int    `json:"batches"`
	CacheSHA256 string `json:"cache_sha256,omitempty"`
}

// ManifestTensor is a TensorDesc in JSON form.
type ManifestTensor struct {
	Name  string `json:"name"`
	DType string `json:"dtype"`
	Shape Shape  `json:"shape"` // -1 for dynamic dimensions
}

// ManifestProfile is a Profile in JSON form.
type ManifestProfile struct {
	Min map[string]Shape `json:"min"`
	Opt map[string]Shape `json:"opt"`
	Max map[string]Shape `json:"max"`
}

// BuildInfo records the build options.
type BuildInfo struct {
	WorkspaceBytes    int64    `json:"workspace_bytes,omitempty"`
	OptimizationLevel int      `json:"optimization_level"` // -1: TensorRT's default
	TimingCache       string   `json:"timing_cache,omitempty"`
	Plugins           []string `json:"plugins,omitempty"`
	Tool              string   `json:"tool,omitempty"`
}

// SetSpec fills m's Inputs, Outputs and Profiles from spec.
func (m *Manifest) SetSpec(spec Spec) {
	conv := func(ts []TensorDesc) []ManifestTensor {
		out := make([]ManifestTensor, len(ts))
		for i, t := range ts {
			out[i] = ManifestTensor{Name: t.Name, DType: t.DType.String(), Shape: t.Shape.Clone()}
		}
		return out
	}
	m.Inputs, m.Outputs = conv(spec.Inputs), conv(spec.Outputs)
	m.Profiles = make([]ManifestProfile, len(spec.Profiles))
	for i, p := range spec.Profiles {
		m.Profiles[i] = ManifestProfile{Min: p.Min, Opt: p.Opt, Max: p.Max}
	}
}

// Spec converts the manifest's IO description back into a Spec.
func (m Manifest) Spec() (Spec, error) {
	conv := func(kind string, ts []ManifestTensor) ([]TensorDesc, error) {
		out := make([]TensorDesc, len(ts))
		for i, t := range ts {
			d, err := ParseDType(t.DType)
			if err != nil {
				return nil, fmt.Errorf("reading %s %q: %w", kind, t.Name, err)
			}
			out[i] = TensorDesc{Name: t.Name, DType: d, Shape: t.Shape.Clone()}
		}
		return out, nil
	}
	var s Spec
	var err error
	if s.Inputs, err = conv("input", m.Inputs); err != nil {
		return Spec{}, err
	}
	if s.Outputs, err = conv("output", m.Outputs); err != nil {
		return Spec{}, err
	}
	for _, p := range m.Profiles {
		s.Profiles = append(s.Profiles, Profile{Min: p.Min, Opt: p.Opt, Max: p.Max})
	}
	return s, nil
}

// ParseManifest decodes a manifest and validates it.
func ParseManifest(b []byte) (Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("decoding engine manifest: %w", err)
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// Marshal encodes the manifest as indented JSON.
func (m Manifest) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding engine manifest: %w", err)
	}
	return append(b, '\n'), nil
}

// Validate checks that the manifest is complete and well formed.
func (m Manifest) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if m.Schema < 1 || m.Schema > ManifestSchema {
		bad("schema %d not supported (this build reads 1..%d)", m.Schema, ManifestSchema)
	}
	if _, err := parseVersion(m.TensorRT); err != nil {
		bad("tensorrt_version: %v", err)
	}
	if _, err := parseCompute(m.GPU.ComputeCapability); err != nil {
		bad("gpu.compute_capability: %v", err)
	}
	switch m.Compatibility.Hardware {
	case HardwareCompatNone, HardwareCompatAmperePlus, HardwareCompatSameCompute:
	default:
		bad("compatibility.hardware %q is not one of %q, %q, %q", m.Compatibility.Hardware,
			HardwareCompatNone, HardwareCompatAmperePlus, HardwareCompatSameCompute)
	}
	if !validSHA256(m.PlanSHA256) {
		bad("plan_sha256 %q is not a hex SHA-256", m.PlanSHA256)
	}
	if m.ONNXSHA256 != "" && !validSHA256(m.ONNXSHA256) {
		bad("onnx_sha256 %q is not a hex SHA-256", m.ONNXSHA256)
	}
	if len(m.Inputs) == 0 || len(m.Outputs) == 0 || len(m.Profiles) == 0 {
		bad("inputs, outputs and profiles must not be empty")
	}
	if _, err := m.Spec(); err != nil {
		bad("%v", err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("validating engine manifest: %w", err)
	}
	return nil
}

func validSHA256(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == sha256.Size
}

// SHA256Hex returns the lower-case hex SHA-256 of b, as manifests record it.
func SHA256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// CheckPlan verifies that plan is the plan this manifest describes.
func (m Manifest) CheckPlan(plan []byte) error {
	if int64(len(plan)) != m.PlanBytes {
		return fmt.Errorf("checking engine plan: manifest expects %d bytes, found %d: %w", m.PlanBytes, len(plan), ErrIncompatible)
	}
	if got := SHA256Hex(plan); got != m.PlanSHA256 {
		return fmt.Errorf("checking engine plan: manifest expects sha256 %s, found %s: %w", m.PlanSHA256, got, ErrIncompatible)
	}
	return nil
}

// ErrIncompatible matches errors saying a plan cannot run on this node.
var ErrIncompatible = errors.New("engine plan incompatible with this node")

// Mismatch is one reason a plan cannot run here.
type Mismatch struct {
	Field    string // "tensorrt version", "compute capability", "device"
	Expected string
	Found    string
	Hint     string
}

func (m Mismatch) String() string {
	s := fmt.Sprintf("%s: expected %s, found %s", m.Field, m.Expected, m.Found)
	if m.Hint != "" {
		s += " (" + m.Hint + ")"
	}
	return s
}

// IncompatibleError lists every reason a plan cannot run on this node.
type IncompatibleError struct {
	Mismatches []Mismatch
}

func (e *IncompatibleError) Error() string {
	parts := make([]string, len(e.Mismatches))
	for i, m := range e.Mismatches {
		parts[i] = m.String()
	}
	return ErrIncompatible.Error() + ": " + strings.Join(parts, "; ")
}

// Is makes errors.Is(err, ErrIncompatible) true.
func (e *IncompatibleError) Is(target error) bool { return target == ErrIncompatible }

// CompatibleWith reports whether the plan can be deserialized on gpu by
// the linked TensorRT version tensorRT ("major.minor.patch"; empty if no
// TensorRT is linked). It is pure: callers gather gpu (from CUDA or NVML)
// and the version. A nil result means compatible; otherwise the error is
// an *IncompatibleError naming expected and found values.
//
// Rules: a plan runs only on the exact TensorRT version that built it,
// unless built version-compatible, which runs on the same or a later
// version of the same major. It runs only on the compute capability it was
// built for, unless built hardware-compatible: ampere_plus runs on any
// compute capability 8.0 or newer, same_compute_capability on any GPU of
// the built compute capability.
func (m Manifest) CompatibleWith(gpu Device, tensorRT string) error {
	var mm []Mismatch
	if gpu.Kind != "cuda" {
		found := gpu.Kind
		if found == "" {
			found = "no GPU"
		}
		mm = append(mm, Mismatch{Field: "device", Expected: "a CUDA GPU", Found: found,
			Hint: "TensorRT plans run only on NVIDIA GPUs"})
	} else {
		mm = append(mm, m.computeMismatch(gpu)...)
	}
	mm = append(mm, m.versionMismatch(tensorRT)...)
	if len(mm) == 0 {
		return nil
	}
	return &IncompatibleError{Mismatches: mm}
}

func (m Manifest) computeMismatch(gpu Device) []Mismatch {
	built, err := parseCompute(m.GPU.ComputeCapability)
	if err != nil {
		return []Mismatch{{Field: "compute capability", Expected: "a valid manifest", Found: m.GPU.ComputeCapability}}
	}
	found, err := parseCompute(gpu.Compute)
	if err != nil {
		return []Mismatch{{Field: "compute capability", Expected: m.GPU.ComputeCapability,
			Found: fmt.Sprintf("%q on %s", gpu.Compute, gpu.Name), Hint: "the GPU's compute capability is unknown"}}
	}
	switch m.Compatibility.Hardware {
	case HardwareCompatAmperePlus:
		if found.less(version{8, 0, 0}) {
			return []Mismatch{{Field: "compute capability", Expected: "8.0 or newer (plan built ampere_plus)",
				Found: gpu.Compute + " on " + gpu.Name}}
		}
	case HardwareCompatSameCompute:
		if found != built {
			return []Mismatch{{Field: "compute capability", Expected: m.GPU.ComputeCapability + " (plan built same_compute_capability)",
				Found: gpu.Compute + " on " + gpu.Name}}
		}
	default:
		if found != built {
			return []Mismatch{{Field: "compute capability",
				Expected: fmt.Sprintf("%s (plan built on %s)", m.GPU.ComputeCapability, m.GPU.Name),
				Found:    gpu.Compute + " on " + gpu.Name,
				Hint:     "rebuild the plan on this GPU type, or build it hardware-compatible (slower)"}}
		}
	}
	return nil
}

func (m Manifest) versionMismatch(tensorRT string) []Mismatch {
	if tensorRT == "" {
		return []Mismatch{{Field: "tensorrt version", Expected: m.TensorRT, Found: "none linked",
			Hint: "this binary was built without the tensorrt tag or libnvinfer is missing"}}
	}
	built, err := parseVersion(m.TensorRT)
	if err != nil {
		return []Mismatch{{Field: "tensorrt version", Expected: "a valid manifest", Found: m.TensorRT}}
	}
	found, err := parseVersion(tensorRT)
	if err != nil {
		return []Mismatch{{Field: "tensorrt version", Expected: m.TensorRT, Found: fmt.Sprintf("%q (unparsable)", tensorRT)}}
	}
	if m.Compatibility.VersionCompatible {
		if found.major != built.major || found.less(built) {
			return []Mismatch{{Field: "tensorrt version",
				Expected: fmt.Sprintf("%d.x at or after %s (plan built version-compatible)", built.major, m.TensorRT),
				Found:    tensorRT}}
		}
		return nil
	}
	if found != built {
		return []Mismatch{{Field: "tensorrt version", Expected: m.TensorRT, Found: tensorRT,
			Hint: "a plan runs only on the TensorRT version that built it; rebuild it, or build it version-compatible"}}
	}
	return nil
}

// version is a dotted version; compute capabilities use major.minor.
type version struct{ major, minor, patch int }

func (v version) less(o version) bool {
	if v.major != o.major {
		return v.major < o.major
	}
	if v.minor != o.minor {
		return v.minor < o.minor
	}
	return v.patch < o.patch
}

func parseDotted(s string, parts int) (version, error) {
	f := strings.Split(s, ".")
	if len(f) != parts {
		return version{}, fmt.Errorf("%q is not %d dot-separated numbers", s, parts)
	}
	var n [3]int
	for i, p := range f {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 {
			return version{}, fmt.Errorf("%q is not %d dot-separated numbers", s, parts)
		}
		n[i] = v
	}
	return version{n[0], n[1], n[2]}, nil
}

func parseVersion(s string) (version, error) { return parseDotted(s, 3) }

func parseCompute(s string) (version, error) { return parseDotted(s, 2) }
