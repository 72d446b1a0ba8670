package codec

import (
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/jetinfer/jetinfer/trt"
)

// Schema.fbs slots and enum values used by the decoder.
const (
	schemaSlotEndianness = 0
	schemaSlotFields     = 1

	fieldSlotName       = 0
	fieldSlotNullable   = 1
	fieldSlotTypeType   = 2
	fieldSlotType       = 3
	fieldSlotDictionary = 4
	fieldSlotChildren   = 5
	fieldSlotMetadata   = 6

	kvSlotKey   = 0
	kvSlotValue = 1

	intSlotBitWidth = 0
	intSlotSigned   = 1
	fpSlotPrecision = 0
	fslSlotListSize = 0

	endianLittle = 0

	precisionHalf   = 0
	precisionSingle = 1
	precisionDouble = 2
)

// Arrow type union tags (Schema.fbs enum Type).
const (
	fbTypeInt           = 2
	fbTypeFloatingPoint = 3
	fbTypeUtf8          = 5
	fbTypeBool          = 6
	fbTypeList          = 12
	fbTypeFixedSizeList = 16
	fbTypeLargeUtf8     = 20
)

var fbTypeNames = [...]string{
	"none", "null", "int", "floating_point", "binary", "utf8", "bool", "decimal",
	"date", "time", "timestamp", "interval", "list", "struct", "union",
	"fixed_size_binary", "fixed_size_list", "map", "duration", "large_binary",
	"large_utf8", "large_list", "run_end_encoded", "binary_view", "utf8_view",
	"list_view", "large_list_view",
}

// Extension metadata keys (Arrow columnar format, "Extension Types").
const (
	extNameKey     = "ARROW:extension:name"
	extMetadataKey = "ARROW:extension:metadata"
)

// IDColumn is the name of the optional id column.
const IDColumn = "id"

// maxFieldDepth bounds schema nesting: List<FixedSizeList<T>> is the
// deepest accepted column.
const maxFieldDepth = 3

// wireField is a schema field as read from the IPC metadata.
type wireField struct {
	name      string
	typ       uint8
	bitWidth  int32 // Int
	signed    bool  // Int
	precision int16 // FloatingPoint
	listSize  int32 // FixedSizeList
	dict      bool
	meta      [][2]string
	children  []wireField
}

func (f *wireField) metadata(key string) (string, bool) {
	for _, kv := range f.meta {
		if kv[0] == key {
			return kv[1], true
		}
	}
	return "", false
}

// typeName names the Arrow type of f for error messages.
func (f *wireField) typeName() string {
	switch f.typ {
	case fbTypeInt:
		if f.signed {
			return fmt.Sprintf("int%d", f.bitWidth)
		}
		return fmt.Sprintf("uint%d", f.bitWidth)
	case fbTypeFloatingPoint:
		switch f.precision {
		case precisionHalf:
			return "float16"
		case precisionSingle:
			return "float32"
		case precisionDouble:
			return "float64"
		}
		return fmt.Sprintf("floating_point(precision %d)", f.precision)
	case fbTypeFixedSizeList:
		if len(f.children) == 1 {
			return fmt.Sprintf("fixed_size_list<%s>[%d]", f.children[0].typeName(), f.listSize)
		}
	case fbTypeList:
		if len(f.children) == 1 {
			return fmt.Sprintf("list<%s>", f.children[0].typeName())
		}
	}
	if int(f.typ) < len(fbTypeNames) {
		return fbTypeNames[f.typ]
	}
	return fmt.Sprintf("type(%d)", f.typ)
}

