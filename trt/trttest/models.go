package trttest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"

	"github.com/jetinfer/jetinfer/trt"
)

// Names of the test models, as passed to an OpenFunc.
const (
	Digits     = "digits"
	DigitsFP16 = "digits_fp16"
	SeqEncoder = "seq_encoder"
	Tagger     = "tagger"
	TaggerFP16 = "tagger_fp16"
)

// Tolerances: a value passes when |got-want| <= ATol + RTol*|want|.
const (
	RTolFP32 = 1e-4
	ATolFP32 = 1e-5
	RTolFP16 = 2e-3 // about two units in the last place of float16
	ATolFP16 = 1e-3
)

// Model is one test model and the reference rows an engine for it must
// reproduce.
type Model struct {
	// Name identifies the model to the backend's OpenFunc.
	Name string
	// Samples are the reference rows.
	Samples []Sample
	// RTol and ATol bound the difference from the references.
	RTol, ATol float64
}

// Sample is one reference row: inputs and the expected outputs, each a
// tensor of one row (Shape without the batch dimension). Inputs and Want
// are matched to the engine's Spec by name.
type Sample struct {
	ID     int64
	Inputs []trt.Tensor
	Want   []trt.Tensor
}

// LoadModels loads every test model's references from the testdata
// directory dir. The transformer taggers are included when their
// reference files (generated with PyTorch by scripts/gen_models.py) are
// present.
func LoadModels(dir string) ([]Model, error) {
	var ms []Model
	loads := []func(string) (Model, error){LoadDigits, LoadDigitsFP16, LoadSeqEncoder}
	for _, opt := range []struct {
		file string
		load func(string) (Model, error)
	}{{"tagger_ref.arrow", LoadTagger}, {"tagger_fp16_ref.arrow", LoadTaggerFP16}} {
		if _, err := os.Stat(filepath.Join(dir, opt.file)); err == nil {
			loads = append(loads, opt.load)
		}
	}
	for _, load := range loads {
		m, err := load(dir)
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	return ms, nil
}

// LoadDigits loads the 360 digits test rows: input "pixels" float32 [8,8],
// output "logits" float32 [10], from digits_test.arrow and digits_ref.arrow.
func LoadDigits(dir string) (Model, error) {
	test, err := readArrow(filepath.Join(dir, "digits_test.arrow"))
	if err != nil {
		return Model{}, err
	}
	ref, err := readArrow(filepath.Join(dir, "digits_ref.arrow"))
	if err != nil {
		return Model{}, err
	}
	ids, err := int64Column(test, "id")
	if err != nil {
		return Model{}, err
	}
	refIDs, err := int64Column(ref, "id")
	if err != nil {
		return Model{}, err
	}
	pixels, err := tensorColumn(test, "pixels", 4, 64)
	if err != nil {
		return Model{}, err
	}
	logits, err := tensorColumn(ref, "logits", 4, 10)
	if err != nil {
		return Model{}, err
	}
	if !equalInt64s(ids, refIDs) {
		return Model{}, errors.New("digits_test.arrow and digits_ref.arrow list different ids")
	}
	m := Model{Name: Digits, RTol: RTolFP32, ATol: ATolFP32}
	for i, id := range ids {
		m.Samples = append(m.Samples, Sample{
			ID:     id,
			Inputs: []trt.Tensor{{Name: "pixels", DType: trt.Float32, Shape: trt.Shape{8, 8}, Data: pixels[i]}},
			Want:   []trt.Tensor{{Name: "logits", DType: trt.Float32, Shape: trt.Shape{10}, Data: logits[i]}},
		})
	}
	return m, nil
}

// LoadDigitsFP16 loads the digits test rows for digits_fp16.onnx: input
// "pixels" float16 [8,8], output "logits" float16 [10], as raw bits, from
// digits_fp16_ref.arrow.
func LoadDigitsFP16(dir string) (Model, error) {
	ref, err := readArrow(filepath.Join(dir, "digits_fp16_ref.arrow"))
	if err != nil {
		return Model{}, err
	}
	ids, err := int64Column(ref, "id")
	if err != nil {
		return Model{}, err
	}
	pixels, err := tensorColumn(ref, "pixels", 2, 64)
	if err != nil {
		return Model{}, err
	}
	logits, err := tensorColumn(ref, "logits", 2, 10)
	if err != nil {
		return Model{}, err
	}
	m := Model{Name: DigitsFP16, RTol: RTolFP16, ATol: ATolFP16}
	for i, id := range ids {
		m.Samples = append(m.Samples, Sample{
			ID:     id,
			Inputs: []trt.Tensor{{Name: "pixels", DType: trt.Float16, Shape: trt.Shape{8, 8}, Data: pixels[i]}},
			Want:   []trt.Tensor{{Name: "logits", DType: trt.Float16, Shape: trt.Shape{10}, Data: logits[i]}},
		})
	}
	return m, nil
}

// LoadSeqEncoder loads the 24 ragged sequences of seq_ref.arrow: inputs
// "x" float32 [len,16] and "mask" float32 [len] (all ones), output "y"
// float32 [8], computed by PyTorch on each row unpadded.
func LoadSeqEncoder(dir string) (Model, error) {
	ref, err := readArrow(filepath.Join(dir, "seq_ref.arrow"))
	if err != nil {
		return Model{}, err
	}
	ids, err := int64Column(ref, "id")
	if err != nil {
		return Model{}, err
	}
	xs, err := raggedColumn(ref, "x", 16)
	if err != nil {
		return Model{}, err
	}
	ys, err := tensorColumn(ref, "y", 4, 8)
	if err != nil {
		return Model{}, err
	}
	m := Model{Name: SeqEncoder, RTol: RTolFP32, ATol: ATolFP32}
	for i, id := range ids {
		n := int64(len(xs[i]) / (16 * 4))
		mask := make([]byte, 4*n)
		for j := range n {
			binary.LittleEndian.PutUint32(mask[4*j:], math.Float32bits(1))
		}
		m.Samples = append(m.Samples, Sample{
			ID: id,
			Inputs: []trt.Tensor{
				{Name: "x", DType: trt.Float32, Shape: trt.Shape{n, 16}, Data: xs[i]},
				{Name: "mask", DType: trt.Float32, Shape: trt.Shape{n}, Data: mask},
			},
			Want: []trt.Tensor{{Name: "y", DType: trt.Float32, Shape: trt.Shape{8}, Data: ys[i]}},
		})
	}
	return m, nil
}

// LoadTagger loads the transformer tagger's reference rows from
// tagger_ref.arrow: inputs "input_ids" int64 [len] and "attention_mask"
// int64 [len] (all ones), outputs "logits" float32 [len, 9] and "pooled"
// float32 [128], computed by PyTorch on each row unpadded. Rows of zero
// positions are left out: an engine never sees one alone (the worker pads
// it to a row of padding, which testZeroPaddingRows covers).
func LoadTagger(dir string) (Model, error) {
	ref, err := readArrow(filepath.Join(dir, "tagger_ref.arrow"))
	if err != nil {
		return Model{}, err
	}
	ids, err := int64Column(ref, "id")
	if err != nil {
		return Model{}, err
	}
	tokens, err := raggedRows(ref, "input_ids", 0, 8)
	if err != nil {
		return Model{}, err
	}
	logits, err := raggedRows(ref, "logits", 9, 4)
	if err != nil {
		return Model{}, err
	}
	pooled, err := tensorColumn(ref, "pooled", 4, 128)
	if err != nil {
		return Model{}, err
	}
	m := Model{Name: Tagger, RTol: RTolFP32, ATol: ATolFP32}
	for i, id := range ids {
		n := int64(len(tokens[i]) / 8)
		if n == 0 {
			continue
		}
		mask := make([]byte, 8*n)
		for j := range n {
			mask[8*j] = 1
		}
		m.Samples = append(m.Samples, Sample{
			ID: id,
			Inputs: []trt.Tensor{
				{Name: "input_ids", DType: trt.Int64, Shape: trt.Shape{n}, Data: tokens[i]},
				{Name: "attention_mask", DType: trt.Int64, Shape: trt.Shape{n}, Data: mask},
			},
			Want: []trt.Tensor{
				{Name: "logits", DType: trt.Float32, Shape: trt.Shape{n, 9}, Data: logits[i]},
				{Name: "pooled", DType: trt.Float32, Shape: trt.Shape{128}, Data: pooled[i]},
			},
		})
	}
	return m, nil
}

// LoadTaggerFP16 loads tagger_fp16_ref.arrow: inputs "x" float16 [len, 32]
// and "mask" float16 [len] (all ones), output "y" float16 [len, 9], as raw
// bits; rows of zero positions are left out as in LoadTagger.
func LoadTaggerFP16(dir string) (Model, error) {
	ref, err := readArrow(filepath.Join(dir, "tagger_fp16_ref.arrow"))
	if err != nil {
		return Model{}, err
	}
	ids, err := int64Column(ref, "id")
	if err != nil {
		return Model{}, err
	}
	xs, err := raggedRows(ref, "x", 32, 2)
	if err != nil {
		return Model{}, err
	}
	ys, err := raggedRows(ref, "y", 9, 2)
	if err != nil {
		return Model{}, err
	}
	m := Model{Name: TaggerFP16, RTol: RTolFP16, ATol: ATolFP16}
	for i, id := range ids {
		n := int64(len(xs[i]) / (32 * 2))
		if n == 0 {
			continue
		}
		mask := make([]byte, 2*n)
		for j := range n {
			binary.LittleEndian.PutUint16(mask[2*j:], 0x3c00) // 1.0
		}
		m.Samples = append(m.Samples, Sample{
			ID: id,
			Inputs: []trt.Tensor{
				{Name: "x", DType: trt.Float16, Shape: trt.Shape{n, 32}, Data: xs[i]},
				{Name: "mask", DType: trt.Float16, Shape: trt.Shape{n}, Data: mask},
			},
			Want: []trt.Tensor{{Name: "y", DType: trt.Float16, Shape: trt.Shape{n, 9}, Data: ys[i]}},
		})
	}
	return m, nil
}

// raggedRows returns each row of a List<T> (width 0) or
// List<FixedSizeList<T>[width]> column as raw bytes of shape [len] or
// [len, width], with T of elemSize bytes.
func raggedRows(t *arrowTable, name string, width, elemSize int) ([][]byte, error) {
	chunks, err := t.column(name)
	if err != nil {
		return nil, err
	}
	var rows [][]byte
	for _, c := range chunks {
		l, ok := c.(*array.List)
		if !ok {
			return nil, fmt.Errorf("%s: column %q is %v, want a list", t.path, name, c.DataType())
		}
		values, base, per := l.ListValues(), 0, 1
		if width > 0 {
			inner, ok := values.(*array.FixedSizeList)
			if !ok || int(inner.DataType().(*arrow.FixedSizeListType).Len()) != width || inner.NullN() != 0 {
				return nil, fmt.Errorf("%s: column %q has items %v, want fixed_size_list[%d]", t.path, name, values.DataType(), width)
			}
			values, base, per = inner.ListValues(), inner.Offset(), width
		}
		for i := range l.Len() {
			start, end := l.ValueOffsets(i)
			b, err := rawValues(values, (base+int(start))*per, (base+int(end))*per, elemSize)
			if err != nil {
				return nil, fmt.Errorf("%s: column %q: %w", t.path, name, err)
			}
			rows = append(rows, b)
		}
	}
	return rows, nil
}

// arrowTable is the columns of one Arrow IPC stream, record batches
// concatenated per column.
type arrowTable struct {
	path    string
	columns map[string][]arrow.Array
}

// readArrow reads the whole Arrow IPC stream at path. The arrays are
// backed by Go memory and are not released.
func readArrow(path string) (*arrowTable, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening reference data: %w", err)
	}
	defer f.Close()
	r, err := ipc.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("reading Arrow stream %s: %w", path, err)
	}
	defer r.Release()
	t := &arrowTable{path: path, columns: map[string][]arrow.Array{}}
	for r.Next() {
		rec := r.RecordBatch()
		for i, field := range rec.Schema().Fields() {
			col := rec.Column(i)
			col.Retain()
			t.columns[field.Name] = append(t.columns[field.Name], col)
		}
	}
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("reading Arrow stream %s: %w", path, err)
	}
	return t, nil
}

