package looptls

import "encoding/binary"

// recordHeaderLen is a TLS record's header: type, version, length
// (RFC 8446 section 5.1).
const recordHeaderLen = 5

// recordCursor follows the record framing of a stream of TLS records as
// its bytes go by, so that a transport can give crypto/tls one record at a
// time: then whatever crypto/tls does not hold is the transport's, and the
// transport knows whether any of it waits. It reads only the lengths, and
// trusts nothing else: crypto/tls checks the records themselves.
type recordCursor struct {
	hdr  [recordHeaderLen]byte
	hdrN int // bytes of the current record's header seen so far
	left int // once the header is whole: bytes of its body still to come
}

// toEnd returns how many of b, the stream's next bytes, reach the end of
// the current record; all of b when it ends later.
func (r *recordCursor) toEnd(b []byte) int {
	if r.hdrN == recordHeaderLen {
		return min(r.left, len(b))
	}
	need := recordHeaderLen - r.hdrN
	if len(b) < need {
		return len(b)
	}
	var h [recordHeaderLen]byte
	copy(h[:], r.hdr[:r.hdrN])
	copy(h[r.hdrN:], b[:need])
	return min(need+int(binary.BigEndian.Uint16(h[3:])), len(b))
}

// advance moves the cursor over b, the stream's next bytes.
func (r *recordCursor) advance(b []byte) {
	for len(b) > 0 {
		if r.hdrN < recordHeaderLen {
			k := copy(r.hdr[r.hdrN:], b)
			r.hdrN += k
			b = b[k:]
			if r.hdrN == recordHeaderLen {
				r.left = int(binary.BigEndian.Uint16(r.hdr[3:]))
			}
		} else {
			k := min(r.left, len(b))
			r.left -= k
			b = b[k:]
		}
		if r.hdrN == recordHeaderLen && r.left == 0 {
			r.hdrN = 0 // the record is whole: the next byte begins another
		}
	}
}
