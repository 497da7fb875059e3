package wsframe

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/gobwas/ws"
)

// SnapshotVersion is the version of the encoding MarshalBinary writes and
// the only one UnmarshalBinary reads. A change to what a Framer holds
// gets a new version; a process that cannot read a peer's version refuses
// the snapshot rather than guess.
const SnapshotVersion = 1

// snapshotFixed is the part of a snapshot every Framer has: version,
// flags, allowRSV, violation, three int64 and two uint16 counts, and the
// lengths of the partial header and control frame.
const snapshotFixed = 4 + 3*8 + 2*2 + 2

// Flags of a snapshot.
const (
	snapMasked    = 1 << 0
	snapControl   = 1 << 1
	snapInMessage = 1 << 2
	snapFlags     = snapMasked | snapControl | snapInMessage
)

// errSnapshot is wrapped by every reason UnmarshalBinary refuses.
var errSnapshot = errors.New("wsframe: invalid framer snapshot")

// AppendBinary appends f's state to b: where the stream stands inside the
// current frame (the payload still to come, a header cut short, a control
// frame being gathered), the fragmentation state and size of the open
// message, the limits and the counts not yet taken. Everything is written
// in a fixed layout, so one state has one encoding. The Sizes set by
// CountSizes is the driver's and is not part of it.
func (f *Framer) AppendBinary(b []byte) ([]byte, error) {
	var flags byte
	if f.masked {
		flags |= snapMasked
	}
	if f.control {
		flags |= snapControl
	}
	if f.inMessage {
		flags |= snapInMessage
	}
	b = append(b, SnapshotVersion, flags, f.allowRSV, byte(f.broken))
	b = binary.BigEndian.AppendUint64(b, uint64(f.maxMessage))
	b = binary.BigEndian.AppendUint64(b, uint64(f.remaining))
	b = binary.BigEndian.AppendUint64(b, uint64(f.msgBytes))
	b = binary.BigEndian.AppendUint16(b, f.frames)
	b = binary.BigEndian.AppendUint16(b, f.messages)
	b = append(b, f.hdrLen)
	b = append(b, f.hdr[:f.hdrLen]...)
	// A control frame handed out stays in ctrl after gathering ends; only
	// one being gathered is state.
	if f.control {
		b = append(b, f.ctrlLen)
		b = append(b, f.ctrl[:f.ctrlLen]...)
	} else {
		b = append(b, 0)
	}
	return b, nil
}

// MarshalBinary returns f's state, as AppendBinary writes it.
func (f *Framer) MarshalBinary() ([]byte, error) {
	return f.AppendBinary(make([]byte, 0, snapshotFixed+maxHeaderSize))
}

// UnmarshalBinary makes f the Framer whose state data holds, as
// MarshalBinary wrote it, or returns an error and leaves f alone: data of
// another version, cut short or too long, or describing a state no stream
// can lead to (a whole header held as partial, a control frame longer than
// RFC 6455 allows, a message over its limit) is refused whole. The
// restored Framer goes on exactly where the original stood; call
// CountSizes again if it should count message sizes.
func (f *Framer) UnmarshalBinary(data []byte) error {
	if len(data) < snapshotFixed {
		return fmt.Errorf("%w: %d bytes, want at least %d", errSnapshot, len(data), snapshotFixed)
	}
	if data[0] != SnapshotVersion {
		return fmt.Errorf("%w: version %d, want %d", errSnapshot, data[0], SnapshotVersion)
	}
	flags := data[1]
	g := Framer{
		masked:     flags&snapMasked != 0,
		control:    flags&snapControl != 0,
		inMessage:  flags&snapInMessage != 0,
		allowRSV:   data[2],
		broken:     Violation(data[3]),
		maxMessage: int64(binary.BigEndian.Uint64(data[4:])),
		remaining:  int64(binary.BigEndian.Uint64(data[12:])),
		msgBytes:   int64(binary.BigEndian.Uint64(data[20:])),
		frames:     binary.BigEndian.Uint16(data[28:]),
		messages:   binary.BigEndian.Uint16(data[30:]),
	}
	rest := data[32:]
	g.hdrLen = rest[0]
	rest = rest[1:]
	if int(g.hdrLen) >= maxHeaderSize || len(rest) < int(g.hdrLen)+1 {
		return fmt.Errorf("%w: partial header of %d bytes", errSnapshot, g.hdrLen)
	}
	copy(g.hdr[:], rest[:g.hdrLen])
	rest = rest[g.hdrLen:]
	g.ctrlLen = rest[0]
	rest = rest[1:]
	if int(g.ctrlLen) > maxControlFrameSize || len(rest) != int(g.ctrlLen) {
		return fmt.Errorf("%w: control frame of %d bytes with %d bytes left", errSnapshot, g.ctrlLen, len(rest))
	}
	if g.ctrlLen > 0 {
		g.ctrl = new([maxControlFrameSize]byte)
		copy(g.ctrl[:], rest)
	}
	if err := g.checkRestored(flags); err != nil {
		return fmt.Errorf("%w: %v", errSnapshot, err)
	}
	*f = g
	return nil
}

// checkRestored says what makes a decoded state one no stream leads to, or nil.
func (g *Framer) checkRestored(flags byte) error {
	switch {
	case flags&^snapFlags != 0:
		return fmt.Errorf("unknown flags %#x", flags&^snapFlags)
	case g.allowRSV != 0 && g.allowRSV != 0x70:
		return fmt.Errorf("RSV mask %#x", g.allowRSV)
	case g.broken > vCloseCode:
		return fmt.Errorf("violation %d", g.broken)
	case g.maxMessage < 0 || g.remaining < 0 || g.msgBytes < 0:
		return errors.New("negative size")
	case g.maxMessage > 0 && g.msgBytes > g.maxMessage:
		return errors.New("message over its limit")
	case g.hdrLen > 0 && (g.remaining > 0 || g.control):
		return errors.New("partial header inside a frame")
	}
	if g.hdrLen > 0 {
		if _, _, whole := parseHeader(g.hdr[:g.hdrLen]); whole {
			return errors.New("partial header is whole")
		}
	}
	if !g.control {
		if g.ctrlLen != 0 {
			return errors.New("control bytes outside a control frame")
		}
		if g.remaining > g.msgBytes {
			return errors.New("frame longer than its message")
		}
		return nil
	}
	// A control frame being gathered: its header is whole, and the bytes
	// gathered plus those to come are its length (RFC 6455 section 5.5).
	if g.ctrlLen == 0 {
		return errors.New("control frame without its header")
	}
	h, hlen, whole := parseHeader(g.ctrl[:g.ctrlLen])
	switch {
	case !whole:
		return errors.New("control frame without its header")
	case !h.OpCode.IsControl() || !h.Fin || h.Rsv != 0 || h.Masked != g.masked:
		return errors.New("control frame header not one Step accepts")
	case h.Length > ws.MaxControlFramePayloadSize || h.Length < g.remaining:
		return errors.New("control frame length")
	case int64(g.ctrlLen)-int64(hlen) != h.Length-g.remaining:
		return errors.New("control frame bytes gathered do not match what is to come")
	}
	return nil
}
