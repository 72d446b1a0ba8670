package models

import (
	"math"
	"testing"
)

// Every float16 value survives float16 → float32 → float16, and values
// between two float16 neighbours round to the nearer one (ties to even).
func TestHalfConversion(t *testing.T) {
	for h := range 1 << 16 {
		f := halfToFloat(uint16(h))
		if math.IsNaN(float64(f)) {
			if got := floatToHalf(f); got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
				t.Fatalf("NaN %#04x → %#04x, not a NaN", h, got)
			}
			continue
		}
		if got := floatToHalf(f); got != uint16(h) {
			t.Fatalf("%#04x → %v → %#04x", h, f, got)
		}
	}
	for _, tc := range []struct {
		f    float32
		want uint16
	}{
		{1 + 1.0/2048, 0x3c00},           // halfway between 1 and 1+2^-10: to even (1)
		{1 + 3.0/2048, 0x3c02},           // halfway, odd below: up
		{1 + 1.0/2048 + 1e-7, 0x3c01},    // just above halfway: up
		{65520, 0x7c00},                  // rounds past the largest finite: Inf
		{65504, 0x7bff},                  // the largest finite
		{float32(math.Ldexp(1, -25)), 0}, // half the smallest subnormal: to even (0)
		{float32(math.Ldexp(3, -26)), 1}, // above half: the smallest subnormal
		{-2, 0xc000},
	} {
		if got := floatToHalf(tc.f); got != tc.want {
			t.Errorf("floatToHalf(%v) = %#04x, want %#04x", tc.f, got, tc.want)
		}
	}
	if got := floatToBFloat16(1 + 1.0/256); got != 0x3f80 { // halfway: to even
		t.Errorf("floatToBFloat16 halfway = %#04x", got)
	}
}
