package trt

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Dynamic marks a dimension whose size is chosen per batch.
const Dynamic int64 = -1

// Shape is a list of dimensions. In a TensorDesc, dimension 0 is the batch
// dimension and any dimension may be Dynamic; a concrete shape has no
// Dynamic dimension.
type Shape []int64

// String formats s as "[d0,d1,...]" with -1 for dynamic dimensions.
func (s Shape) String() string {
	var b strings.Builder
	b.WriteByte('[')
	for i, d := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(d, 10))
	}
	b.WriteByte(']')
	return b.String()
}

// IsConcrete reports whether every dimension is a known non-negative size.
func (s Shape) IsConcrete() bool {
	for _, d := range s {
		if d < 0 {
			return false
		}
	}
	return true
}

// NumElements returns the product of the dimensions. It fails for a shape
// with a dynamic or negative dimension, or when the product overflows
// maxElems (pass math.MaxInt64 for no bound). Decoders of untrusted input
// use the bound to reject absurd declared shapes before allocating.
func (s Shape) NumElements(maxElems int64) (int64, error) {
	n := int64(1)
	for i, d := range s {
		if d < 0 {
			return 0, fmt.Errorf("dimension %d of %v is not concrete", i, s)
		}
		if d != 0 && n > maxElems/d {
			return 0, fmt.Errorf("shape %v has more than %d elements", s, maxElems)
		}
		n *= d
	}
	return n, nil
}

// Equal reports whether s and o have the same dimensions.
func (s Shape) Equal(o Shape) bool {
	if len(s) != len(o) {
		return false
	}
	for i := range s {
		if s[i] != o[i] {
			return false
		}
	}
	return true
}

// Matches reports whether the concrete shape c fits the pattern s, where a
// Dynamic dimension of s matches any size.
func (s Shape) Matches(c Shape) bool {
	if len(s) != len(c) {
		return false
	}
	for i := range s {
		if s[i] != Dynamic && s[i] != c[i] {
			return false
		}
	}
	return true
}

// Clone returns a copy of s that shares no memory with it.
func (s Shape) Clone() Shape { return append(Shape(nil), s...) }

// ByteSize returns the size in bytes of a tensor of dtype d and concrete
// shape s, or an error if the shape is not concrete or the size exceeds
// math.MaxInt.
func ByteSize(d DType, s Shape) (int, error) {
	if !d.Valid() {
		return 0, fmt.Errorf("invalid dtype %v", d)
	}
	n, err := s.NumElements(math.MaxInt / int64(d.Size()))
	if err != nil {
		return 0, err
	}
	return int(n) * d.Size(), nil
}
