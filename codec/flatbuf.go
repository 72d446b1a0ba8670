package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// This file is a small, bounds-checked reader for the flatbuffers that
// frame Arrow IPC metadata. arrow-go's generated accessors trust their
// input (an out-of-range offset panics, and a vector length is used
// before it is checked), so the decoder reads the few tables it needs
// itself: every offset is checked against the buffer before it is
// followed, every vector length before it is used, and every field
// against its table's inline size.

var errFlatbuffer = errors.New("malformed flatbuffer")

func fbErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errFlatbuffer, fmt.Sprintf(format, args...))
}

// fbTable is one table of buf whose header and vtable lie inside buf.
type fbTable struct {
	buf   []byte
	pos   int // start of the table (its soffset to the vtable)
	vt    int // start of the vtable
	vtLen int // vtable size in bytes
	tLen  int // inline size of the table in bytes
}

// fbRoot returns the root table of a flatbuffer.
func fbRoot(buf []byte) (fbTable, error) {
	if len(buf) < 4 {
		return fbTable{}, fbErr("%d bytes, too short for a root offset", len(buf))
	}
	return fbTableAt(buf, uint64(binary.LittleEndian.Uint32(buf)))
}

// fbTableAt checks and returns the table starting at pos.
func fbTableAt(buf []byte, pos uint64) (fbTable, error) {
	if pos+4 > uint64(len(buf)) {
		return fbTable{}, fbErr("table offset %d outside %d bytes", pos, len(buf))
	}
	p := int(pos)
	vt := int64(p) - int64(int32(binary.LittleEndian.Uint32(buf[p:])))
	if vt < 0 || vt+4 > int64(len(buf)) {
		return fbTable{}, fbErr("vtable offset %d outside %d bytes", vt, len(buf))
	}
	v := int(vt)
	vtLen := int(binary.LittleEndian.Uint16(buf[v:]))
	tLen := int(binary.LittleEndian.Uint16(buf[v+2:]))
	if vtLen < 4 || vtLen%2 != 0 || v+vtLen > len(buf) {
		return fbTable{}, fbErr("vtable of %d bytes at %d does not fit %d bytes", vtLen, v, len(buf))
	}
	if tLen < 4 || p+tLen > len(buf) {
		return fbTable{}, fbErr("table of %d bytes at %d does not fit %d bytes", tLen, p, len(buf))
	}
	return fbTable{buf: buf, pos: p, vt: v, vtLen: vtLen, tLen: tLen}, nil
}

// field returns the absolute position of the field in vtable slot slot,
// or 0 when the field is absent, after checking that size bytes of it lie
// inside the table.
func (t fbTable) field(slot, size int) (int, error) {
	vo := 4 + 2*slot
	if vo+2 > t.vtLen {
		return 0, nil
	}
	fo := int(binary.LittleEndian.Uint16(t.buf[t.vt+vo:]))
	if fo == 0 {
		return 0, nil
	}
	if fo < 4 || fo+size > t.tLen {
		return 0, fbErr("field %d at offset %d (size %d) outside a table of %d bytes", slot, fo, size, t.tLen)
	}
	return t.pos + fo, nil
}

func (t fbTable) int64(slot int, def int64) (int64, error) {
	p, err := t.field(slot, 8)
	if err != nil || p == 0 {
		return def, err
	}
	return int64(binary.LittleEndian.Uint64(t.buf[p:])), nil
}

func (t fbTable) int32(slot int, def int32) (int32, error) {
	p, err := t.field(slot, 4)
	if err != nil || p == 0 {
		return def, err
	}
	return int32(binary.LittleEndian.Uint32(t.buf[p:])), nil
}

func (t fbTable) int16(slot int, def int16) (int16, error) {
	p, err := t.field(slot, 2)
	if err != nil || p == 0 {
		return def, err
	}
	return int16(binary.LittleEndian.Uint16(t.buf[p:])), nil
}

func (t fbTable) uint8(slot int, def uint8) (uint8, error) {
	p, err := t.field(slot, 1)
	if err != nil || p == 0 {
		return def, err
	}
	return t.buf[p], nil
}

// ref follows the uoffset stored in slot. It returns the absolute target
// position, or ok=false when the field is absent. Every flatbuffer object
// an offset can point to (table, vector, string) starts with 4 bytes, and
// those are checked to lie inside the buffer.
func (t fbTable) ref(slot int) (target uint64, ok bool, err error) {
	p, err := t.field(slot, 4)
	if err != nil || p == 0 {
		return 0, false, err
	}
	target = uint64(p) + uint64(binary.LittleEndian.Uint32(t.buf[p:]))
	if target+4 > uint64(len(t.buf)) {
		return 0, false, fbErr("offset in field %d points to %d, outside %d bytes", slot, target, len(t.buf))
	}
	return target, true, nil
}

// table returns the sub-table referenced by slot.
func (t fbTable) table(slot int) (fbTable, bool, error) {
	target, ok, err := t.ref(slot)
	if err != nil || !ok {
		return fbTable{}, false, err
	}
	sub, err := fbTableAt(t.buf, target)
	return sub, err == nil, err
}

// fbVector is a vector whose n elements of elemSize bytes lie inside buf.
type fbVector struct {
	buf      []byte
	start, n int
	elemSize int
}

// vector returns the vector referenced by slot; an absent vector is
// returned as an empty one.
func (t fbTable) vector(slot, elemSize int) (fbVector, error) {
	target, ok, err := t.ref(slot)
	if err != nil || !ok {
		return fbVector{buf: t.buf, elemSize: elemSize}, err
	}
	n := uint64(binary.LittleEndian.Uint32(t.buf[target:]))
	start := target + 4
	if n*uint64(elemSize) > uint64(len(t.buf))-start {
		return fbVector{}, fbErr("vector of %d %d-byte elements at %d does not fit %d bytes", n, elemSize, start, len(t.buf))
	}
	return fbVector{buf: t.buf, start: int(start), n: int(n), elemSize: elemSize}, nil
}

// str returns the string referenced by slot, or "" when absent.
func (t fbTable) str(slot int) (string, error) {
	b, err := t.bytes(slot)
	return string(b), err
}

// bytes returns the bytes of the string referenced by slot, aliasing the
// buffer, or nil when absent.
func (t fbTable) bytes(slot int) ([]byte, error) {
	v, err := t.vector(slot, 1)
	if err != nil {
		return nil, err
	}
	return v.buf[v.start : v.start+v.n], nil
}

// tableAt returns element i of a vector of tables.
func (v fbVector) tableAt(i int) (fbTable, error) {
	e := v.start + 4*i
	return fbTableAt(v.buf, uint64(e)+uint64(binary.LittleEndian.Uint32(v.buf[e:])))
}

// int64At returns the int64 at byte offset off of element i of a vector of
// structs.
func (v fbVector) int64At(i, off int) int64 {
	return int64(binary.LittleEndian.Uint64(v.buf[v.start+i*v.elemSize+off:]))
}
