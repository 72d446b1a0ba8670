package codec

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// TensorExtensionName is the canonical Arrow extension name of fixed-shape
// tensors, as written by pyarrow (pa.fixed_shape_tensor), Arrow C++ and
// arrow-rs.
const TensorExtensionName = "arrow.fixed_shape_tensor"

// Field metadata that marks a uint16 column as bfloat16 bits. Arrow has no
// bfloat16 type; without this key a uint16 column is rejected.
const (
	DTypeMetadataKey = "jetinfer.dtype"
	BFloat16Value    = "bfloat16"
)

// maxExtensionDims bounds the rank accepted by FixedShapeTensorType.Deserialize,
// which arrow-go may call on untrusted metadata outside this package's
// decoder (that decoder applies Limits.MaxDims instead).
const maxExtensionDims = 64

// FixedShapeTensorType implements the canonical extension type
// arrow.fixed_shape_tensor, which arrow-go lacks: storage
// FixedSizeList<T>[prod(shape)], one tensor of the given shape per row,
// row-major. Metadata is JSON: {"shape":[...]} plus optional "dim_names"
// and "permutation"; only the identity permutation is accepted, because
// jetinfer moves row-major bytes without transposing.
type FixedShapeTensorType struct {
	arrow.ExtensionBase
	shape       []int64
	dimNames    []string
	permutation []int64 // nil, or the identity written explicitly by a producer
}

// NewFixedShapeTensorType returns the tensor type with element type elem
// and per-row shape shape; dimNames is nil or names every dimension. It
// registers the type with arrow-go on first use (see RegisterTensorExtension).
func NewFixedShapeTensorType(elem arrow.DataType, shape []int64, dimNames []string) (*FixedShapeTensorType, error) {
	RegisterTensorExtension()
	n, err := tensorListSize(shape)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		// arrow-go rejects fixed_size_list<T>[0] (FixedSizeListOf panics).
		return nil, fmt.Errorf("tensor shape %v has no elements; arrow-go cannot represent fixed_size_list of size 0", shape)
	}
	if len(dimNames) != 0 && len(dimNames) != len(shape) {
		return nil, fmt.Errorf("tensor type: %d dim_names for %d dimensions", len(dimNames), len(shape))
	}
	return &FixedShapeTensorType{
		ExtensionBase: arrow.ExtensionBase{Storage: arrow.FixedSizeListOf(n, elem)},
		shape:         slices.Clone(shape),
		dimNames:      slices.Clone(dimNames),
	}, nil
}

// tensorListSize returns prod(shape) as a FixedSizeList size.
func tensorListSize(shape []int64) (int32, error) {
	n := int64(1)
	for i, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("tensor shape %v: dimension %d is negative", shape, i)
		}
		if d != 0 && n > math.MaxInt32/d {
			return 0, fmt.Errorf("tensor shape %v has more than %d elements", shape, math.MaxInt32)
		}
		n *= d
	}
	return int32(n), nil
}

// Shape returns the per-row tensor shape. The caller must not modify it.
func (t *FixedShapeTensorType) Shape() []int64 { return t.shape }

// DimNames returns the dimension names, or nil. The caller must not modify it.
func (t *FixedShapeTensorType) DimNames() []string { return t.dimNames }

// ElemType returns the element type of the storage list.
func (t *FixedShapeTensorType) ElemType() arrow.DataType {
	return t.Storage.(*arrow.FixedSizeListType).Elem()
}

// ArrayType implements arrow.ExtensionType.
func (*FixedShapeTensorType) ArrayType() reflect.Type {
	return reflect.TypeOf(FixedShapeTensorArray{})
}

// ExtensionName implements arrow.ExtensionType.
func (*FixedShapeTensorType) ExtensionName() string { return TensorExtensionName }

// String implements fmt.Stringer.
func (t *FixedShapeTensorType) String() string {
	return fmt.Sprintf("extension<%s[value_type=%s, shape=%v]>", TensorExtensionName, t.ElemType(), t.shape)
}

// Serialize implements arrow.ExtensionType. The output matches Arrow C++
// and pyarrow byte for byte: {"shape":[8,8]} with no spaces, followed by
// "dim_names" and "permutation" only when set.
func (t *FixedShapeTensorType) Serialize() string {
	return string(appendTensorMetadata(nil, t.shape, t.dimNames, t.permutation))
}

func appendTensorMetadata(b []byte, shape []int64, dimNames []string, perm []int64) []byte {
	b = append(b, `{"shape":`...)
	b = appendInts(b, shape)
	if len(dimNames) > 0 {
		b = append(b, `,"dim_names":[`...)
		for i, n := range dimNames {
			if i > 0 {
				b = append(b, ',')
			}
			q, _ := json.Marshal(n) // a string always marshals
			b = append(b, q...)
		}
		b = append(b, ']')
	}
	if len(perm) > 0 {
		b = append(b, `,"permutation":`...)
		b = appendInts(b, perm)
	}
	return append(b, '}')
}

func appendInts(b []byte, v []int64) []byte {
	b = append(b, '[')
	for i, d := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, d, 10)
	}
	return append(b, ']')
}

