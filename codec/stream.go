package codec

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Arrow IPC framing constants (Arrow columnar format, "Encapsulated message
// format" and Message.fbs).
const (
	ipcContinuation = 0xFFFFFFFF
	ipcAlignment    = 8

	msgHeaderSchema          = 1
	msgHeaderDictionaryBatch = 2
	msgHeaderRecordBatch     = 3

	metadataV4 = 3 // Arrow >= 0.8
	metadataV5 = 4 // Arrow >= 1.0
)

// Message table slots (Message.fbs).
const (
	msgSlotVersion    = 0
	msgSlotHeaderType = 1
	msgSlotHeader     = 2
	msgSlotBodyLength = 3
)

var arrowFileMagic = []byte("ARROW1")

// ipcMessage is one framed message of a stream. header and body alias the
// stream's bytes.
type ipcMessage struct {
	index  int // 0-based position in the stream
	offset int // byte offset of the message's first prefix byte
	kind   uint8
	header fbTable
	body   []byte
}

// streamReader walks the encapsulated messages of an IPC stream held in
// memory, checking every length before slicing.
type streamReader struct {
	b     []byte
	pos   int
	index int
	done  bool
}

func (r *streamReader) errf(format string, args ...any) *Error {
	return invalidf("", "reading IPC message %d at byte %d: %s", r.index, r.pos, fmt.Sprintf(format, args...))
}

// next returns the next message, or ok=false at the end of the stream: an
// end-of-stream marker (continuation + zero length, or a legacy zero
// length) or the end of the bytes on a message boundary. Bytes after an
// end-of-stream marker are an error.
func (r *streamReader) next() (msg ipcMessage, ok bool, err error) {
	if r.done {
		return ipcMessage{}, false, nil
	}
	rest := r.b[r.pos:]
	if len(rest) == 0 {
		r.done = true
		return ipcMessage{}, false, nil
	}
	if r.pos == 0 && bytes.HasPrefix(rest, arrowFileMagic) {
		return ipcMessage{}, false, invalidf("", "body is an Arrow IPC file (magic %q), expected an IPC stream", arrowFileMagic)
	}
	if len(rest) < 4 {
		return ipcMessage{}, false, r.errf("%d bytes left, too few for a message length", len(rest))
	}
	prefix := 4
	word := binary.LittleEndian.Uint32(rest)
	if word == ipcContinuation {
		if len(rest) < 8 {
			return ipcMessage{}, false, r.errf("%d bytes left, too few for a message length after the continuation marker", len(rest))
		}
		prefix = 8
		word = binary.LittleEndian.Uint32(rest[4:])
	}
	metaLen := int64(int32(word))
	if metaLen == 0 {
		r.done = true
		if trailing := len(rest) - prefix; trailing != 0 {
			return ipcMessage{}, false, invalidf("", "%d bytes after the IPC end-of-stream marker at byte %d", trailing, r.pos)
		}
		return ipcMessage{}, false, nil
	}
	if metaLen < 0 {
		return ipcMessage{}, false, r.errf("negative metadata length %d", metaLen)
	}
	if metaLen > int64(len(rest)-prefix) {
		return ipcMessage{}, false, r.errf("metadata length %d exceeds the %d bytes left", metaLen, len(rest)-prefix)
	}
	if (int64(prefix)+metaLen)%ipcAlignment != 0 {
		return ipcMessage{}, false, r.errf("metadata length %d leaves the body unaligned (prefix and metadata must be a multiple of %d bytes)", metaLen, ipcAlignment)
	}
	meta := rest[prefix : prefix+int(metaLen)]
	root, err := fbRoot(meta)
	if err != nil {
		return ipcMessage{}, false, r.errf("message metadata: %v", err)
	}
	version, err := root.int16(msgSlotVersion, 0)
	if err != nil {
		return ipcMessage{}, false, r.errf("message version: %v", err)
	}
	if version != metadataV4 && version != metadataV5 {
		return ipcMessage{}, false, r.errf("unsupported metadata version %d (need V4 or V5, Arrow >= 0.8)", version+1)
	}
	kind, err := root.uint8(msgSlotHeaderType, 0)
	if err != nil {
		return ipcMessage{}, false, r.errf("message header type: %v", err)
	}
	header, present, err := root.table(msgSlotHeader)
	if err != nil {
		return ipcMessage{}, false, r.errf("message header: %v", err)
	}
	if !present {
		return ipcMessage{}, false, r.errf("message has no header")
	}
	bodyLen, err := root.int64(msgSlotBodyLength, 0)
	if err != nil {
		return ipcMessage{}, false, r.errf("message body length: %v", err)
	}
	left := int64(len(rest) - prefix - int(metaLen))
	if bodyLen < 0 || bodyLen > left {
		return ipcMessage{}, false, r.errf("body length %d, but %d bytes left", bodyLen, left)
	}
	bodyStart := prefix + int(metaLen)
	msg = ipcMessage{
		index:  r.index,
		offset: r.pos,
		kind:   kind,
		header: header,
		body:   rest[bodyStart : bodyStart+int(bodyLen) : bodyStart+int(bodyLen)],
	}
	r.pos += bodyStart + int(bodyLen)
	r.index++
	return msg, true, nil
}
