package wsframe

import (
	"encoding/binary"

	"github.com/gobwas/ws"
)

// maxHeaderSize is the longest WebSocket frame header: 2 bytes, 8 bytes of
// extended length and a 4-byte mask (RFC 6455 section 5.2).
const maxHeaderSize = 14

// maxControlFrameSize is a whole control frame: header with mask plus the
// 125-byte payload limit of RFC 6455 section 5.5.
const maxControlFrameSize = 6 + ws.MaxControlFramePayloadSize

// Event says what the driver of a Framer must do with the bytes a step
// returned.
type Event uint8

const (
	// Forward: write out to the other peer, unchanged.
	Forward Event = iota
	// Absorbed: the bytes went into the Framer's own state (a header or
	// control frame split across reads); nothing to write yet.
	Absorbed
	// Control: out is one whole control frame (ping, pong or close); the
	// driver decides whether to forward it. ControlPayload gives its
	// unmasked payload.
	Control
	// Invalid: the stream broke RFC 6455 or a limit; Framer.Violation says
	// how. Nothing more may be relayed in this direction.
	Invalid
)

// Violation is why a stream cannot be relayed further; zero for none. It
// is a small number so that every Framer carries it for one byte. Its
// Reason and Code say what the offending peer is told.
type Violation uint8

const (
	noViolation Violation = iota
	vUnmaskedClient
	vMaskedServer
	vReservedOpcode
	vBadLength
	vFragmentedControl
	vLongControl
	vControlRSV
	vRSVWithoutExtension
	vStrayContinuation
	vNestedMessage
	vContinuationRSV
	// TooBig: a message grew past the Framer's limit (close code 1009),
	// the one violation a driver may want to tell apart.
	TooBig
	vCloseBodyOneByte
	vCloseCode
)

var violationReasons = [...]string{
	noViolation:          "",
	vUnmaskedClient:      "unmasked client frame",
	vMaskedServer:        "masked server frame",
	vReservedOpcode:      "reserved opcode",
	vBadLength:           "invalid payload length",
	vFragmentedControl:   "fragmented control frame",
	vLongControl:         "control frame too long",
	vControlRSV:          "reserved bits on a control frame",
	vRSVWithoutExtension: "reserved bits without an extension",
	vStrayContinuation:   "continuation outside a message",
	vNestedMessage:       "new message inside a fragmented one",
	vContinuationRSV:     "reserved bits on a continuation",
	TooBig:               "message too big",
	vCloseBodyOneByte:    "close frame with a one-byte body",
	vCloseCode:           "invalid close code",
}

// Reason is said in the log and the close frame.
func (v Violation) Reason() string { return violationReasons[v] }

// Code is the close code the offending peer gets (RFC 6455 section 7.4.1);
// 0 for no violation.
func (v Violation) Code() ws.StatusCode {
	switch v {
	case noViolation:
		return 0
	case TooBig:
		return ws.StatusMessageTooBig
	}
	return ws.StatusProtocolError
}

// Framer follows the framing of one direction of a relayed WebSocket
// (RFC 6455 section 5) without doing any I/O: the driver feeds it the bytes
// it read and gets back what to write where. Frames pass through as they
// arrive, header and payload bytes unchanged, so neither masking nor
// compression (RSV bits) is touched and no message is ever collected whole.
// Only control frames, at most 131 bytes, are gathered so that pongs and
// closes can be inspected.
//
// The same value can be driven by a goroutine per direction or by an event
// loop. It is not safe for concurrent use; the zero value is not usable,
// see NewFramer. A Framer is a small value, meant to be kept in place in a
// connection's record.
type Framer struct {
	// Word-sized fields first and bytes last: two framers sit in every
	// connection record, so padding counts.
	maxMessage int64 // limit across the fragments of one message; 0 means none
	remaining  int64 // payload bytes of the frame passing now still to come
	msgBytes   int64 // payload bytes of the open message so far
	// ctrl gathers a control frame split across reads; allocated the first
	// time that happens, as most connections never see one split.
	ctrl *[maxControlFrameSize]byte
	// sizes, when set, counts the size of each message as its last frame
	// begins.
	sizes *Sizes

	hdr [maxHeaderSize]byte // a header split across reads

	// frames and messages count the frames begun and the messages whose
	// last frame began since the driver last took the counts (see
	// TakeFrames); a read buffer holds far fewer than 65536.
	frames   uint16
	messages uint16

	hdrLen    uint8
	ctrlLen   uint8
	allowRSV  byte      // RSV bits a data frame may carry: those of the negotiated extensions
	masked    bool      // frames in this direction must be masked (they come from the client)
	control   bool      // the frame passing now is a control frame split across reads, being gathered into ctrl
	inMessage bool      // a fragmented data message is open: only continuations may follow
	broken    Violation // set once Invalid was returned
}

