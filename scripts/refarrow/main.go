// Command refarrow turns the column dumps that `scripts/gen_models.py
// --refs-json` writes on a machine without pyarrow (<name>.arrow.json: each
// column's kind, dtype, shape or offsets, and its values as base64
// little-endian bytes) into the Arrow IPC streams the tests read
// (<name>.arrow), written with jetinfer's codec over arrow-go: tensor
// columns as arrow.fixed_shape_tensor, ragged columns as List<T> or
// List<FixedSizeList<T>[k]>, the "id" column as int64. The values are
// PyTorch's, byte for byte; only the Arrow framing comes from Go.
//
//	go run ./scripts/refarrow DIR
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
)

// column is one column of a dump, as gen_models.py writes it.
type column struct {
	Name    string  `json:"name"`
	Kind    string  `json:"kind"` // int64, tensor or ragged
	DType   string  `json:"dtype"`
	Data    string  `json:"data"`
	Shape   []int64 `json:"shape"`   // tensor: the row shape
	Width   *int64  `json:"width"`   // ragged: elements per position (null: one)
	Offsets []int32 `json:"offsets"` // ragged: rows+1 cumulative positions
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go run ./scripts/refarrow DIR")
		os.Exit(2)
	}
	dumps, err := filepath.Glob(filepath.Join(os.Args[1], "*.arrow.json"))
	if err == nil && len(dumps) == 0 {
		err = fmt.Errorf("no *.arrow.json in %s", os.Args[1])
	}
	for _, d := range dumps {
		if err != nil {
			break
		}
		err = convert(d)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "refarrow:", err)
		os.Exit(1)
	}
}

// convert writes the Arrow stream of one dump next to it and checks that
// it decodes to the same bytes.
func convert(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var dump struct{ Columns []column }
	if err := json.Unmarshal(raw, &dump); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	codec.RegisterTensorExtension()
	var ids *array.Int64
	var cols []trt.Tensor
	for _, c := range dump.Columns {
		t, err := c.tensor()
		if err != nil {
			return fmt.Errorf("%s: column %q: %w", path, c.Name, err)
		}
		if c.Name != codec.IDColumn {
			cols = append(cols, t)
			continue
		}
		b := array.NewInt64Builder(memory.DefaultAllocator)
		for i := 0; i < len(t.Data); i += 8 {
			b.Append(int64(leUint64(t.Data[i:])))
		}
		ids = b.NewInt64Array()
		b.Release()
		defer ids.Release()
	}
	if ids == nil {
		return fmt.Errorf("%s: no %q column", path, codec.IDColumn)
	}
	var buf bytes.Buffer
	if err := codec.EncodeRequest(&buf, cols, ids); err != nil {
		return fmt.Errorf("%s: encoding: %w", path, err)
	}
	req, err := codec.DecodeRequest(buf.Bytes(), codec.Limits{MaxBodyBytes: buf.Len() + 1})
	if err != nil {
		return fmt.Errorf("%s: decoding what was written: %w", path, err)
	}
	defer req.Release()
	for _, want := range cols {
		got, ok := req.Column(want.Name)
		if !ok || !bytes.Equal(got.Data, want.Data) {
			return fmt.Errorf("%s: column %q does not read back", path, want.Name)
		}
	}
	out := strings.TrimSuffix(path, ".json")
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %s (%d bytes, %d rows)\n", out, buf.Len(), ids.Len())
	return nil
}

// tensor is c as a trt.Tensor (the id column too, as int64 [rows]).
func (c column) tensor() (trt.Tensor, error) {
	data, err := base64.StdEncoding.DecodeString(c.Data)
	if err != nil {
		return trt.Tensor{}, err
	}
	dt, ok := map[string]trt.DType{"float32": trt.Float32, "float16": trt.Float16, "int64": trt.Int64}[c.DType]
	if !ok {
		return trt.Tensor{}, fmt.Errorf("dtype %q not handled", c.DType)
	}
	elem := int64(dt.Size())
	t := trt.Tensor{Name: c.Name, DType: dt, Data: data}
	switch c.Kind {
	case "int64":
		t.Shape = trt.Shape{int64(len(data)) / elem}
	case "tensor":
		per := elem
		for _, d := range c.Shape {
			per *= d
		}
		t.Shape = append(trt.Shape{int64(len(data)) / per}, c.Shape...)
	case "ragged":
		if len(c.Offsets) == 0 {
			return trt.Tensor{}, errors.New("ragged column without offsets")
		}
		t.Offsets = c.Offsets
		t.Shape = trt.Shape{int64(len(c.Offsets) - 1), trt.Dynamic}
		if c.Width != nil {
			t.Shape = append(t.Shape, *c.Width)
		}
	default:
		return trt.Tensor{}, fmt.Errorf("kind %q not handled", c.Kind)
	}
	return t, nil
}

func leUint64(b []byte) uint64 {
	var v uint64
	for i := 7; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}
