package traffic

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/testengine"
)

// The IO of the models traffic is generated for: the digits model, whose
// IO the test engine copies by default.
const (
	// Input is the one input column: float32 rows of shape [8,8].
	Input = "pixels"
	// Output is the one output column: float32 rows of OutputWidth.
	Output = "logits"
	// OutputWidth is the number of values per output row.
	OutputWidth = 10
	// RowValues is the number of input values per row (8×8).
	RowValues = 64
)

// Dataset makes valid request bodies and checks their OK results.
type Dataset interface {
	// Rows is the number of distinct rows; row indexes wrap around it.
	Rows() int
	// Body encodes n rows starting at row lo (wrapping) as a request body
	// with an int64 id column.
	Body(lo, n int) []byte
	// Check verifies the body of an OK result to the request Body(lo, n):
	// n rows, the request's ids in order, each row's output right for
	// its input.
	Check(body []byte, lo, n int) error
}

// Encode writes a request body of cols and, when ids is not nil, an id
// column. It panics on an encoding error: the caller made cols.
func Encode(cols []trt.Tensor, ids []int64) []byte {
	var buf bytes.Buffer
	var err error
	if ids != nil {
		b := array.NewInt64Builder(memory.DefaultAllocator)
		b.AppendValues(ids, nil)
		idArr := b.NewInt64Array()
		b.Release()
		defer idArr.Release()
		err = codec.EncodeRequest(&buf, cols, idArr)
	} else {
		err = codec.EncodeRequest(&buf, cols, nil)
	}
	if err != nil {
		panic(fmt.Sprintf("traffic: encoding a request body: %v", err))
	}
	return buf.Bytes()
}

// encodeRows encodes rows (RowValues float32 each, concatenated) with ids.
func encodeRows(ids []int64, px []byte) []byte {
	return Encode([]trt.Tensor{{Name: Input, DType: trt.Float32, Shape: trt.Shape{int64(len(ids)), 8, 8}, Data: px}}, ids)
}

// SetValue returns a copy of a request body made by a Dataset whose input
// value number i (counting over all rows) is v.
func SetValue(body []byte, i int, v float32) ([]byte, error) {
	req, err := codec.DecodeRequest(body, codec.DefaultLimits())
	if err != nil {
		return nil, fmt.Errorf("decoding a request body: %w", err)
	}
	defer req.Release()
	px, ok := req.Column(Input)
	if !ok || 4*i+4 > len(px.Data) {
		return nil, fmt.Errorf("request body has no %s value %d", Input, i)
	}
	data := bytes.Clone(px.Data)
	binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
	var buf bytes.Buffer
	if err := codec.EncodeRequest(&buf, []trt.Tensor{{Name: Input, DType: trt.Float32,
		Shape: trt.Shape{int64(req.Rows), 8, 8}, Data: data}}, req.IDs); err != nil {
		return nil, fmt.Errorf("encoding a request body: %w", err)
	}
	return buf.Bytes(), nil
}

// result decodes an OK result body and checks its size and ids; it
// returns the output column's values and the ids.
func result(body []byte, wantIDs []int64) ([]float32, []int64, error) {
	res, err := codec.DecodeResult(body, codec.DefaultLimits())
	if err != nil {
		return nil, nil, fmt.Errorf("decoding result: %w", err)
	}
	defer res.Release()
	out, ok := res.Column(Output)
	ids, ok2 := res.IDs.(*array.Int64)
	if !ok || !ok2 || res.Rows != len(wantIDs) || len(out.Data) != 4*OutputWidth*res.Rows {
		return nil, nil, fmt.Errorf("result has %d rows (want %d), %s column %v, int64 ids %v", res.Rows, len(wantIDs), Output, ok, ok2)
	}
	got := slices.Clone(ids.Int64Values())
	for i, id := range got {
		if id != wantIDs[i] {
			return nil, nil, fmt.Errorf("result row %d has id %d, the request's row %d has id %d", i, id, i, wantIDs[i])
		}
	}
	return floats(out.Data), got, nil
}