// readSchema parses a Schema message header into its top-level fields.
func readSchema(h fbTable, lim Limits) ([]wireField, error) {
	endian, err := h.int16(schemaSlotEndianness, endianLittle)
	if err != nil {
		return nil, invalidf("", "reading schema endianness: %v", err)
	}
	if endian != endianLittle {
		return nil, invalidf("", "schema is big-endian; jetinfer accepts little-endian IPC only")
	}
	fv, err := h.vector(schemaSlotFields, 4)
	if err != nil {
		return nil, invalidf("", "reading schema fields: %v", err)
	}
	if fv.n > lim.MaxColumns {
		return nil, exhaustedf("", "schema has %d columns, limit %d", fv.n, lim.MaxColumns)
	}
	fields := make([]wireField, fv.n)
	for i := range fields {
		t, err := fv.tableAt(i)
		if err != nil {
			return nil, invalidf("", "reading schema field %d: %v", i, err)
		}
		if fields[i], err = readField(t, 1); err != nil {
			return nil, invalidf("", "reading schema field %d: %v", i, err)
		}
	}
	return fields, nil
}

// readField parses one Field table and, up to maxFieldDepth, its children.
func readField(t fbTable, depth int) (wireField, error) {
	var f wireField
	var err error
	if f.name, err = t.str(fieldSlotName); err != nil {
		return f, err
	}
	if f.typ, err = t.uint8(fieldSlotTypeType, 0); err != nil {
		return f, err
	}
	typ, hasType, err := t.table(fieldSlotType)
	if err != nil {
		return f, err
	}
	if hasType {
		switch f.typ {
		case fbTypeInt:
			if f.bitWidth, err = typ.int32(intSlotBitWidth, 0); err != nil {
				return f, err
			}
			var s uint8
			if s, err = typ.uint8(intSlotSigned, 0); err != nil {
				return f, err
			}
			f.signed = s != 0
		case fbTypeFloatingPoint:
			if f.precision, err = typ.int16(fpSlotPrecision, precisionHalf); err != nil {
				return f, err
			}
		case fbTypeFixedSizeList:
			if f.listSize, err = typ.int32(fslSlotListSize, 0); err != nil {
				return f, err
			}
		}
	}
	if _, f.dict, err = t.ref(fieldSlotDictionary); err != nil {
		return f, err
	}
	mv, err := t.vector(fieldSlotMetadata, 4)
	if err != nil {
		return f, err
	}
	for i := range mv.n {
		// Keep only the keys the decoder reads, so that a schema with
		// many metadata entries costs no allocations.
		kv, err := mv.tableAt(i)
		if err != nil {
			return f, err
		}
		key, err := kv.bytes(kvSlotKey)
		if err != nil {
			return f, err
		}
		var k string
		switch string(key) { // compared without allocating
		case extNameKey:
			k = extNameKey
		case extMetadataKey:
			k = extMetadataKey
		case DTypeMetadataKey:
			k = DTypeMetadataKey
		default:
			continue
		}
		v, err := kv.str(kvSlotValue)
		if err != nil {
			return f, err
		}
		f.meta = append(f.meta, [2]string{k, v})
	}
	cv, err := t.vector(fieldSlotChildren, 4)
	if err != nil {
		return f, err
	}
	if cv.n > 0 {
		if depth >= maxFieldDepth || cv.n > 1 {
			// Nothing accepted nests deeper or has more than one child;
			// record the shape of the problem without reading further.
			f.children = make([]wireField, 0)
			return f, nil
		}
		c, err := cv.tableAt(0)
		if err != nil {
			return f, err
		}
		child, err := readField(c, depth+1)
		if err != nil {
			return f, err
		}
		f.children = []wireField{child}
	}
	return f, nil
}

// colKind tells how a column's rows are laid out.
type colKind uint8

const (
	kindFixed  colKind = iota // every row has RowShape
	kindRagged                // List<...>: rows have their own number of positions
	kindID                    // the echoed id column
)

// colPlan is how the decoder reads one top-level field.
type colPlan struct {
	name     string
	kind     colKind
	dtype    trt.DType // tensor columns: element type
	shape    trt.Shape // fixed: row shape; ragged: position shape
	elems    int64     // elements per row (fixed) or per position (ragged)
	nested   bool      // fixed: FixedSizeList storage; ragged: List<FixedSizeList>
	idType   arrow.DataType
	nodes    int // field nodes this column consumes in a record batch
	buffers  int // buffers this column consumes in a record batch
	boolBits bool
}

