package trt

import (
	"errors"
	"strings"
	"testing"
)

func testManifest() Manifest {
	plan := []byte("not a real plan, just bytes to hash")
	m := Manifest{
		Schema:            ManifestSchema,
		TensorRT:          "10.8.0.43",
		TensorRTCUDAMajor: 12,
		Platform:          "linux/amd64",
		GPU:               ManifestGPU{Name: "NVIDIA H100 80GB HBM3", ComputeCapability: "9.0"},
		DriverVersion:     "580.159.04",
		Compatibility:     Compatibility{Hardware: HardwareCompatNone},
		Precision:         Precision{StronglyTyped: true},
		PlanSHA256:        SHA256Hex(plan),
		PlanBytes:         int64(len(plan)),
		Build:             BuildInfo{OptimizationLevel: -1},
	}
	m.SetSpec(Spec{
		Inputs:  []TensorDesc{{Name: "x", DType: Float16, Shape: Shape{-1, 3, 224, 224}}},
		Outputs: []TensorDesc{{Name: "y", DType: Float32, Shape: Shape{-1, 1000}}},
		Profiles: []Profile{{
			Min: map[string]Shape{"x": {1, 3, 224, 224}},
			Opt: map[string]Shape{"x": {8, 3, 224, 224}},
			Max: map[string]Shape{"x": {32, 3, 224, 224}},
		}},
	})
	return m
}

func h100() Device {
	return Device{Kind: "cuda", Name: "NVIDIA H100 80GB HBM3", Compute: "9.0", UUID: "GPU-1"}
}

func TestManifestRoundTrip(t *testing.T) {
	m := testManifest()
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := got.Spec()
	if err != nil {
		t.Fatal(err)
	}
	if spec.Inputs[0].DType != Float16 || !spec.Inputs[0].Shape.Equal(Shape{-1, 3, 224, 224}) ||
		!spec.Profiles[0].Max["x"].Equal(Shape{32, 3, 224, 224}) || spec.Outputs[0].Name != "y" {
		t.Fatalf("spec after round trip: %+v", spec)
	}
	for _, key := range []string{`"tensorrt_version": "10.8.0.43"`, `"platform": "linux/amd64"`, `"tensorrt_cuda_major": 12`, `"compute_capability": "9.0"`, `"plan_sha256"`, `"strongly_typed": true`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("manifest JSON lacks %s:\n%s", key, b)
		}
	}
}

func TestManifestValidate(t *testing.T) {
	for name, mutate := range map[string]func(*Manifest){
		"schema":   func(m *Manifest) { m.Schema = ManifestSchema + 1 },
		"version":  func(m *Manifest) { m.TensorRT = "10.8" },
		"compute":  func(m *Manifest) { m.GPU.ComputeCapability = "sm_90" },
		"hardware": func(m *Manifest) { m.Compatibility.Hardware = "any" },
		"sha":      func(m *Manifest) { m.PlanSHA256 = "abc" },
		"dtype":    func(m *Manifest) { m.Inputs[0].DType = "float8" },
		"empty":    func(m *Manifest) { m.Profiles = nil },
	} {
		t.Run(name, func(t *testing.T) {
			m := testManifest()
			mutate(&m)
			if err := m.Validate(); err == nil {
				t.Fatal("invalid manifest accepted")
			}
			b, _ := m.Marshal()
			if _, err := ParseManifest(b); err == nil {
				t.Fatal("ParseManifest accepted an invalid manifest")
			}
		})
	}
	if err := testManifest().Validate(); err != nil {
		t.Fatalf("valid manifest rejected: %v", err)
	}
}

func TestManifestCheckPlan(t *testing.T) {
	m := testManifest()
	if err := m.CheckPlan([]byte("not a real plan, just bytes to hash")); err != nil {
		t.Fatal(err)
	}
	for _, plan := range [][]byte{[]byte("not a real plan, just bytes to hasH"), []byte("short")} {
		if err := m.CheckPlan(plan); !errors.Is(err, ErrIncompatible) {
			t.Errorf("CheckPlan(%q) = %v, want ErrIncompatible", plan, err)
		}
	}
}

// h100Node is the node the test manifest was built for.
func h100Node() Node {
	return Node{GPU: h100(), TensorRT: "10.8.0.43", TensorRTCUDAMajor: 12, Platform: "linux/amd64", HostCodeAllowed: true}
}