// column returns the chunks of column name, with extension arrays (such as
// arrow.fixed_shape_tensor, when some package registered it) replaced by
// their storage, after checking for nulls.
func (t *arrowTable) column(name string) ([]arrow.Array, error) {
	chunks, ok := t.columns[name]
	if !ok {
		return nil, fmt.Errorf("%s: no column %q", t.path, name)
	}
	out := make([]arrow.Array, len(chunks))
	for i, c := range chunks {
		if ext, ok := c.(array.ExtensionArray); ok {
			c = ext.Storage()
		}
		if c.NullN() != 0 {
			return nil, fmt.Errorf("%s: column %q has nulls", t.path, name)
		}
		out[i] = c
	}
	return out, nil
}

func int64Column(t *arrowTable, name string) ([]int64, error) {
	chunks, err := t.column(name)
	if err != nil {
		return nil, err
	}
	var out []int64
	for _, c := range chunks {
		a, ok := c.(*array.Int64)
		if !ok {
			return nil, fmt.Errorf("%s: column %q is %v, want int64", t.path, name, c.DataType())
		}
		out = append(out, a.Int64Values()...)
	}
	return out, nil
}

// tensorColumn returns each row of a FixedSizeList<T>[size] column (the
// storage of arrow.fixed_shape_tensor) as raw little-endian bytes, with T
// of width elemSize.
func tensorColumn(t *arrowTable, name string, elemSize, size int) ([][]byte, error) {
	chunks, err := t.column(name)
	if err != nil {
		return nil, err
	}
	var rows [][]byte
	for _, c := range chunks {
		fsl, ok := c.(*array.FixedSizeList)
		if !ok || int(fsl.DataType().(*arrow.FixedSizeListType).Len()) != size {
			return nil, fmt.Errorf("%s: column %q is %v, want fixed_size_list[%d]", t.path, name, c.DataType(), size)
		}
		for i := range fsl.Len() {
			start, end := fsl.ValueOffsets(i)
			b, err := rawValues(fsl.ListValues(), int(start), int(end), elemSize)
			if err != nil {
				return nil, fmt.Errorf("%s: column %q: %w", t.path, name, err)
			}
			rows = append(rows, b)
		}
	}
	return rows, nil
}