// planColumn decides how to decode top-level field f, or explains why it
// cannot be decoded.
func planColumn(f *wireField, lim Limits) (colPlan, error) {
	p := colPlan{name: f.name}
	if f.dict {
		return p, invalidf(f.name, "dictionary-encoded columns are not supported")
	}
	if f.name == IDColumn {
		return planID(f)
	}
	ext, hasExt := f.metadata(extNameKey)
	if hasExt && ext != TensorExtensionName {
		return p, invalidf(f.name, "unsupported extension type %q (storage %s); expected %s or a plain column", ext, f.typeName(), TensorExtensionName)
	}
	switch f.typ {
	case fbTypeFixedSizeList:
		if len(f.children) != 1 {
			return p, invalidf(f.name, "malformed %s: %d children", f.typeName(), len(f.children))
		}
		if f.listSize < 0 {
			return p, invalidf(f.name, "negative fixed_size_list size %d", f.listSize)
		}
		p.kind, p.nested, p.nodes, p.buffers = kindFixed, true, 2, 3
		p.elems = int64(f.listSize)
		if hasExt {
			md, err := columnTensorMetadata(f, f.name, lim)
			if err != nil {
				return p, err
			}
			p.shape = md
		} else {
			p.shape = trt.Shape{int64(f.listSize)}
		}
		return p, planElem(&p, f, &f.children[0])
	case fbTypeList:
		if hasExt {
			return p, invalidf(f.name, "%s storage must be a fixed_size_list, got %s", TensorExtensionName, f.typeName())
		}
		if len(f.children) != 1 {
			return p, invalidf(f.name, "malformed %s: %d children", f.typeName(), len(f.children))
		}
		p.kind = kindRagged
		c := &f.children[0]
		if c.typ != fbTypeFixedSizeList {
			p.nodes, p.buffers, p.elems, p.shape = 2, 4, 1, trt.Shape{}
			return p, planElem(&p, f, c)
		}
		if len(c.children) != 1 || c.listSize < 0 {
			return p, invalidf(f.name, "malformed %s", f.typeName())
		}
		p.nested, p.nodes, p.buffers, p.elems = true, 3, 5, int64(c.listSize)
		if cext, ok := c.metadata(extNameKey); ok {
			if cext != TensorExtensionName {
				return p, invalidf(f.name, "unsupported extension type %q for list items", cext)
			}
			md, err := columnTensorMetadata(c, f.name, lim)
			if err != nil {
				return p, err
			}
			p.shape = md
		} else {
			p.shape = trt.Shape{int64(c.listSize)}
		}
		if 1+len(p.shape) > lim.MaxDims {
			return p, exhaustedf(f.name, "rows have %d dimensions, limit %d", 1+len(p.shape), lim.MaxDims)
		}
		return p, planElem(&p, f, &c.children[0])
	case fbTypeInt, fbTypeFloatingPoint, fbTypeBool:
		if hasExt {
			return p, invalidf(f.name, "%s storage must be a fixed_size_list, got %s", TensorExtensionName, f.typeName())
		}
		p.kind, p.nodes, p.buffers, p.elems, p.shape = kindFixed, 1, 2, 1, trt.Shape{}
		return p, planElem(&p, f, f)
	}
	return p, invalidf(f.name, "unsupported column type %s; expected %s, fixed_size_list<T>, list<T>, list<fixed_size_list<T>> or a primitive T", f.typeName(), TensorExtensionName)
}