// NewFramer returns a Framer for frames that must (client to backend) or
// must not be masked, with the RSV bits of negotiated extensions allowed,
// and a message size limit (0 for none).
func NewFramer(masked bool, extensions bool, maxMessage int64) Framer {
	f := Framer{masked: masked, maxMessage: maxMessage}
	if extensions {
		// Extensions give meaning to the RSV bits (RFC 6455 section 5.2,
		// RFC 7692 section 6); they are negotiated end to end, so a relay
		// lets them through rather than interpreting them.
		f.allowRSV = 0x70
	}
	return f
}

// AtBoundary reports whether the stream is between frames, the only place
// where a relay may insert frames of its own. Inside a fragmented message
// is fine: control frames may be interleaved there (RFC 6455 section 5.4).
func (f *Framer) AtBoundary() bool {
	return f.hdrLen == 0 && f.remaining == 0 && !f.control
}

// Step consumes a prefix of in and says what to do with out, which is either
// a prefix of in or the Framer's own buffer. Callers loop until in is empty:
//
//	for len(in) > 0 {
//		n, out, ev := f.Step(in)
//		in = in[n:]
//		...
//	}
//
// Consecutive data frames found whole or in part in `in` are returned as one
// Forward, so a read full of small messages costs one write.
func (f *Framer) Step(in []byte) (n int, out []byte, ev Event) {
	if f.broken != noViolation {
		return len(in), nil, Invalid
	}
	if f.control {
		return f.gatherControl(in)
	}
	if f.remaining > 0 {
		k := f.passPayload(len(in))
		return f.scan(in, k)
	}
	if f.hdrLen > 0 {
		return f.completeHeader(in)
	}
	return f.scan(in, 0)
}

// Violation is why the stream broke, once Step returned Invalid; zero
// before.
func (f *Framer) Violation() Violation { return f.broken }

// scan walks whole frame headers in in starting at off, extending the
// forwarded prefix over data frames until it meets a control frame, a header
// cut short, a violation, or the end of in.
func (f *Framer) scan(in []byte, off int) (int, []byte, Event) {
	for off < len(in) {
		h, hlen, ok := parseHeader(in[off:])
		if !ok {
			if off > 0 {
				return off, in[:off], Forward
			}
			// A header split across reads: keep it until the rest comes.
			f.hdrLen = uint8(copy(f.hdr[:], in))
			return len(in), nil, Absorbed
		}
		if v, bad := f.check(h); bad {
			if off > 0 {
				return off, in[:off], Forward
			}
			return f.fail(v, len(in))
		}
		if h.OpCode.IsControl() {
			if off > 0 {
				return off, in[:off], Forward
			}
			if whole := hlen + int(h.Length); whole <= len(in) {
				// The common case: the whole control frame is here.
				return f.handControl(in[:whole], whole)
			}
			f.startControl(in[:hlen], h)
			n, out, ev := f.gatherControl(in[hlen:])
			return hlen + n, out, ev
		}
		f.startData(h)
		off += hlen
		off += f.passPayload(len(in) - off)
	}
	return off, in[:off], Forward
}

