package table

import (
	"encoding/json"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/jetinfer/jetinfer/codec"
)

// ShapeMetadataKey is the field metadata key under which a Parquet output
// keeps a tensor column's row shape (as JSON, e.g. [10]): arrow-go's
// Parquet writer has no FixedSizeList, so tensors are written as lists.
const ShapeMetadataKey = "jetinfer.shape"

// listToTensor turns a List column whose rows all hold prod(shape)
// elements into a column of type t (a fixed_shape_tensor over
// FixedSizeList), sharing the values. Parquet stores fixed-size lists as
// lists, so this is how a Parquet column becomes a tensor input.
func listToTensor(col arrow.Array, t *codec.FixedShapeTensorType) (arrow.Array, error) {
	l, ok := col.(*array.List)
	if !ok {
		return nil, fmt.Errorf("type %s: want a list", col.DataType())
	}
	fsl := t.StorageType().(*arrow.FixedSizeListType)
	k := int64(fsl.Len())
	n := l.Len()
	if l.NullN() > 0 {
		return nil, fmt.Errorf("%d null rows; tensor rows cannot be null", l.NullN())
	}
	off := l.Offsets()
	for i := range n {
		if got := int64(off[i+1] - off[i]); got != k {
			return nil, fmt.Errorf("row %d has %d elements, shape %v needs %d", i, got, t.Shape(), k)
		}
	}
	vals := array.NewSliceData(l.ListValues().Data(), int64(off[0]), int64(off[n]))
	defer vals.Release()
	if !arrow.TypeEqual(vals.DataType(), fsl.Elem()) {
		return nil, fmt.Errorf("elements are %s, the tensor's %s", vals.DataType(), fsl.Elem())
	}
	data := array.NewData(fsl, n, []*memory.Buffer{nil}, []arrow.ArrayData{vals}, 0, 0)
	defer data.Release()
	storage := array.MakeFromData(data)
	defer storage.Release()
	return array.NewExtensionArrayWithStorage(t, storage), nil
}

// tensorToList turns a fixed_shape_tensor or FixedSizeList column into a
// List column over the same values, for the Parquet writer, and returns
// the field to write it under (its row shape in ShapeMetadataKey).
func tensorToList(f arrow.Field, col arrow.Array, mem memory.Allocator) (arrow.Field, arrow.Array, bool) {
	nf, ok := listField(f)
	if !ok {
		return f, col, false
	}
	storage := col
	if ext, ok := col.(array.ExtensionArray); ok {
		storage = ext.Storage()
	}
	fa := storage.(*array.FixedSizeList)
	k := int32(fa.DataType().(*arrow.FixedSizeListType).Len())
	n := fa.Len()
	offs := memory.NewResizableBuffer(mem)
	offs.Resize((n + 1) * arrow.Int32SizeBytes)
	o := arrow.Int32Traits.CastFromBytes(offs.Bytes())
	base := int32(fa.Offset()) * k
	for i := range o {
		o[i] = base + int32(i)*k
	}
	var validity *memory.Buffer
	if fa.NullN() > 0 {
		validity = fa.Data().Buffers()[0]
	}
	data := array.NewData(nf.Type, n, []*memory.Buffer{validity, offs}, []arrow.ArrayData{fa.ListValues().Data()}, fa.NullN(), fa.Offset())
	offs.Release()
	defer data.Release()
	return nf, array.MakeFromData(data), true
}

// listField returns the field a fixed_shape_tensor or FixedSizeList
// field f is written under in Parquet: a list of its elements, its row
// shape in ShapeMetadataKey.
func listField(f arrow.Field) (arrow.Field, bool) {
	typ := f.Type
	var shape []int64
	if t, ok := typ.(*codec.FixedShapeTensorType); ok {
		shape, typ = t.Shape(), t.StorageType()
	} else if _, ok := typ.(arrow.ExtensionType); ok {
		return f, false
	}
	fsl, ok := typ.(*arrow.FixedSizeListType)
	if !ok {
		return f, false
	}
	if shape == nil {
		shape = []int64{int64(fsl.Len())}
	}
	lt := arrow.ListOfField(arrow.Field{Name: "element", Type: fsl.Elem(), Nullable: true})
	meta, _ := json.Marshal(shape)
	return arrow.Field{Name: f.Name, Type: lt, Nullable: f.Nullable,
		Metadata: arrow.NewMetadata([]string{ShapeMetadataKey}, []string{string(meta)})}, true
}