// columnTensorMetadata reads and checks the fixed_shape_tensor metadata of
// f, whose storage is a FixedSizeList; col names the column in errors.
func columnTensorMetadata(f *wireField, col string, lim Limits) (trt.Shape, error) {
	data, _ := f.metadata(extMetadataKey)
	md, err := parseTensorMetadata(data, maxExtensionDims)
	if err != nil {
		return nil, invalidf(col, "%v", err)
	}
	if len(md.shape) > lim.MaxDims {
		return nil, exhaustedf(col, "tensor shape %v has %d dimensions, limit %d", md.shape, len(md.shape), lim.MaxDims)
	}
	n, err := trt.Shape(md.shape).NumElements(int64(f.listSize))
	if err != nil || n != int64(f.listSize) {
		return nil, invalidf(col, "tensor shape %v does not match fixed_size_list size %d", md.shape, f.listSize)
	}
	return trt.Shape(md.shape), nil
}

// planElem sets the element dtype of p from leaf, the innermost field;
// col is the top-level field, whose metadata may mark bfloat16.
func planElem(p *colPlan, col, leaf *wireField) error {
	if len(leaf.children) != 0 || leaf.dict {
		return invalidf(col.name, "unsupported element type %s", leaf.typeName())
	}
	switch leaf.typ {
	case fbTypeFloatingPoint:
		switch leaf.precision {
		case precisionHalf:
			p.dtype = trt.Float16
		case precisionSingle:
			p.dtype = trt.Float32
		case precisionDouble:
			p.dtype = trt.Float64
		}
	case fbTypeInt:
		switch {
		case leaf.bitWidth == 8 && leaf.signed:
			p.dtype = trt.Int8
		case leaf.bitWidth == 8:
			p.dtype = trt.Uint8
		case leaf.bitWidth == 32 && leaf.signed:
			p.dtype = trt.Int32
		case leaf.bitWidth == 64 && leaf.signed:
			p.dtype = trt.Int64
		case leaf.bitWidth == 16 && !leaf.signed:
			if v, _ := col.metadata(DTypeMetadataKey); v == BFloat16Value {
				p.dtype = trt.BFloat16
			} else {
				return invalidf(col.name, "unsupported dtype uint16; bfloat16 columns carry uint16 storage with field metadata %q: %q", DTypeMetadataKey, BFloat16Value)
			}
		}
	case fbTypeBool:
		p.dtype = trt.Bool
		p.boolBits = true
	}
	if p.dtype == trt.Invalid {
		return invalidf(col.name, "unsupported dtype %s; expected float32, float16, bfloat16 (uint16 + %s metadata), float64, int8, uint8, int32, int64 or bool", leaf.typeName(), DTypeMetadataKey)
	}
	if v, ok := col.metadata(DTypeMetadataKey); ok && (v != BFloat16Value || p.dtype != trt.BFloat16) {
		return invalidf(col.name, "field metadata %s=%q does not fit storage %s (only %q on uint16 storage is defined)", DTypeMetadataKey, v, leaf.typeName(), BFloat16Value)
	}
	return nil
}

// planID plans the id column.
func planID(f *wireField) (colPlan, error) {
	p := colPlan{name: f.name, kind: kindID, nodes: 1}
	switch {
	case f.typ == fbTypeInt && f.bitWidth == 64 && f.signed:
		p.idType, p.buffers = arrow.PrimitiveTypes.Int64, 2
	case f.typ == fbTypeInt && f.bitWidth == 64:
		p.idType, p.buffers = arrow.PrimitiveTypes.Uint64, 2
	case f.typ == fbTypeUtf8:
		p.idType, p.buffers = arrow.BinaryTypes.String, 3
	case f.typ == fbTypeLargeUtf8:
		p.idType, p.buffers = arrow.BinaryTypes.LargeString, 3
	default:
		return p, invalidf(f.name, "id column has type %s; expected int64, uint64, utf8 or large_utf8", f.typeName())
	}
	if _, ok := f.metadata(extNameKey); ok {
		return p, invalidf(f.name, "id column must not be an extension type")
	}
	return p, nil
}
