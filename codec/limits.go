package codec

// Limits bound what a decoder accepts from untrusted bytes. Each check runs
// before the memory it guards is touched or allocated. A zero field means
// the default listed on DefaultLimits; a negative field is treated as zero
// and so also means the default.
type Limits struct {
	// MaxBodyBytes bounds the whole IPC stream (default 64 MiB).
	MaxBodyBytes int
	// MaxRows bounds the rows of one body, summed over its record
	// batches (default 65536).
	MaxRows int
	// MaxColumns bounds the top-level fields of the schema, the id column
	// included (default 64).
	MaxColumns int
	// MaxDims bounds the rank of one row (fixed_shape_tensor shape, or a
	// ragged column's position shape plus its sequence dimension)
	// (default 8, TensorRT's largest rank).
	MaxDims int
	// MaxRowElements bounds the elements of one row: prod(shape) for fixed
	// rows, positions times position elements for ragged rows
	// (default 1<<24).
	MaxRowElements int64
}

// Default limit values; see Limits.
const (
	DefaultMaxBodyBytes   = 64 << 20
	DefaultMaxRows        = 1 << 16
	DefaultMaxColumns     = 64
	DefaultMaxDims        = 8
	DefaultMaxRowElements = 1 << 24
)

// DefaultLimits returns the limits used for zero fields.
func DefaultLimits() Limits {
	return Limits{
		MaxBodyBytes:   DefaultMaxBodyBytes,
		MaxRows:        DefaultMaxRows,
		MaxColumns:     DefaultMaxColumns,
		MaxDims:        DefaultMaxDims,
		MaxRowElements: DefaultMaxRowElements,
	}
}

// withDefaults replaces zero and negative fields by their defaults.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = d.MaxBodyBytes
	}
	if l.MaxRows <= 0 {
		l.MaxRows = d.MaxRows
	}
	if l.MaxColumns <= 0 {
		l.MaxColumns = d.MaxColumns
	}
	if l.MaxDims <= 0 {
		l.MaxDims = d.MaxDims
	}
	if l.MaxRowElements <= 0 {
		l.MaxRowElements = d.MaxRowElements
	}
	return l
}
