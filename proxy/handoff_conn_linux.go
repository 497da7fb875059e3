//go:build linux

package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// HandoffConn is one end of the Unix socket over which a running proxy
// hands its listening sockets and its connections to the process that
// replaces it (see the protocol in handoff_msg.go). It is used by one
// goroutine at a time; Close may be called from any.
type HandoffConn struct {
	uc *net.UnixConn
	// in holds bytes read and not yet framed; fds the descriptors that
	// came with them, in order, not yet taken by a frame. A descriptor
	// arrives with the first bytes of the sendmsg that carried it, so by
	// the time a frame's header is read, its descriptors are here.
	in  []byte
	fds []int
}

// HandoffEnv names the environment variable that tells a new process
// which descriptor is its end of the hand-over socket.
const HandoffEnv = "WSEDGE_HANDOFF_FD"

// NewHandoffPair opens a hand-over socket: the old process's end, and the
// file to pass to the new process (as an extra file of os/exec, say),
// which the caller closes once the new process has it.
func NewHandoffPair() (*HandoffConn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	h, err := NewHandoffConn(os.NewFile(uintptr(fds[0]), "handoff"))
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	return h, os.NewFile(uintptr(fds[1]), "handoff-new"), nil
}

// NewHandoffConn takes f, an end of a hand-over socket, over.
func NewHandoffConn(f *os.File) (*HandoffConn, error) {
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("hand-over socket: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, errors.New("hand-over socket: not a Unix socket")
	}
	return &HandoffConn{uc: uc}, nil
}

// SetDeadline bounds the reads and writes that follow.
func (h *HandoffConn) SetDeadline(t time.Time) error { return h.uc.SetDeadline(t) }

// Close closes the socket; a read under way ends with an error.
func (h *HandoffConn) Close() error { return h.uc.Close() }

// frameHeader is a frame's payload length, kind and descriptor count.
const frameHeader = 6

// send writes one frame, the descriptors with its first bytes.
func (h *HandoffConn) send(kind uint8, payload []byte, fds []int) error {
	if len(payload) > maxFramePayload || len(fds) > maxFrameFDs {
		return fmt.Errorf("hand-over frame too large: %d bytes, %d descriptors", len(payload), len(fds))
	}
	buf := make([]byte, frameHeader, frameHeader+len(payload))
	binary.BigEndian.PutUint32(buf, uint32(len(payload)))
	buf[4], buf[5] = kind, uint8(len(fds))
	buf = append(buf, payload...)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	n, _, err := h.uc.WriteMsgUnix(buf, oob, nil)
	if err != nil {
		return fmt.Errorf("hand-over socket: %w", err)
	}
	if n < len(buf) {
		if _, err := h.uc.Write(buf[n:]); err != nil {
			return fmt.Errorf("hand-over socket: %w", err)
		}
	}
	return nil
}

// recv reads one frame. A fail frame comes back as *HandoffRefused, and
// the end of the socket as io.ErrUnexpectedEOF: the other process is
// gone. The caller owns the descriptors returned; on an error, those that
// came and no frame took are closed.
func (h *HandoffConn) recv() (kind uint8, payload []byte, fds []int, err error) {
	kind, payload, fds, err = h.recvFrame()
	if err != nil {
		closeFDs(h.fds)
		h.fds = nil
	}
	return kind, payload, fds, err
}

func (h *HandoffConn) recvFrame() (kind uint8, payload []byte, fds []int, err error) {
	for len(h.in) < frameHeader {
		if err := h.fill(); err != nil {
			return 0, nil, nil, err
		}
	}
	size := binary.BigEndian.Uint32(h.in)
	kind, nfds := h.in[4], int(h.in[5])
	if size > maxFramePayload || nfds > maxFrameFDs {
		return 0, nil, nil, fmt.Errorf("%w: frame of %d bytes, %d descriptors", errHandoffEncoding, size, nfds)
	}
	if nfds > len(h.fds) {
		return 0, nil, nil, fmt.Errorf("%w: frame names %d descriptors, %d came", errHandoffEncoding, nfds, len(h.fds))
	}
	for len(h.in) < frameHeader+int(size) {
		if err := h.fill(); err != nil {
			return 0, nil, nil, err
		}
	}
	payload = h.in[frameHeader : frameHeader+int(size) : frameHeader+int(size)]
	h.in = h.in[frameHeader+int(size):]
	fds = h.fds[:nfds:nfds]
	h.fds = h.fds[nfds:]
	if kind == msgFail {
		closeFDs(fds)
		return 0, nil, nil, &HandoffRefused{Reason: decodeFail(payload)}
	}
	return kind, payload, fds, nil
}

