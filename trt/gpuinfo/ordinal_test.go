package gpuinfo

import (
	"errors"
	"testing"
)

func testInfo() Info {
	return Info{GPUs: []GPU{
		{Index: 0, Name: "NVIDIA A100-SXM4-40GB", UUID: "GPU-aaaa1111-0000-0000-0000-000000000000",
			MIG: []MIGDevice{{UUID: "MIG-cccc3333-0000-0000-0000-000000000000", Profile: "1g.5gb"}}},
		{Index: 1, Name: "NVIDIA H100 80GB HBM3", UUID: "GPU-bbbb2222-0000-0000-0000-000000000000"},
		{Index: 2, Name: "NVIDIA H100 80GB HBM3", UUID: "GPU-dddd4444-0000-0000-0000-000000000000"},
	}}
}

// TestByCUDAOrdinal: a CUDA ordinal names the device the CUDA runtime
// would open, CUDA_VISIBLE_DEVICES included, so that `engine check -gpu N`
// checks the GPU that JETINFER_GPU_DEVICE=N runs on.
func TestByCUDAOrdinal(t *testing.T) {
	in := testInfo()
	for _, tc := range []struct {
		name, visible, order string
		ordinal              int
		wantUUID, wantMIG    string
		wantNote             bool
		wantErr              bool
	}{
		{"all visible", "", "PCI_BUS_ID", 1, "GPU-bbbb2222-0000-0000-0000-000000000000", "", false, false},
		{"default order, mixed models", "", "", 1, "GPU-bbbb2222-0000-0000-0000-000000000000", "", true, false},
		{"indices reorder", "2,0", "PCI_BUS_ID", 0, "GPU-dddd4444-0000-0000-0000-000000000000", "", false, false},
		{"same model, default order is exact", "1,2", "", 1, "GPU-dddd4444-0000-0000-0000-000000000000", "", false, false},
		{"uuid prefix", "GPU-bbbb", "", 0, "GPU-bbbb2222-0000-0000-0000-000000000000", "", false, false},
		{"mig uuid", "MIG-cccc3333-0000-0000-0000-000000000000", "", 0, "GPU-aaaa1111-0000-0000-0000-000000000000", "1g.5gb", false, false},
		{"invalid entry cuts the list", "1,7,2", "", 1, "", "", false, true},
		{"out of range", "", "", 3, "", "", false, true},
		{"hidden", "-1", "", 0, "", "", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := in.ByCUDAOrdinal(tc.ordinal, tc.visible, tc.order)
			if tc.wantErr {
				if !errors.Is(err, ErrNoGPU) {
					t.Fatalf("want ErrNoGPU, got %+v, %v", d, err)
				}
				return
			}
			if err != nil || d.GPU.UUID != tc.wantUUID || d.MIG != tc.wantMIG || (d.Note != "") != tc.wantNote {
				t.Fatalf("got %s MIG %q note %q, %v; want %s MIG %q note %v", d.GPU.UUID, d.MIG, d.Note, err, tc.wantUUID, tc.wantMIG, tc.wantNote)
			}
		})
	}
}

func TestByUUID(t *testing.T) {
	in := testInfo()
	if d, err := in.ByUUID("cccc3333-0000-0000-0000-000000000000"); err != nil || d.GPU.Index != 0 || d.MIG != "1g.5gb" {
		t.Fatalf("bare MIG UUID: %+v, %v", d, err)
	}
	if d, err := in.ByUUID("GPU-dddd4444-0000-0000-0000-000000000000"); err != nil || d.GPU.Index != 2 || d.MIG != "" {
		t.Fatalf("GPU UUID: %+v, %v", d, err)
	}
	if _, err := in.ByUUID("GPU-ffff"); !errors.Is(err, ErrNoGPU) {
		t.Fatalf("unknown UUID: %v", err)
	}
}

func TestMIGProfile(t *testing.T) {
	for name, want := range map[string]string{
		"NVIDIA A100-SXM4-40GB MIG 1g.5gb": "1g.5gb", "NVIDIA H100 80GB HBM3 MIG 3g.40gb": "3g.40gb", "NVIDIA H100 80GB HBM3": "",
	} {
		if got := MIGProfile(name); got != want {
			t.Errorf("MIGProfile(%q) = %q, want %q", name, got, want)
		}
	}
}
