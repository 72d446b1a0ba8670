package codec

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strings"

	"github.com/jetinfer/jetinfer/trt"
)

// ValidateOptions tunes ValidateRequest.
type ValidateOptions struct {
	// RejectNonFinite fails float columns (float32, float16, bfloat16,
	// float64) that hold a NaN or an infinity, naming the column and row.
	// It reads every element, so it costs one pass over the data.
	RejectNonFinite bool
	// MaxRows, when positive, fails requests with more rows with
	// CodeResourceExhausted; decoding already enforces Limits.MaxRows.
	MaxRows int
	// Generated names the engine inputs that the worker fills itself
	// (attention masks, sequence lengths), mapped to what fills them
	// ("mask", "length"). They are not in the spec given to
	// ValidateRequest; a request that sends one gets an error saying that
	// the worker fills it, instead of "not an engine input".
	Generated map[string]string
}

// ValidateRequest checks a decoded request against an engine spec:
//
//   - the request has at least one row, and at most opts.MaxRows;
//   - every column is an engine input and every engine input has a column;
//   - dtypes are equal;
//   - a fixed-shape column's row shape matches the input's shape without
//     its batch dimension, where Dynamic matches any size;
//   - a ragged column is allowed only for an input whose first non-batch
//     dimension is Dynamic (the sequence dimension), and its position
//     shape matches the remaining dimensions;
//   - the sizes of the dynamic dimensions fit the [min, max] box of at
//     least one optimization profile, one profile for all columns
//     together (for a ragged column, its longest row must not exceed the
//     profile's max: shorter rows are padded);
//   - with opts.RejectNonFinite, float data holds no NaN or infinity.
//
// Errors are *Error with CodeInvalidArgument (CodeResourceExhausted for
// MaxRows) and name the column, the expected and the actual value.
func ValidateRequest(r *Request, spec trt.Spec, opts ValidateOptions) error {
	if r.Rows == 0 {
		return invalidf("", "request has no rows")
	}
	if opts.MaxRows > 0 && r.Rows > opts.MaxRows {
		return exhaustedf("", "request has %d rows, limit %d", r.Rows, opts.MaxRows)
	}
	for i := range r.Columns {
		if _, ok := spec.Input(r.Columns[i].Name); !ok {
			if kind, gen := opts.Generated[r.Columns[i].Name]; gen {
				return invalidf(r.Columns[i].Name, "is the engine's %s input, which the worker fills from the rows' sequence lengths; do not send it (send only %s)", kind, inputNames(spec))
			}
			return invalidf(r.Columns[i].Name, "not an engine input; engine inputs are %s", inputNames(spec))
		}
	}
	// fits[p] reports whether profile p accepts every column checked so far.
	fits := make([]bool, len(spec.Profiles))
	for i := range fits {
		fits[i] = true
	}
	for _, in := range spec.Inputs {
		c, ok := r.Column(in.Name)
		if !ok {
			return invalidf(in.Name, "missing; engine expects input %s with row shape %v", in.DType, in.RowShape())
		}
		if c.DType != in.DType {
			return invalidf(c.Name, "dtype %s, engine expects %s", c.DType, in.DType)
		}
		if err := checkRowShape(c, in); err != nil {
			return err
		}
		if len(spec.Profiles) == 0 {
			continue
		}
		fitsSome := false
		for p := range spec.Profiles {
			ok := profileFits(spec.Profiles[p], c)
			fits[p] = fits[p] && ok
			fitsSome = fitsSome || ok
		}
		if !fitsSome {
			return invalidf(c.Name, "%s is outside every optimization profile (%s)", describeDims(c), describeProfiles(spec.Profiles, in.Name))
		}
	}
	if len(spec.Profiles) > 0 && !anyTrue(fits) {
		return invalidf("", "each column fits some optimization profile, but no single profile accepts all columns together")
	}
	if opts.RejectNonFinite {
		for i := range r.Columns {
			if err := checkFinite(&r.Columns[i], r.Rows); err != nil {
				return err
			}
		}
	}
	return nil
}

func inputNames(spec trt.Spec) string {
	names := make([]string, len(spec.Inputs))
	for i, in := range spec.Inputs {
		names[i] = fmt.Sprintf("%q", in.Name)
	}
	return "[" + strings.Join(names, ", ") + "]"
}

// raggedShape formats the row shape of a ragged column, "len" standing for
// the sequence length.
func raggedShape(c *Column) string {
	s := c.RowShape.String()
	if len(c.RowShape) == 0 {
		return "[len]"
	}
	return "[len," + s[1:]
}

func checkRowShape(c *Column, in trt.TensorDesc) error {
	want := in.RowShape()
	if !c.Ragged {
		if !want.Matches(c.RowShape) {
			return invalidf(c.Name, "row shape %v, engine expects %v (-1: any size)", c.RowShape, want)
		}
		return nil
	}
	if len(want) == 0 || want[0] != trt.Dynamic {
		return invalidf(c.Name, "ragged (list) rows %s, engine expects fixed rows %v; ragged input needs a dynamic first non-batch dimension", raggedShape(c), want)
	}
	if !want[1:].Matches(c.RowShape) {
		return invalidf(c.Name, "ragged rows %s, engine expects %v (-1: any size)", raggedShape(c), want)
	}
	return nil
}