// expect reads one frame, which must be of kind want.
func (h *HandoffConn) expect(want uint8) ([]byte, []int, error) {
	kind, payload, fds, err := h.recv()
	if err != nil {
		return nil, nil, err
	}
	if kind != want {
		closeFDs(fds)
		return nil, nil, fmt.Errorf("%w: message %d where %d was due", errHandoffEncoding, kind, want)
	}
	return payload, fds, nil
}

// fill reads what the socket has, and the descriptors that came with it.
func (h *HandoffConn) fill() error {
	if cap(h.in)-len(h.in) < 64<<10 {
		// Frames handed out point into the old array, which they keep.
		h.in = append(make([]byte, 0, len(h.in)+256<<10), h.in...)
	}
	buf := h.in[len(h.in):cap(h.in)]
	oob := make([]byte, unix.CmsgSpace(4*maxFrameFDs))
	n, oobn, flags, _, err := h.uc.ReadMsgUnix(buf, oob)
	n, oobn = max(n, 0), max(oobn, 0)
	if oobn > 0 {
		msgs, perr := unix.ParseSocketControlMessage(oob[:oobn])
		for _, m := range msgs {
			fds, rerr := unix.ParseUnixRights(&m)
			if rerr != nil {
				continue
			}
			for _, fd := range fds {
				unix.CloseOnExec(fd)
			}
			h.fds = append(h.fds, fds...)
		}
		if perr != nil && err == nil {
			err = perr
		}
	}
	if flags&unix.MSG_CTRUNC != 0 && err == nil {
		err = errors.New("descriptors lost in transit")
	}
	h.in = h.in[:len(h.in)+n]
	switch {
	case err != nil:
		return fmt.Errorf("hand-over socket: %w", err)
	case n == 0:
		return io.ErrUnexpectedEOF
	}
	return nil
}

// Fail tells the other process why this one gives up.
func (h *HandoffConn) Fail(reason string) error { return h.send(msgFail, encodeFail(reason), nil) }

// RefusalOr returns the reason the other process gave for giving up when
// one waits on the socket (it may have said so, and exited, before a send
// of this process's failed), and err otherwise.
func (h *HandoffConn) RefusalOr(err error) error {
	h.SetDeadline(time.Now().Add(time.Second))
	_, _, fds, rerr := h.recv()
	closeFDs(fds)
	var refused *HandoffRefused
	if errors.As(rerr, &refused) {
		return refused
	}
	return err
}

// SendHello is the new process's first message.
func (h *HandoffConn) SendHello(hello HandoffHello) error {
	return h.send(msgHello, encodeHello(hello), nil)
}

// RecvHello reads the new process's hello.
func (h *HandoffConn) RecvHello() (HandoffHello, error) {
	p, _, err := h.expect(msgHello)
	if err != nil {
		return HandoffHello{}, err
	}
	return decodeHello(p)
}

// SendState lends st's sockets to the new process; they stay the old
// one's too.
func (h *HandoffConn) SendState(st HandoffState) error {
	p, fds := encodeState(st)
	if len(fds) > maxFrameFDs {
		return fmt.Errorf("%d sockets to lend: at most %d", len(fds), maxFrameFDs)
	}
	return h.send(msgState, p, fds)
}

// RecvState reads the old process's state; the caller owns its sockets.
func (h *HandoffConn) RecvState() (HandoffState, error) {
	p, fds, err := h.expect(msgState)
	if err != nil {
		return HandoffState{}, err
	}
	st, err := decodeState(p, fds)
	if err != nil {
		closeFDs(fds)
		return HandoffState{}, err
	}
	if st.Version < handoffMinVersion || st.Version > HandoffVersion {
		closeFDs(fds)
		return HandoffState{}, fmt.Errorf("hand-over version %d: this binary speaks %d to %d", st.Version, handoffMinVersion, HandoffVersion)
	}
	return st, nil
}

// SendReady tells the old process the new one is ready to take over.
func (h *HandoffConn) SendReady() error { return h.send(msgReady, nil, nil) }

// AwaitReady waits for the new process to be ready.
func (h *HandoffConn) AwaitReady() error {
	_, _, err := h.expect(msgReady)
	return err
}

// SendDone tells the new process nothing more is coming.
func (h *HandoffConn) SendDone() error { return h.send(msgDone, nil, nil) }

// ChooseVersion is the protocol version the old process speaks with a new
// one that said hello; false when they have none in common.
func ChooseVersion(hello HandoffHello) (uint16, bool) {
	v := min(hello.MaxVersion, HandoffVersion)
	return v, v >= hello.MinVersion && v >= handoffMinVersion
}

// Hello is what this binary says as a new process.
func Hello(build string) HandoffHello {
	return HandoffHello{MinVersion: handoffMinVersion, MaxVersion: HandoffVersion, PID: os.Getpid(), Build: build}
}

// closeFDs closes descriptors nobody will take.
func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