// TestCompatibility is the table of manifests × node identities: for each
// pair, whether the plan is accepted and, if not, which rules refuse it
// and why.
func TestCompatibility(t *testing.T) {
	a100 := Device{Kind: "cuda", Name: "NVIDIA A100-SXM4-80GB", Compute: "8.0"}
	a30 := Device{Kind: "cuda", Name: "NVIDIA A30", Compute: "8.0"}
	t4 := Device{Kind: "cuda", Name: "Tesla T4", Compute: "7.5"}
	h200 := Device{Kind: "cuda", Name: "NVIDIA H200", Compute: "9.0"}
	vc := func(m *Manifest) { m.Compatibility.VersionCompatible = true }
	amperePlus := func(m *Manifest) { m.Compatibility.Hardware = HardwareCompatAmperePlus }
	sameCC := func(m *Manifest) { m.Compatibility.Hardware = HardwareCompatSameCompute }
	onA100 := func(m *Manifest) { m.GPU = ManifestGPU{Name: a100.Name, ComputeCapability: "8.0"} }
	withGPU := func(d Device) func(*Node) { return func(n *Node) { n.GPU = d } }
	withTRT := func(v string) func(*Node) { return func(n *Node) { n.TensorRT = v } }
	both := func(fs ...func(*Manifest)) func(*Manifest) {
		return func(m *Manifest) {
			for _, f := range fs {
				f(m)
			}
		}
	}
	for _, tc := range []struct {
		name     string
		manifest func(*Manifest)
		node     func(*Node)
		refused  map[string]string // rule -> substring of its detail; empty: accepted
	}{
		{"exact", nil, nil, nil},
		{"build number differs", nil, withTRT("10.8.0.44"),
			map[string]string{RuleVersion: "expected 10.8.0.43, found 10.8.0.44"}},
		{"patch differs", nil, withTRT("10.8.1.7"), map[string]string{RuleVersion: "found 10.8.1.7"}},
		{"node version without build", nil, withTRT("10.8.0"),
			map[string]string{RuleVersion: "the node's version has no build number"}},
		{"schema 1 manifest", func(m *Manifest) { m.TensorRT, m.Platform, m.TensorRTCUDAMajor = "10.8.0", "", 0 }, nil,
			map[string]string{RuleVersion: "the manifest has no build number", RulePlatform: "records no platform",
				RuleCUDAMajor: "records no CUDA major"}},
		{"older trt", nil, withTRT("10.7.0.23"), map[string]string{RuleVersion: "expected 10.8.0.43, found 10.7.0.23"}},
		{"no trt linked", nil, withTRT(""), map[string]string{RuleVersion: "found none linked"}},
		{"garbage trt version", nil, withTRT("ten"), map[string]string{RuleVersion: `"ten" (unparsable)`}},
		{"other platform", nil, func(n *Node) { n.Platform = "linux/arm64" },
			map[string]string{RulePlatform: "expected linux/amd64, found linux/arm64"}},
		{"other cuda major", nil, func(n *Node) { n.TensorRTCUDAMajor = 13 },
			map[string]string{RuleCUDAMajor: "for CUDA 12, found one for CUDA 13"}},
		{"same cc other model", nil, withGPU(h200), map[string]string{RuleGPUModel: "expected NVIDIA H100 80GB HBM3, found NVIDIA H200"}},
		{"same model other cc", nil, withGPU(a100),
			map[string]string{RuleCompute: "expected 9.0 (plan built on NVIDIA H100 80GB HBM3), found 8.0 on NVIDIA A100-SXM4-80GB",
				RuleGPUModel: "found NVIDIA A100-SXM4-80GB"}},
		{"whole-gpu plan on a MIG slice", nil, func(n *Node) { n.MIG = "1g.10gb" },
			map[string]string{RuleGPUModel: "found NVIDIA H100 80GB HBM3 MIG 1g.10gb"}},
		{"MIG plan on another MIG profile", func(m *Manifest) { m.GPU.MIG = "3g.40gb" }, func(n *Node) { n.MIG = "1g.10gb" },
			map[string]string{RuleGPUModel: "expected NVIDIA H100 80GB HBM3 MIG 3g.40gb, found NVIDIA H100 80GB HBM3 MIG 1g.10gb"}},
		{"MIG plan on its profile", func(m *Manifest) { m.GPU.MIG = "1g.10gb" }, func(n *Node) { n.MIG = "1g.10gb" }, nil},
		{"no gpu", nil, withGPU(Device{Kind: "cpu", Name: "onnxruntime"}), map[string]string{RuleDevice: "found cpu"}},
		{"unknown gpu cc", nil, withGPU(Device{Kind: "cuda", Name: "mystery"}),
			map[string]string{RuleCompute: "found \"\" on mystery", RuleGPUModel: "found mystery"}},
		{"ampere plus on a100", amperePlus, withGPU(a100), nil},
		{"ampere plus on a30", both(onA100, amperePlus), withGPU(a30), nil},
		{"ampere plus on t4", amperePlus, withGPU(t4),
			map[string]string{RuleCompute: "expected 8.0 or newer (plan built ampere_plus), found 7.5 on Tesla T4"}},
		{"same cc on h200", sameCC, withGPU(h200), nil},
		{"same cc on a100", sameCC, withGPU(a100),
			map[string]string{RuleCompute: "expected 9.0 (plan built same_compute_capability), found 8.0"}},
		{"version compatible later minor", vc, withTRT("10.12.0.36"), nil},
		{"version compatible same", vc, nil, nil},
		{"version compatible older", vc, withTRT("10.7.0.23"),
			map[string]string{RuleVersion: "expected 10.x at or after 10.8.0.43 (plan built version-compatible), found 10.7.0.23"}},
		{"version compatible 10 plan on 11", vc, withTRT("11.1.0.106"), nil},
		{"plain 10 plan on 11", nil, withTRT("11.1.0.106"), map[string]string{RuleVersion: "found 11.1.0.106"}},
		{"version compatible 11 plan on 10", func(m *Manifest) { vc(m); m.TensorRT = "11.0.0.114" }, nil,
			map[string]string{RuleVersion: "expected 11.x at or after 11.0.0.114"}},
		{"version compatible 10 plan on 12", vc, withTRT("12.0.0.1"), map[string]string{RuleVersion: "found 12.0.0.1"}},
		{"version compatible without host code", vc, func(n *Node) { n.HostCodeAllowed = false },
			map[string]string{RuleHostCode: "does not allow it"}},
		{"host code not needed", nil, func(n *Node) { n.HostCodeAllowed = false }, nil},
		{"lean runtime excluded", func(m *Manifest) { vc(m); m.Compatibility.ExcludeLeanRuntime = true }, nil,
			map[string]string{RuleLeanRuntime: "IRuntime::loadRuntime"}},
		{"plugin missing", func(m *Manifest) { m.Build.Plugins = []string{"/opt/p/libmyplugin.so"} }, nil,
			map[string]string{RulePlugins: "not loaded here: libmyplugin.so"}},
		{"plugin loaded from another directory", func(m *Manifest) { m.Build.Plugins = []string{"/opt/p/libmyplugin.so"} },
			func(n *Node) { n.Plugins = []string{"/usr/lib/jetinfer/libmyplugin.so"} }, nil},
		{"plugin serialized into a version-compatible plan", func(m *Manifest) { vc(m); m.Build.Plugins = []string{"libmyplugin.so"} }, nil, nil},
		{"everything wrong", nil, func(n *Node) {
			*n = Node{GPU: t4, TensorRT: "11.1.0.106", TensorRTCUDAMajor: 13, Platform: "windows/amd64"}
		},
			map[string]string{RuleVersion: "found 11.1.0.106", RuleCompute: "found 7.5", RuleGPUModel: "found Tesla T4",
				RulePlatform: "found windows/amd64", RuleCUDAMajor: "CUDA 13"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := testManifest()
			if tc.manifest != nil {
				tc.manifest(&m)
			}
			n := h100Node()
			if tc.node != nil {
				tc.node(&n)
			}
			rep := m.Check(n)
			if n.GPU.Kind == "cuda" && len(rep.Rules) != 9 {
				t.Errorf("applied %d rules, want all 9: %v", len(rep.Rules), rep.Rules)
			}
			refused := map[string]RuleResult{}
			for _, r := range rep.Rules {
				if !r.OK {
					refused[r.Rule] = r
				}
			}
			for rule, want := range tc.refused {
				r, ok := refused[rule]
				if !ok {
					t.Errorf("rule %q passed, want it to refuse with %q; report %v", rule, want, rep.Rules)
					continue
				}
				if !strings.Contains(r.Detail, want) {
					t.Errorf("rule %q refused with %q, want %q", rule, r.Detail, want)
				}
			}
			for rule, r := range refused {
				if _, ok := tc.refused[rule]; !ok {
					t.Errorf("rule %q refused unexpectedly: %v", rule, r)
				}
			}
			err := m.CompatibleWith(n)
			if len(tc.refused) == 0 {
				if err != nil || !rep.OK() {
					t.Fatalf("want accepted, got %v", err)
				}
				return
			}
			var ie *IncompatibleError
			if !errors.Is(err, ErrIncompatible) || !errors.As(err, &ie) || len(ie.Refused) != len(tc.refused) {
				t.Fatalf("want an *IncompatibleError matching ErrIncompatible with %d refusals, got %v", len(tc.refused), err)
			}
		})
	}
}

func TestParseVersion(t *testing.T) {
	for s, want := range map[string]version{
		"10.8.0.43": {10, 8, 0, 43}, "11.1.0": {11, 1, 0, -1},
	} {
		if got, err := parseVersion(s); err != nil || got != want {
			t.Errorf("parseVersion(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"10.8", "10.8.0.43.1", "10.x.0", "-1.0.0"} {
		if _, err := parseVersion(s); err == nil {
			t.Errorf("parseVersion(%q) accepted", s)
		}
	}
	if !(version{10, 8, 0, 43}).less(version{10, 8, 0, 44}) {
		t.Error("build number not ordered")
	}
}
