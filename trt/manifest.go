package trt

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
)

// ManifestSchema is the manifest schema version this package writes and
// the newest it reads. Schema 2 added the TensorRT build number, the
// platform, the TensorRT package's CUDA major and the MIG profile; a
// schema 1 manifest still parses, but the rules that need those fields
// refuse it (rebuild the plan to record them).
const ManifestSchema = 2

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
	Schema int `json:"schema"`
	// TensorRT is the full version of the TensorRT that built the plan,
	// "major.minor.patch.build" (schema 1 recorded no build number).
	TensorRT string `json:"tensorrt_version"`
	// TensorRTCUDAMajor is the CUDA major version the TensorRT package
	// that built the plan targets (TensorRT ships one package per CUDA
	// major); 0 when not recorded.
	TensorRTCUDAMajor int `json:"tensorrt_cuda_major,omitempty"`
	// Platform is the builder's GOOS/GOARCH, e.g. "linux/amd64": plans do
	// not move between operating systems or CPU architectures.
	Platform string `json:"platform,omitempty"`

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
	// MIG is the MIG profile of the GPU instance the plan was built on
	// (e.g. "1g.10gb"); empty for a whole GPU.
	MIG string `json:"mig,omitempty"`
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
	WorkspaceBytes    int64  `json:"workspace_bytes,omitempty"`
	OptimizationLevel int    `json:"optimization_level"` // -1: TensorRT's default
	TimingCache       string `json:"timing_cache,omitempty"`
	// Plugins are the plugin libraries the network needed. A
	// version-compatible plan carries them (serialized into the plan);
	// any other plan needs a library of the same file name loaded.
	Plugins []string `json:"plugins,omitempty"`
	Tool    string   `json:"tool,omitempty"`
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
	if m.TensorRTCUDAMajor < 0 {
		bad("tensorrt_cuda_major %d is negative", m.TensorRTCUDAMajor)
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

// Node is what a plan is checked against: this process's GPU, TensorRT
// and loader settings. Callers gather it (CUDA, NVML, the linked library,
// the configuration); the check itself is pure.
type Node struct {
	// GPU is the device the plan would run on (Kind "cuda" for a GPU).
	GPU Device
	// MIG is the MIG profile of the GPU instance ("1g.10gb"); empty for
	// a whole GPU.
	MIG string
	// TensorRT is the linked TensorRT's full version
	// "major.minor.patch.build"; empty when none is linked.
	TensorRT string
	// TensorRTCUDAMajor is the CUDA major the linked TensorRT package
	// targets; 0 when unknown.
	TensorRTCUDAMajor int
	// Platform is GOOS/GOARCH of this process.
	Platform string
	// HostCodeAllowed: the loader lets a plan run the host code it
	// carries (IRuntime::setEngineHostCodeAllowed), which
	// version-compatible plans need.
	HostCodeAllowed bool
	// LeanRuntime: the loader can load a separate lean runtime
	// (IRuntime::loadRuntime) for plans built without one. jetinfer's
	// loader cannot, so this is false in every build of it.
	LeanRuntime bool
	// Plugins are the plugin libraries the loader loads (paths).
	Plugins []string
}

// Rule names, in the order Check applies them.
const (
	RuleDevice      = "device"
	RulePlatform    = "platform"
	RuleVersion     = "tensorrt version"
	RuleCUDAMajor   = "tensorrt cuda major"
	RuleCompute     = "compute capability"
	RuleGPUModel    = "gpu model"
	RuleLeanRuntime = "lean runtime"
	RuleHostCode    = "host code"
	RulePlugins     = "plugins"
)

// RuleResult is one compatibility rule applied to a plan and a node.
type RuleResult struct {
	Rule   string // one of the Rule* constants
	OK     bool
	Detail string // what was compared, or why the rule passed
	Hint   string // what to do about a refusal
}

func (r RuleResult) String() string {
	verdict := "ok"
	if !r.OK {
		verdict = "REFUSED"
	}
	s := fmt.Sprintf("%s: %s: %s", r.Rule, verdict, r.Detail)
	if r.Hint != "" {
		s += " (" + r.Hint + ")"
	}
	return s
}

// Report is the outcome of Check: every rule applied, in order.
type Report struct {
	Rules []RuleResult
}

// OK reports whether every rule passed.
func (r Report) OK() bool {
	for _, x := range r.Rules {
		if !x.OK {
			return false
		}
	}
	return true
}

// Err returns nil when every rule passed, else an *IncompatibleError
// listing the refusals.
func (r Report) Err() error {
	var bad []RuleResult
	for _, x := range r.Rules {
		if !x.OK {
			bad = append(bad, x)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return &IncompatibleError{Refused: bad}
}

// IncompatibleError lists every reason a plan cannot run on this node.
type IncompatibleError struct {
	Refused []RuleResult
}

func (e *IncompatibleError) Error() string {
	parts := make([]string, len(e.Refused))
	for i, r := range e.Refused {
		parts[i] = r.String()
	}
	return ErrIncompatible.Error() + ": " + strings.Join(parts, "; ")
}

// Is makes errors.Is(err, ErrIncompatible) true.
func (e *IncompatibleError) Is(target error) bool { return target == ErrIncompatible }

// CompatibleWith is Check(n).Err().
func (m Manifest) CompatibleWith(n Node) error { return m.Check(n).Err() }

// Check applies every compatibility rule to the plan m describes and the
// node n, and reports each. The rules follow what TensorRT requires of a
// serialized plan:
//
//   - device: a CUDA GPU.
//   - platform: the same OS and CPU architecture as the builder.
//   - tensorrt version: exactly the version, build number included, that
//     built the plan; a version-compatible plan runs on the same or a
//     later version of its major, and a TensorRT 10 version-compatible
//     plan also on TensorRT 11.
//   - tensorrt cuda major: the TensorRT package targets the same CUDA
//     major as the builder's.
//   - compute capability: the same, unless built hardware-compatible
//     (ampere_plus: 8.0 or newer; same_compute_capability: the same).
//   - gpu model: the same GPU model and MIG profile, unless built
//     hardware-compatible (then the model is not compared).
//   - lean runtime: a plan built with -exclude-lean-runtime needs a
//     loader that loads a separate lean runtime; jetinfer's cannot.
//   - host code: a version-compatible plan runs host code it carries, so
//     the loader must allow it.
//   - plugins: a plan that needed plugin libraries needs a library of
//     the same file name loaded, unless it is version-compatible (then
//     the libraries are serialized into it).
func (m Manifest) Check(n Node) Report {
	var r Report
	add := func(rule string, ok bool, detail, hint string) {
		r.Rules = append(r.Rules, RuleResult{Rule: rule, OK: ok, Detail: detail, Hint: hint})
	}
	if n.GPU.Kind != "cuda" {
		found := n.GPU.Kind
		if found == "" {
			found = "no GPU"
		}
		add(RuleDevice, false, "expected a CUDA GPU, found "+found, "TensorRT plans run only on NVIDIA GPUs")
	} else {
		add(RuleDevice, true, "CUDA GPU "+n.GPU.Name, "")
	}
	m.checkPlatform(n, add)
	m.checkVersion(n, add)
	m.checkCUDAMajor(n, add)
	if n.GPU.Kind == "cuda" {
		m.checkCompute(n, add)
		m.checkModel(n, add)
	}
	if m.Compatibility.ExcludeLeanRuntime && !n.LeanRuntime {
		add(RuleLeanRuntime, false, "plan built with -exclude-lean-runtime needs a separately loaded lean runtime (IRuntime::loadRuntime), which jetinfer's loader does not load",
			"rebuild the plan without -exclude-lean-runtime")
	} else if m.Compatibility.ExcludeLeanRuntime {
		add(RuleLeanRuntime, true, "plan excludes the lean runtime; the loader loads one", "")
	} else {
		add(RuleLeanRuntime, true, "not needed", "")
	}
	switch {
	case !m.Compatibility.VersionCompatible:
		add(RuleHostCode, true, "not needed (plan is not version-compatible)", "")
	case n.HostCodeAllowed:
		add(RuleHostCode, true, "version-compatible plan; host code allowed", "")
	default:
		add(RuleHostCode, false, "a version-compatible plan runs host code it carries, and the loader does not allow it",
			"set JETINFER_TRT_ALLOW_HOST_CODE=true for plans you trust")
	}
	m.checkPlugins(n, add)
	return r
}

type addFunc func(rule string, ok bool, detail, hint string)

func (m Manifest) checkPlatform(n Node, add addFunc) {
	switch {
	case m.Platform == "":
		add(RulePlatform, false, "the manifest records no platform (schema 1)", "rebuild the plan with this jetinfer to record it")
	case m.Platform != n.Platform:
		add(RulePlatform, false, fmt.Sprintf("expected %s, found %s", m.Platform, n.Platform),
			"plans do not move between operating systems or CPU architectures; build one on "+n.Platform)
	default:
		add(RulePlatform, true, m.Platform, "")
	}
}

func (m Manifest) checkVersion(n Node, add addFunc) {
	if n.TensorRT == "" {
		add(RuleVersion, false, "expected "+m.TensorRT+", found none linked",
			"this binary was built without the tensorrt tag or libnvinfer is missing")
		return
	}
	built, err := parseVersion(m.TensorRT)
	if err != nil {
		add(RuleVersion, false, "the manifest's version "+m.TensorRT+" is invalid", "")
		return
	}
	found, err := parseVersion(n.TensorRT)
	if err != nil {
		add(RuleVersion, false, fmt.Sprintf("expected %s, found %q (unparsable)", m.TensorRT, n.TensorRT), "")
		return
	}
	if m.Compatibility.VersionCompatible {
		switch {
		case found.major == built.major && !found.less(built):
			add(RuleVersion, true, fmt.Sprintf("version-compatible plan built with %s runs on %s (same major, same or later)", m.TensorRT, n.TensorRT), "")
		case built.major == 10 && found.major == 11:
			add(RuleVersion, true, fmt.Sprintf("TensorRT 10 version-compatible plan (built with %s) runs on TensorRT 11 (%s), as NVIDIA supports", m.TensorRT, n.TensorRT), "")
		default:
			add(RuleVersion, false, fmt.Sprintf("expected %d.x at or after %s (plan built version-compatible), found %s", built.major, m.TensorRT, n.TensorRT),
				"a version-compatible plan runs only on later TensorRT of its major (and TensorRT 10 plans on 11)")
		}
		return
	}
	if built.build < 0 || found.build < 0 {
		which := "the manifest"
		if found.build < 0 {
			which = "the node's version"
		}
		add(RuleVersion, false, fmt.Sprintf("expected %s, found %s: %s has no build number, so the versions cannot be compared exactly", m.TensorRT, n.TensorRT, which),
			"a plan runs only on the exact TensorRT build that made it; rebuild the plan with this jetinfer, or give major.minor.patch.build")
		return
	}
	if found != built {
		add(RuleVersion, false, fmt.Sprintf("expected %s, found %s", m.TensorRT, n.TensorRT),
			"a plan runs only on the TensorRT version (build included) that built it; rebuild it, or build it version-compatible")
		return
	}
	add(RuleVersion, true, "exactly "+m.TensorRT, "")
}

func (m Manifest) checkCUDAMajor(n Node, add addFunc) {
	switch {
	case m.TensorRTCUDAMajor == 0:
		add(RuleCUDAMajor, false, "the manifest records no CUDA major of the TensorRT package (schema 1)", "rebuild the plan with this jetinfer to record it")
	case n.TensorRTCUDAMajor == 0:
		add(RuleCUDAMajor, false, fmt.Sprintf("expected CUDA %d, found unknown", m.TensorRTCUDAMajor), "no TensorRT and CUDA runtime linked here")
	case m.TensorRTCUDAMajor != n.TensorRTCUDAMajor:
		add(RuleCUDAMajor, false, fmt.Sprintf("expected a TensorRT package for CUDA %d, found one for CUDA %d", m.TensorRTCUDAMajor, n.TensorRTCUDAMajor),
			"use the TensorRT package for the CUDA major the plan was built with, or rebuild the plan")
	default:
		add(RuleCUDAMajor, true, fmt.Sprintf("CUDA %d", m.TensorRTCUDAMajor), "")
	}
}

func (m Manifest) checkCompute(n Node, add addFunc) {
	built, err := parseCompute(m.GPU.ComputeCapability)
	if err != nil {
		add(RuleCompute, false, "the manifest's compute capability "+m.GPU.ComputeCapability+" is invalid", "")
		return
	}
	found, err := parseCompute(n.GPU.Compute)
	if err != nil {
		add(RuleCompute, false, fmt.Sprintf("expected %s, found %q on %s", m.GPU.ComputeCapability, n.GPU.Compute, n.GPU.Name), "the GPU's compute capability is unknown")
		return
	}
	on := n.GPU.Compute + " on " + n.GPU.Name
	switch m.Compatibility.Hardware {
	case HardwareCompatAmperePlus:
		if found.less(version{major: 8}) {
			add(RuleCompute, false, "expected 8.0 or newer (plan built ampere_plus), found "+on, "")
			return
		}
		add(RuleCompute, true, on+" (plan built ampere_plus: any 8.0 or newer)", "")
	case HardwareCompatSameCompute:
		if found != built {
			add(RuleCompute, false, fmt.Sprintf("expected %s (plan built same_compute_capability), found %s", m.GPU.ComputeCapability, on), "")
			return
		}
		add(RuleCompute, true, on+" (plan built same_compute_capability)", "")
	default:
		if found != built {
			add(RuleCompute, false, fmt.Sprintf("expected %s (plan built on %s), found %s", m.GPU.ComputeCapability, m.GPU.Name, on),
				"rebuild the plan on this GPU type, or build it hardware-compatible (slower)")
			return
		}
		add(RuleCompute, true, "exactly "+m.GPU.ComputeCapability, "")
	}
}

func gpuModel(name, mig string) string {
	if mig == "" {
		return name
	}
	return name + " MIG " + mig
}

func (m Manifest) checkModel(n Node, add addFunc) {
	built, found := gpuModel(m.GPU.Name, m.GPU.MIG), gpuModel(n.GPU.Name, n.MIG)
	switch {
	case m.Compatibility.Hardware == HardwareCompatAmperePlus || m.Compatibility.Hardware == HardwareCompatSameCompute:
		add(RuleGPUModel, true, fmt.Sprintf("built on %s, running on %s: not compared (plan built %s)", built, found, m.Compatibility.Hardware), "")
	case built != found:
		add(RuleGPUModel, false, fmt.Sprintf("expected %s, found %s", built, found),
			"TensorRT tunes a plan for one GPU model and MIG profile; rebuild it on this one, or build it hardware-compatible (slower)")
	default:
		add(RuleGPUModel, true, "exactly "+built, "")
	}
}

func (m Manifest) checkPlugins(n Node, add addFunc) {
	if len(m.Build.Plugins) == 0 {
		add(RulePlugins, true, "none needed", "")
		return
	}
	if m.Compatibility.VersionCompatible {
		add(RulePlugins, true, "serialized into the version-compatible plan: "+strings.Join(m.Build.Plugins, ", "), "")
		return
	}
	have := map[string]bool{}
	for _, p := range n.Plugins {
		have[path.Base(p)] = true
	}
	var missing []string
	for _, p := range m.Build.Plugins {
		if !have[path.Base(p)] {
			missing = append(missing, path.Base(p))
		}
	}
	if len(missing) > 0 {
		add(RulePlugins, false, "plan needs plugin libraries not loaded here: "+strings.Join(missing, ", "),
			"list them in JETINFER_TRT_PLUGINS (comma-separated paths)")
		return
	}
	add(RulePlugins, true, "loaded: "+strings.Join(m.Build.Plugins, ", "), "")
}

// version is a dotted version: TensorRT's major.minor.patch[.build]
// (build -1 when absent) or a compute capability major.minor.
type version struct{ major, minor, patch, build int }

func (v version) less(o version) bool {
	if v.major != o.major {
		return v.major < o.major
	}
	if v.minor != o.minor {
		return v.minor < o.minor
	}
	if v.patch != o.patch {
		return v.patch < o.patch
	}
	return v.build < o.build
}

func parseDotted(s string, minParts, maxParts int) (version, error) {
	f := strings.Split(s, ".")
	if len(f) < minParts || len(f) > maxParts {
		if minParts == maxParts {
			return version{}, fmt.Errorf("%q is not %d dot-separated numbers", s, minParts)
		}
		return version{}, fmt.Errorf("%q is not %d to %d dot-separated numbers", s, minParts, maxParts)
	}
	n := [4]int{0, 0, 0, -1}
	for i, p := range f {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 {
			return version{}, fmt.Errorf("%q is not dot-separated numbers", s)
		}
		n[i] = v
	}
	return version{n[0], n[1], n[2], n[3]}, nil
}

// parseVersion reads a TensorRT version "major.minor.patch.build" (or
// "major.minor.patch", build unknown).
func parseVersion(s string) (version, error) { return parseDotted(s, 3, 4) }

func parseCompute(s string) (version, error) {
	v, err := parseDotted(s, 2, 2)
	v.build = 0
	return v, err
}