// raggedColumn returns each row of a List<FixedSizeList<float32>[width]>
// column as raw bytes of shape [len, width].
func raggedColumn(t *arrowTable, name string, width int) ([][]byte, error) {
	chunks, err := t.column(name)
	if err != nil {
		return nil, err
	}
	var rows [][]byte
	for _, c := range chunks {
		l, ok := c.(*array.List)
		if !ok {
			return nil, fmt.Errorf("%s: column %q is %v, want list<fixed_size_list<float>[%d]>", t.path, name, c.DataType(), width)
		}
		inner, ok := l.ListValues().(*array.FixedSizeList)
		if !ok || int(inner.DataType().(*arrow.FixedSizeListType).Len()) != width || inner.NullN() != 0 {
			return nil, fmt.Errorf("%s: column %q has items %v, want fixed_size_list<float>[%d]", t.path, name, l.ListValues().DataType(), width)
		}
		for i := range l.Len() {
			start, end := l.ValueOffsets(i)
			b, err := rawValues(inner.ListValues(), (inner.Offset()+int(start))*width, (inner.Offset()+int(end))*width, 4)
			if err != nil {
				return nil, fmt.Errorf("%s: column %q: %w", t.path, name, err)
			}
			rows = append(rows, b)
		}
	}
	return rows, nil
}

// rawValues copies elements [start, end) of a fixed-width primitive array.
func rawValues(a arrow.Array, start, end, elemSize int) ([]byte, error) {
	fw, ok := a.DataType().(arrow.FixedWidthDataType)
	if !ok || fw.BitWidth() != 8*elemSize || a.NullN() != 0 {
		return nil, fmt.Errorf("values are %v, want %d-byte elements without nulls", a.DataType(), elemSize)
	}
	bufs := a.Data().Buffers()
	if len(bufs) < 2 || bufs[1] == nil {
		return nil, errors.New("values have no data buffer")
	}
	off := a.Data().Offset()
	data := bufs[1].Bytes()
	lo, hi := (off+start)*elemSize, (off+end)*elemSize
	if start < 0 || end < start || end > a.Len() || hi > len(data) {
		return nil, fmt.Errorf("values [%d, %d) out of range", start, end)
	}
	return append([]byte(nil), data[lo:hi]...), nil
}

func equalInt64s(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
