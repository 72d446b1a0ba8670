package codec

import (
	"math/rand/v2"
	"testing"
)

// TestBitmapScans compares the word-wise bitmap scans with a bit-by-bit
// reference on random bitmaps and ranges.
func TestBitmapScans(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	bit := func(b []byte, i int64) bool { return b[i>>3]&(1<<(i&7)) != 0 }
	for range 2000 {
		b := make([]byte, 1+rng.IntN(9))
		for i := range b {
			b[i] = 0xFF
			if rng.IntN(3) == 0 {
				b[i] &^= 1 << rng.IntN(8)
			}
		}
		n := int64(len(b) * 8)
		from := rng.Int64N(n + 1)
		to := from + rng.Int64N(n-from+1)
		wantIdx, wantOK := int64(0), false
		for i := from; i < to; i++ {
			if !bit(b, i) {
				wantIdx, wantOK = i, true
				break
			}
		}
		if idx, ok := firstZeroBit(b, from, to); ok != wantOK || idx != wantIdx {
			t.Fatalf("firstZeroBit(%08b, %d, %d) = %d, %v; want %d, %v", b, from, to, idx, ok, wantIdx, wantOK)
		}
		zeros := 0
		for i := int64(0); i < to; i++ {
			if !bit(b, i) {
				zeros++
			}
		}
		if got := countZeroBits(b, to); got != zeros {
			t.Fatalf("countZeroBits(%08b, %d) = %d, want %d", b, to, got, zeros)
		}
	}
}