// completeHeader adds bytes to a header that was split across reads. Once
// whole, the header is handed out on its own and the payload follows from
// the next step.
func (f *Framer) completeHeader(in []byte) (int, []byte, Event) {
	had := int(f.hdrLen)
	n := copy(f.hdr[had:], in)
	h, hlen, ok := parseHeader(f.hdr[:had+n])
	if !ok {
		f.hdrLen += uint8(n)
		return n, nil, Absorbed
	}
	used := hlen - had
	f.hdrLen = 0
	if v, bad := f.check(h); bad {
		return f.fail(v, len(in))
	}
	if h.OpCode.IsControl() {
		f.startControl(f.hdr[:hlen], h)
		m, out, ev := f.gatherControl(in[used:])
		return used + m, out, ev
	}
	f.startData(h)
	return used, f.hdr[:hlen], Forward
}

// passPayload accounts for up to avail payload bytes of the current data
// frame and returns how many belong to it.
func (f *Framer) passPayload(avail int) int {
	k := int64(avail)
	if k > f.remaining {
		k = f.remaining
	}
	f.remaining -= k
	return int(k)
}

// TakeFrames returns the frames begun, and the data messages whose last
// frame began, since the last call, for metrics: a fragmented message
// counts once.
func (f *Framer) TakeFrames() (frames, messages uint64) {
	frames, messages = uint64(f.frames), uint64(f.messages)
	f.frames, f.messages = 0, 0
	return frames, messages
}

// CountSizes makes f count each message's size in s; nil stops it.
func (f *Framer) CountSizes(s *Sizes) { f.sizes = s }

func (f *Framer) startData(h frameHeader) {
	f.frames++
	if h.OpCode != ws.OpContinuation {
		f.msgBytes = 0
	}
	f.msgBytes += h.Length
	f.inMessage = !h.Fin
	f.remaining = h.Length
	if h.Fin {
		f.messages++
		if f.sizes != nil {
			f.sizes.observe(f.msgBytes)
		}
	}
}

func (f *Framer) startControl(hdr []byte, h frameHeader) {
	if f.ctrl == nil {
		f.ctrl = new([maxControlFrameSize]byte)
	}
	f.control = true
	f.ctrlLen = uint8(copy(f.ctrl[:], hdr))
	f.remaining = h.Length
}

// gatherControl collects the payload of a split control frame; control
// frames are small (RFC 6455 section 5.5), so they are handed out whole.
func (f *Framer) gatherControl(in []byte) (int, []byte, Event) {
	k := f.passPayload(len(in))
	f.ctrlLen += uint8(copy(f.ctrl[f.ctrlLen:], in[:k]))
	if f.remaining > 0 {
		return k, nil, Absorbed
	}
	f.control = false
	return f.handControl(f.ctrl[:f.ctrlLen], k)
}

// handControl hands out a whole control frame, n being the input it
// consumed, after checking a close frame's body.
func (f *Framer) handControl(frame []byte, n int) (int, []byte, Event) {
	f.frames++
	if ControlOp(frame) == ws.OpClose {
		var buf [ws.MaxControlFramePayloadSize]byte
		if v, bad := checkClosePayload(ControlPayload(frame, buf[:])); bad {
			return f.fail(v, n)
		}
	}
	return n, frame, Control
}

// ControlPayload copies the payload of a whole control frame, as Control
// hands it out, into dst, unmasked, and returns it. The frame itself stays
// as received, ready to forward. dst needs room for 125 bytes.
func ControlPayload(frame, dst []byte) []byte {
	// A control frame's length fits the first length byte (RFC 6455
	// section 5.5), so its header is 2 bytes, plus 4 of mask.
	hlen := 2
	if frame[1]&0x80 != 0 {
		hlen = 6
	}
	p := dst[:copy(dst, frame[hlen:])]
	if hlen == 6 {
		ws.Cipher(p, [4]byte(frame[2:6]), 0)
	}
	return p
}