// Deserialize implements arrow.ExtensionType.
func (*FixedShapeTensorType) Deserialize(storage arrow.DataType, data string) (arrow.ExtensionType, error) {
	fsl, ok := storage.(*arrow.FixedSizeListType)
	if !ok {
		return nil, fmt.Errorf("%s: storage type %s is not a fixed_size_list", TensorExtensionName, storage)
	}
	md, err := parseTensorMetadata(data, maxExtensionDims)
	if err != nil {
		return nil, err
	}
	if n, err := tensorListSize(md.shape); err != nil || n != fsl.Len() {
		return nil, fmt.Errorf("%s: shape %v does not match list size %d", TensorExtensionName, md.shape, fsl.Len())
	}
	return &FixedShapeTensorType{
		ExtensionBase: arrow.ExtensionBase{Storage: fsl},
		shape:         md.shape,
		dimNames:      md.dimNames,
		permutation:   md.permutation,
	}, nil
}

// ExtensionEquals implements arrow.ExtensionType.
func (t *FixedShapeTensorType) ExtensionEquals(other arrow.ExtensionType) bool {
	o, ok := other.(*FixedShapeTensorType)
	return ok && arrow.TypeEqual(t.Storage, o.Storage) &&
		slices.Equal(t.shape, o.shape) && slices.Equal(t.dimNames, o.dimNames) &&
		slices.Equal(t.permutation, o.permutation)
}

// FixedShapeTensorArray is the array type of FixedShapeTensorType; its
// Storage() is the FixedSizeList array.
type FixedShapeTensorArray struct {
	array.ExtensionArrayBase
}

var (
	_ arrow.ExtensionType  = (*FixedShapeTensorType)(nil)
	_ array.ExtensionArray = (*FixedShapeTensorArray)(nil)
)

var registerOnce sync.Once

// RegisterTensorExtension registers FixedShapeTensorType in arrow-go's
// process-wide extension registry, so that arrow-go's own IPC readers
// rebuild arrow.fixed_shape_tensor columns as this type. It is idempotent
// and safe for concurrent use; NewFixedShapeTensorType calls it, so no
// init function runs at import. If another package registered the name
// first, its type stays registered and this is a no-op: codec's decoder
// reads the extension metadata itself and never depends on the registry.
func RegisterTensorExtension() {
	registerOnce.Do(func() {
		proto := &FixedShapeTensorType{
			ExtensionBase: arrow.ExtensionBase{Storage: arrow.FixedSizeListOf(1, arrow.PrimitiveTypes.Float32)},
			shape:         []int64{1},
		}
		// An "already defined" error means some type holds the name; the
		// registry then serves that type, which is all registration is for.
		_ = arrow.RegisterExtensionType(proto)
	})
}

// tensorMetadata is the parsed ARROW:extension:metadata of a tensor column.
type tensorMetadata struct {
	shape       []int64
	dimNames    []string
	permutation []int64
}

// parseTensorMetadata parses and checks fixed_shape_tensor metadata. The
// returned error text is meant to follow a column name.
func parseTensorMetadata(data string, maxDims int) (tensorMetadata, error) {
	var raw struct {
		Shape       *[]int64 `json:"shape"`
		DimNames    []string `json:"dim_names"`
		Permutation []int64  `json:"permutation"`
	}
	if err := json.Unmarshal([]byte(data), &raw); err != nil {
		return tensorMetadata{}, fmt.Errorf("parsing %s metadata %.100q: %w", TensorExtensionName, data, err)
	}
	if raw.Shape == nil {
		return tensorMetadata{}, fmt.Errorf("%s metadata %.100q has no \"shape\"", TensorExtensionName, data)
	}
	md := tensorMetadata{shape: *raw.Shape, dimNames: raw.DimNames, permutation: raw.Permutation}
	if md.shape == nil {
		md.shape = []int64{}
	}
	if len(md.shape) > maxDims {
		return tensorMetadata{}, fmt.Errorf("%s shape has %d dimensions, limit %d", TensorExtensionName, len(md.shape), maxDims)
	}
	for i, d := range md.shape {
		if d < 0 {
			return tensorMetadata{}, fmt.Errorf("%s shape %v: dimension %d is negative", TensorExtensionName, md.shape, i)
		}
	}
	if len(md.dimNames) != 0 && len(md.dimNames) != len(md.shape) {
		return tensorMetadata{}, fmt.Errorf("%s has %d dim_names for shape %v", TensorExtensionName, len(md.dimNames), md.shape)
	}
	if len(md.permutation) != 0 {
		if len(md.permutation) != len(md.shape) {
			return tensorMetadata{}, fmt.Errorf("%s permutation %v does not match shape %v", TensorExtensionName, md.permutation, md.shape)
		}
		for i, p := range md.permutation {
			if p != int64(i) {
				return tensorMetadata{}, fmt.Errorf("%s permutation %v is not the identity; jetinfer accepts row-major tensors only (transpose before sending)", TensorExtensionName, md.permutation)
			}
		}
	}
	return md, nil
}
