//go:build linux

package looptls

import (
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wsedge/wsedge/proxy/evloop"
)

// wouldBlock is what a loop-driven TLS connection's transport says when
// the socket has nothing more for now. crypto/tls keeps a partly read
// record, and the connection usable, after a transport error only when it
// is a net.Error whose Temporary() is true (conn.go, readRecordOrCCS): so
// a read can stop at any byte and go on at the next edge.
type wouldBlock struct{}

func (wouldBlock) Error() string   { return "would block" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

var errWouldBlock net.Error = wouldBlock{}

// hardError is any other I/O error, wrapped so that it is not a net.Error:
// syscall.Errno is one, and says Temporary() for ETIMEDOUT, EINTR or
// EMFILE, which would keep a dead connection alive inside crypto/tls.
type hardError struct{ err error }

func (e *hardError) Error() string { return e.err.Error() }
func (e *hardError) Unwrap() error { return e.err }

// transport is the net.Conn under a tls.Conn a loop drives itself.
// It reads and writes the raw socket fd, in one of three ways:
//
//   - During the handshake, on the handshake's goroutine, it waits for the
//     socket in Go's netpoller (hs), until the deadline or until the pool
//     closes.
//   - Once the handshake is done, on the socket's event loop, it never
//     waits: a read with nothing there is errWouldBlock. A read takes what
//     the socket has into in (a buffer borrowed while it holds bytes) and
//     gives crypto/tls a record at a time, so that the bytes crypto/tls
//     has not taken are all the transport's, and a short read from the
//     socket tells the loop it is drained, as on a plain socket. A write never
//     fails for want of room: what the kernel does not take waits in
//     pending (a buffer borrowed from bufs only while it holds bytes) for
//     the next EPOLLOUT. crypto/tls makes every write error permanent, and
//     has advanced the record's sequence number by then, so a record
//     cannot be written again.
//   - Handed to the HTTP server (a plain request over TLS), it reads and
//     writes through nc, a net.Conn of Go's on the same socket.
//
// The loop owns the socket from accept to close; the handshake borrows it
// until it is done. Not safe for concurrent use.
type transport struct {
	fd     int
	peer   net.Addr
	prefix []byte // bytes the loop read before the handshake: read first

	hs *netWait // during the handshake: reads and writes wait

	in      *[]byte // ciphertext read from the socket, not yet given to crypto/tls; nil when none
	inOff   int
	drained bool         // a read from the socket during the Side's current Read was short or found nothing
	records recordCursor // where the stream given to crypto/tls stands

	bufs    *pendingBufs // lends pending
	pending *[]byte      // ciphertext the kernel has not taken yet; nil when none
	corked  bool         // writes only append to pending until flush
	batched int          // bytes of pending the caller writes in a batch of its own (Seal to Sent), which flush leaves
	werr    error        // the write error that ended the connection

	nc net.Conn // after a hand-off to the HTTP server
}

func (t *transport) Read(p []byte) (int, error) {
	switch {
	case len(t.prefix) > 0:
		n := copy(p, t.prefix)
		t.records.advance(t.prefix[:n])
		t.prefix = t.prefix[n:]
		return n, nil
	case t.in != nil:
		return t.give(p), nil
	case t.nc != nil:
		return t.nc.Read(p)
	case t.hs != nil:
		n, err := t.hs.read(p)
		if err != nil {
			return n, err
		}
		if n == 0 {
			return 0, io.EOF
		}
		t.records.advance(p[:n])
		return n, nil
	}
	buf := t.bufs.get()
	n, err := evloop.ReadFD(t.fd, (*buf)[:cap(*buf)])
	if n <= 0 || err != nil {
		t.bufs.put(buf)
		t.drained = true
		switch {
		case err == unix.EAGAIN:
			return 0, errWouldBlock
		case err != nil:
			return 0, &hardError{os.NewSyscallError("read", err)}
		}
		return 0, io.EOF
	}
	t.drained = n < cap(*buf)
	*buf = (*buf)[:n]
	t.in, t.inOff = buf, 0
	return t.give(p), nil
}

// give copies into p what in holds, up to the end of the current record,
// and lets go of in once it is empty.
func (t *transport) give(p []byte) int {
	rest := (*t.in)[t.inOff:]
	n := copy(p, rest[:t.records.toEnd(rest)])
	t.records.advance(rest[:n])
	t.inOff += n
	if t.inOff == len(*t.in) {
		t.bufs.put(t.in)
		t.in = nil
	}
	return n
}

// waiting reports whether ciphertext read from the socket waits for
// crypto/tls, or the socket may hold more: false once a read from the
// socket found it drained and everything it brought was given.
func (t *transport) waiting() bool { return t.in != nil || !t.drained }

func (t *transport) Write(p []byte) (int, error) {
	if t.nc != nil {
		if err := t.flushTo(t.nc); err != nil {
			return 0, err
		}
		return t.nc.Write(p)
	}
	if t.hs != nil {
		return t.hs.write(p)
	}
	if t.werr != nil {
		return 0, t.werr
	}
	total := len(p)
	if t.pending == nil && !t.corked {
		n, err := evloop.WriteFD(t.fd, p)
		if err != nil && err != unix.EAGAIN {
			t.werr = &hardError{os.NewSyscallError("write", err)}
			return 0, t.werr
		}
		p = p[n:]
	}
	if len(p) > 0 {
		// What the kernel had no room for waits for the next flush.
		t.hold(p)
	}
	return total, nil
}

// hold keeps p for the next flush, in a buffer borrowed until then.
func (t *transport) hold(p []byte) {
	if t.pending == nil {
		t.pending = t.bufs.get()
	}
	*t.pending = append(*t.pending, p...)
}

// drop gives pending back, whatever it still holds.
func (t *transport) drop() {
	if t.pending != nil {
		t.bufs.put(t.pending)
		t.pending = nil
	}
}

// dropIn gives in back, whatever it still holds.
func (t *transport) dropIn() {
	if t.in != nil {
		t.bufs.put(t.in)
		t.in = nil
	}
}

// flush writes what is pending. It reports whether nothing is left; when
// something is, the next EPOLLOUT flushes again.
func (t *transport) flush() (bool, error) {
	t.corked = false
	if t.werr != nil {
		return false, t.werr
	}
	if t.pending == nil {
		return true, nil
	}
	if t.batched > 0 {
		return false, nil
	}
	return t.sent(evloop.WriteFD(t.fd, *t.pending))
}

// sent takes the result of a write of pending to the socket, whoever
// made it: what the socket took goes, the rest waits. It reports whether
// nothing is left.
func (t *transport) sent(n int, err error) (bool, error) {
	if t.pending == nil {
		return true, nil
	}
	rest := (*t.pending)[max(n, 0):]
	switch {
	case err != nil && err != unix.EAGAIN:
		t.werr = &hardError{os.NewSyscallError("write", err)}
		t.drop()
		return false, t.werr
	case len(rest) > 0:
		*t.pending = append((*t.pending)[:0], rest...)
		return false, nil
	}
	t.drop()
	return true, nil
}

// flushTo writes what is pending through w, once the socket has a
// net.Conn of Go's.
func (t *transport) flushTo(w io.Writer) error {
	if t.pending == nil {
		return nil
	}
	_, err := w.Write(*t.pending)
	t.drop()
	return err
}

// held reports whether ciphertext waits for the socket to take it.
func (t *transport) held() bool { return t.pending != nil }

// Close does nothing: the socket's loop closes it. crypto/tls closes its
// transport only from Close, which the proxy does not call.
func (t *transport) Close() error { return nil }

func (t *transport) LocalAddr() net.Addr {
	if t.nc != nil {
		return t.nc.LocalAddr()
	}
	return evloop.LocalAddr(t.fd)
}

func (t *transport) RemoteAddr() net.Addr { return t.peer }

func (t *transport) SetDeadline(d time.Time) error {
	if t.nc != nil {
		return t.nc.SetDeadline(d)
	}
	return nil
}

func (t *transport) SetReadDeadline(d time.Time) error {
	if t.nc != nil {
		return t.nc.SetReadDeadline(d)
	}
	return nil
}

func (t *transport) SetWriteDeadline(d time.Time) error {
	if t.nc != nil {
		return t.nc.SetWriteDeadline(d)
	}
	return nil
}
