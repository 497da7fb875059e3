package bench

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"

	"github.com/gobwas/ws"
)

// maxControlPayload is the largest control frame payload (RFC 6455 5.5).
const maxControlPayload = 125

// PeerCloseError is returned when the other side sends a close frame where
// a data message was expected.
type PeerCloseError struct {
	Code   ws.StatusCode
	Reason string
}

func (e *PeerCloseError) Error() string {
	return fmt.Sprintf("closed by peer: %d %s", e.Code, e.Reason)
}

// appendHeader appends the wire form of h (RFC 6455 5.2).
func appendHeader(dst []byte, h ws.Header) []byte {
	b0 := h.Rsv<<4 | byte(h.OpCode)
	if h.Fin {
		b0 |= 0x80
	}
	var b1 byte
	if h.Masked {
		b1 = 0x80
	}
	switch {
	case h.Length < 126:
		dst = append(dst, b0, b1|byte(h.Length))
	case h.Length <= 0xffff:
		dst = append(dst, b0, b1|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(h.Length))
	default:
		dst = append(dst, b0, b1|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(h.Length))
	}
	if h.Masked {
		dst = append(dst, h.Mask[:]...)
	}
	return dst
}

// newMask returns a masking key. The generator draws one per connection
// and reuses it for every frame, which RFC 6455 5.3 advises against for
// browsers (it guards against cache poisoning by script-chosen payloads);
// a proxy cannot tell the difference and the client saves a pass over
// each payload.
func newMask() (m [4]byte) {
	binary.LittleEndian.PutUint32(m[:], rand.Uint32())
	return m
}

// clientFrame returns one complete frame as a client sends it: final,
// masked, payload copied and masked.
func clientFrame(op ws.OpCode, payload []byte, mask [4]byte) []byte {
	h := ws.Header{Fin: true, OpCode: op, Masked: true, Mask: mask, Length: int64(len(payload))}
	b := appendHeader(make([]byte, 0, ws.HeaderSize(h)+len(payload)), h)
	n := len(b)
	b = append(b, payload...)
	ws.Cipher(b[n:], mask, 0)
	return b
}

// closeFrame returns a masked close frame with code and no reason.
func closeFrame(code ws.StatusCode, mask [4]byte) []byte {
	var body [2]byte
	binary.BigEndian.PutUint16(body[:], uint16(code))
	return clientFrame(ws.OpClose, body[:], mask)
}

// frameReader reads the frames a server sends to the client. It answers
// pings itself, since a proxy with heartbeats closes a client that does
// not. It is owned by the one goroutine that uses the connection.
type frameReader struct {
	r    *bufio.Reader
	w    io.Writer // where pongs go; the connection
	mask [4]byte
	hdr  [ws.MaxHeaderSize - 2]byte // ReadHeaderBuffer's scratch, so a read allocates nothing
	ctl  [maxControlPayload]byte
}

// readMessage reads one data message, however fragmented, into buf
// (grown when needed) and returns it. Pings are answered and pongs
// skipped on the way; a close frame yields a *PeerCloseError.
func (fr *frameReader) readMessage(buf []byte) ([]byte, error) {
	buf = buf[:0]
	for {
		h, err := ws.ReadHeaderBuffer(fr.r, fr.hdr[:])
		if err != nil {
			return buf, err
		}
		if h.OpCode.IsControl() {
			if err := fr.control(h); err != nil {
				return buf, err
			}
			continue
		}
		n := len(buf)
		buf = grow(buf, int(h.Length))
		if _, err := io.ReadFull(fr.r, buf[n:]); err != nil {
			return buf, err
		}
		if h.Masked { // servers must not mask (RFC 6455 5.1); undo it anyway
			ws.Cipher(buf[n:], h.Mask, 0)
		}
		if h.Fin {
			return buf, nil
		}
	}
}

// control handles a control frame whose header has been read.
func (fr *frameReader) control(h ws.Header) error {
	if h.Length > maxControlPayload {
		return fmt.Errorf("control frame of %d bytes: %w", h.Length, ws.ErrProtocolControlPayloadOverflow)
	}
	p := fr.ctl[:h.Length]
	if _, err := io.ReadFull(fr.r, p); err != nil {
		return err
	}
	if h.Masked {
		ws.Cipher(p, h.Mask, 0)
	}
	switch h.OpCode {
	case ws.OpPing:
		_, err := fr.w.Write(clientFrame(ws.OpPong, p, fr.mask))
		return err
	case ws.OpClose:
		code, reason := ws.ParseCloseFrameData(p)
		return &PeerCloseError{Code: code, Reason: reason}
	}
	return nil // a pong
}

// grow extends b by n bytes, reallocating only when its capacity is short.
func grow(b []byte, n int) []byte {
	if len(b)+n <= cap(b) {
		return b[:len(b)+n]
	}
	nb := make([]byte, len(b)+n, 2*len(b)+n)
	copy(nb, b)
	return nb
}