// ControlOp is the opcode of a whole control frame.
func ControlOp(frame []byte) ws.OpCode { return ws.OpCode(frame[0] & 0x0f) }

// check applies the rules of RFC 6455 section 5 that a relay can enforce
// from a header alone, plus the message size limit.
func (f *Framer) check(h frameHeader) (Violation, bool) {
	switch {
	case h.Masked != f.masked && f.masked:
		return vUnmaskedClient, true
	case h.Masked != f.masked:
		return vMaskedServer, true
	case h.OpCode.IsReserved():
		return vReservedOpcode, true
	case h.Length < 0:
		return vBadLength, true
	}
	if h.OpCode.IsControl() {
		switch {
		case !h.Fin:
			return vFragmentedControl, true
		case h.Length > ws.MaxControlFramePayloadSize:
			return vLongControl, true
		case h.Rsv != 0:
			return vControlRSV, true
		}
		return noViolation, false
	}
	switch {
	case h.Rsv&^f.allowRSV != 0:
		return vRSVWithoutExtension, true
	case h.OpCode == ws.OpContinuation && !f.inMessage:
		return vStrayContinuation, true
	case h.OpCode != ws.OpContinuation && f.inMessage:
		return vNestedMessage, true
	case h.OpCode == ws.OpContinuation && h.Rsv != 0:
		return vContinuationRSV, true
	}
	total := h.Length
	if h.OpCode == ws.OpContinuation {
		total += f.msgBytes
	}
	if f.maxMessage > 0 && total > f.maxMessage {
		return TooBig, true
	}
	return noViolation, false
}

func (f *Framer) fail(v Violation, n int) (int, []byte, Event) {
	f.broken = v
	return n, nil, Invalid
}

// frameHeader is a decoded frame header; the payload bytes themselves are
// never decoded.
type frameHeader struct {
	Fin    bool
	Rsv    byte // the RSV bits in place, as on the wire (0x70)
	OpCode ws.OpCode
	Masked bool
	Length int64 // negative when the 64-bit length had its top bit set
}

// parseHeader decodes a frame header at the start of b. ok is false when b
// holds only part of it.
func parseHeader(b []byte) (h frameHeader, n int, ok bool) {
	if len(b) < 2 {
		return h, 0, false
	}
	h.Fin = b[0]&0x80 != 0
	h.Rsv = b[0] & 0x70
	h.OpCode = ws.OpCode(b[0] & 0x0f)
	h.Masked = b[1]&0x80 != 0
	n = 2
	switch l := b[1] & 0x7f; l {
	case 126:
		if len(b) < 4 {
			return h, 0, false
		}
		h.Length = int64(binary.BigEndian.Uint16(b[2:4]))
		n = 4
	case 127:
		if len(b) < 10 {
			return h, 0, false
		}
		// The most significant bit must be 0 (RFC 6455 section 5.2); as a
		// signed value it comes out negative and check rejects it.
		h.Length = int64(binary.BigEndian.Uint64(b[2:10]))
		n = 10
	default:
		h.Length = int64(l)
	}
	if h.Masked {
		if len(b) < n+4 {
			return h, 0, false
		}
		n += 4
	}
	return h, n, true
}

// checkClosePayload validates a close frame's body (RFC 6455 sections 5.5.1
// and 7.4): empty, or a code that may appear on the wire and a reason.
func checkClosePayload(p []byte) (Violation, bool) {
	switch {
	case len(p) == 0:
		return noViolation, false
	case len(p) == 1:
		return vCloseBodyOneByte, true
	}
	if !ValidCloseCode(ws.StatusCode(binary.BigEndian.Uint16(p))) {
		return vCloseCode, true
	}
	return noViolation, false
}

// ValidCloseCode reports whether code may be sent in a close frame: the
// codes RFC 6455 section 7.4.1 defines for the wire, the registered 1012 to
// 1014, and the ranges for libraries and applications.
func ValidCloseCode(code ws.StatusCode) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}