func floats(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// Synthetic is a Dataset for trt/testengine with its default
// configuration: row r has id r and RowValues values derived from r, and
// its expected output is testengine.Compute of them, bit for bit. Any two
// rows differ, so a row answered in another row's place is caught.
type Synthetic struct{ rows int }

// NewSynthetic returns a synthetic dataset of rows distinct rows.
func NewSynthetic(rows int) *Synthetic { return &Synthetic{rows: max(rows, 1)} }

// Rows is the number of distinct rows.
func (s *Synthetic) Rows() int { return s.rows }

// Row returns the input values of row r.
func (s *Synthetic) Row(r int) []float32 {
	x := make([]float32, RowValues)
	for i := range x {
		// splitmix64 of (row, position): values k/64 in [-32, 32).
		z := uint64(r)*RowValues + uint64(i) + 0x9e3779b97f4a7c15
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		z ^= z >> 31
		x[i] = float32(int64(z%4096)-2048) / 64
	}
	return x
}

// Body encodes n rows from row lo (wrapping) with their ids.
func (s *Synthetic) Body(lo, n int) []byte {
	ids := make([]int64, n)
	px := make([]byte, 0, n*RowValues*4)
	for i := range n {
		r := (lo + i) % s.rows
		ids[i] = int64(r)
		for _, v := range s.Row(r) {
			px = binary.LittleEndian.AppendUint32(px, math.Float32bits(v))
		}
	}
	return encodeRows(ids, px)
}

// Check verifies that body holds, in order, the test engine's output for
// each of the n rows from lo.
func (s *Synthetic) Check(body []byte, lo, n int) error {
	want := make([]int64, n)
	for i := range want {
		want[i] = int64((lo + i) % s.rows)
	}
	out, ids, err := result(body, want)
	if err != nil {
		return err
	}
	exp := make([]float32, OutputWidth)
	for i, id := range ids {
		testengine.Compute(exp, s.Row(int(id)))
		for k, v := range exp {
			if got := out[i*OutputWidth+k]; math.Float32bits(got) != math.Float32bits(v) {
				return fmt.Errorf("row %d (id %d) output %d = %v, the test engine computes %v for that row", i, id, k, got, v)
			}
		}
	}
	return nil
}

// Digits is the digits model's test split and its PyTorch reference
// logits (testdata/digits_test.arrow and digits_ref.arrow), for workers
// that run the real model.
type Digits struct {
	ids    []int64
	pixels []byte // rows × RowValues float32
	ref    map[int64][]float32
}

// LoadDigits reads the test split and references from the testdata
// directory of the repository at root.
func LoadDigits(root string) (*Digits, error) {
	read := func(name string) (*codec.Request, error) {
		b, err := os.ReadFile(filepath.Join(root, "testdata", name))
		if err != nil {
			return nil, fmt.Errorf("reading testdata: %w", err)
		}
		r, err := codec.DecodeRequest(b, codec.Limits{MaxBodyBytes: len(b) + 1})
		if err != nil {
			return nil, fmt.Errorf("decoding %s: %w", name, err)
		}
		return r, nil
	}
	test, err := read("digits_test.arrow")
	if err != nil {
		return nil, err
	}
	defer test.Release()
	ref, err := read("digits_ref.arrow")
	if err != nil {
		return nil, err
	}
	defer ref.Release()
	px, ok := test.Column(Input)
	ids, ok2 := test.IDs.(*array.Int64)
	logits, ok3 := ref.Column(Output)
	refIDs, ok4 := ref.IDs.(*array.Int64)
	if !ok || !ok2 || !ok3 || !ok4 {
		return nil, errors.New("testdata digits files lack pixels, logits or int64 ids")
	}
	d := &Digits{ids: slices.Clone(ids.Int64Values()), pixels: slices.Clone(px.Data), ref: map[int64][]float32{}}
	for i, id := range refIDs.Int64Values() {
		d.ref[id] = floats(logits.Data[i*4*OutputWidth : (i+1)*4*OutputWidth])
	}
	return d, nil
}

// Rows is the number of rows of the test split.
func (d *Digits) Rows() int { return len(d.ids) }

// Body encodes n rows from row lo (wrapping) with their ids.
func (d *Digits) Body(lo, n int) []byte {
	ids := make([]int64, n)
	px := make([]byte, 0, n*RowValues*4)
	for i := range n {
		r := (lo + i) % len(d.ids)
		ids[i] = d.ids[r]
		px = append(px, d.pixels[r*RowValues*4:(r+1)*RowValues*4]...)
	}
	return encodeRows(ids, px)
}

// Check verifies that body holds, in order, logits for the n rows from lo
// that match the PyTorch references within 1e-5 + 1e-4·|reference|.
func (d *Digits) Check(body []byte, lo, n int) error {
	want := make([]int64, n)
	for i := range want {
		want[i] = d.ids[(lo+i)%len(d.ids)]
	}
	out, ids, err := result(body, want)
	if err != nil {
		return err
	}
	for i, id := range ids {
		ref := d.ref[id]
		if len(ref) == 0 {
			return fmt.Errorf("row %d has id %d without a reference", i, id)
		}
		for k, r := range ref {
			got := out[i*OutputWidth+k]
			if math.Abs(float64(got-r)) > 1e-5+1e-4*math.Abs(float64(r)) {
				return fmt.Errorf("id %d logit %d = %v, PyTorch reference %v", id, k, got, r)
			}
		}
	}
	return nil
}