// maxPositions returns the longest row of a ragged column.
func maxPositions(c *Column) int64 {
	var m int32
	for i := 1; i < len(c.Offsets); i++ {
		m = max(m, c.Offsets[i]-c.Offsets[i-1])
	}
	return int64(m)
}

// profileFits reports whether profile p accepts column c (batch dimension
// aside: the batcher splits requests across batches).
func profileFits(p trt.Profile, c *Column) bool {
	lo, hi := p.Min[c.Name], p.Max[c.Name]
	dims := c.RowShape
	if c.Ragged {
		dims = append(trt.Shape{maxPositions(c)}, c.RowShape...)
	}
	if len(lo) != len(dims)+1 || len(hi) != len(dims)+1 {
		return false
	}
	for j, d := range dims {
		if d > hi[j+1] || (d < lo[j+1] && !(c.Ragged && j == 0)) {
			return false
		}
	}
	return true
}

func describeDims(c *Column) string {
	if c.Ragged {
		return fmt.Sprintf("longest row of %d positions (rows %s)", maxPositions(c), raggedShape(c))
	}
	return fmt.Sprintf("row shape %v", c.RowShape)
}

func describeProfiles(ps []trt.Profile, name string) string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteString("; ")
		}
		lo, hi := p.Min[name], p.Max[name]
		fmt.Fprintf(&b, "profile %d accepts ", i)
		if len(lo) != len(hi) || len(lo) == 0 {
			b.WriteString("nothing")
			continue
		}
		b.WriteByte('[')
		for j := 1; j < len(lo); j++ {
			if j > 1 {
				b.WriteByte(',')
			}
			if lo[j] == hi[j] {
				fmt.Fprintf(&b, "%d", lo[j])
			} else {
				fmt.Fprintf(&b, "%d..%d", lo[j], hi[j])
			}
		}
		b.WriteByte(']')
	}
	return b.String()
}

func anyTrue(v []bool) bool {
	for _, b := range v {
		if b {
			return true
		}
	}
	return false
}

// checkFinite fails on the first NaN or infinity of a float column.
func checkFinite(c *Column, rows int) error {
	var idx int
	var bits uint64
	switch c.DType {
	case trt.Float32:
		idx, bits = firstNonFinite32(c.Data)
	case trt.Float64:
		idx, bits = firstNonFinite64(c.Data)
	case trt.Float16:
		idx, bits = firstNonFinite16(c.Data, 0x7c00)
	case trt.BFloat16:
		idx, bits = firstNonFinite16(c.Data, 0x7f80)
	default:
		return nil
	}
	if idx < 0 {
		return nil
	}
	kind := "NaN"
	if isInf(c.DType, bits) {
		kind = "+Inf"
		if bits>>(8*c.DType.Size()-1) != 0 {
			kind = "-Inf"
		}
	}
	return invalidf(c.Name, "row %d holds %s; this engine accepts finite values only", rowOfElement(c, idx, rows), kind)
}

func isInf(d trt.DType, bits uint64) bool {
	switch d {
	case trt.Float32:
		return bits&0x7fffffff == 0x7f800000
	case trt.Float64:
		return bits&0x7fffffffffffffff == 0x7ff0000000000000
	case trt.Float16:
		return bits&0x7fff == 0x7c00
	case trt.BFloat16:
		return bits&0x7fff == 0x7f80
	}
	return false
}

// rowOfElement maps an element index to its row.
func rowOfElement(c *Column, idx, rows int) int {
	if !c.Ragged {
		per := max(c.PositionBytes()/c.DType.Size(), 1)
		return idx / per
	}
	per := 1
	for _, d := range c.RowShape {
		per *= int(d)
	}
	pos := idx / max(per, 1)
	return sort.Search(rows, func(i int) bool { return int(c.Offsets[i+1]) > pos })
}

// The scans test the exponent field: all ones means NaN or infinity.

func firstNonFinite32(b []byte) (int, uint64) {
	for i := 0; i+4 <= len(b); i += 4 {
		if v := binary.LittleEndian.Uint32(b[i:]); v&0x7f800000 == 0x7f800000 {
			return i / 4, uint64(v)
		}
	}
	return -1, 0
}

func firstNonFinite64(b []byte) (int, uint64) {
	for i := 0; i+8 <= len(b); i += 8 {
		if v := binary.LittleEndian.Uint64(b[i:]); v&0x7ff0000000000000 == 0x7ff0000000000000 {
			return i / 8, v
		}
	}
	return -1, 0
}

func firstNonFinite16(b []byte, exp uint16) (int, uint64) {
	for i := 0; i+2 <= len(b); i += 2 {
		if v := binary.LittleEndian.Uint16(b[i:]); v&exp == exp {
			return i / 2, uint64(v)
		}
	}
	return -1, 0
}
