//go:build linux

package looptls

import (
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wsedge/wsedge/proxy/evloop"
)

// pollSlice is how long a handshake that waits with poll(2) waits at a
// time before it looks whether the pool closed.
const pollSlice = 100 * time.Millisecond

// netWait is a running handshake's hold on its socket and on the pool's
// CPU. The socket is a duplicate of the loop's descriptor, in Go's
// netpoller, where the handshake waits for its client's next flight
// without a thread of its own; the compute slot is one of the pool's,
// held while the handshake computes and given back while it waits, so
// that handshakes waiting on slow clients never keep others from
// computing, and all of them together never take more than the slots'
// worth of cores. Used by the handshake's goroutine only; Pool.Close sets
// file's deadline from elsewhere, which os.File allows.
//
// A proxy out of descriptors has none to duplicate: its handshakes then
// wait for the loop's descriptor itself with poll(2), a thread each, so
// that the client it could accept still gets an answer (a 503, when the
// backend's socket cannot be opened either).
type netWait struct {
	pool     *Pool
	fd       int             // the loop's socket
	file     *os.File        // the duplicate, closed when the handshake ends; nil when none
	rc       syscall.RawConn // file's
	deadline time.Time
	slot     bool // holds one of pool.slots
	begun    bool // has computed: goes before handshakes yet to begin
}

// newNetWait puts a duplicate of socket fd in the netpoller, with the
// handshake's deadline; without a descriptor to spare, it waits with
// poll(2) on fd.
func newNetWait(p *Pool, fd int, deadline time.Time) (*netWait, error) {
	w := &netWait{pool: p, fd: fd, deadline: deadline}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	switch {
	case err == unix.EMFILE || err == unix.ENFILE:
		return w, nil
	case err != nil:
		return nil, &hardError{os.NewSyscallError("fcntl", err)}
	}
	// The duplicate shares the socket's file description, non-blocking
	// already: os.NewFile sees that and registers it with the netpoller.
	f := os.NewFile(uintptr(dup), "tls handshake")
	rc, err := f.SyscallConn()
	if err == nil {
		err = f.SetDeadline(deadline) // fails if the netpoller refused it
	}
	if err != nil {
		f.Close()
		return nil, &hardError{err}
	}
	w.file, w.rc = f, rc
	return w, nil
}

// read reads what the socket has into p, waiting for it when nothing is
// there yet; (0, nil) at the end of the stream.
func (w *netWait) read(p []byte) (int, error) {
	var n int
	var err error
	waitErr := w.attempt(unix.POLLIN, func(fd int) bool {
		n, err = evloop.ReadFD(fd, p)
		return w.attempted(err)
	})
	return n, w.resume(waitErr, err, "read")
}

// write writes all of p, waiting for room as it needs to.
func (w *netWait) write(p []byte) (int, error) {
	total := 0
	var err error
	waitErr := w.attempt(unix.POLLOUT, func(fd int) bool {
		err = nil
		for len(p) > 0 && err == nil {
			var n int
			n, err = evloop.WriteFD(fd, p)
			p, total = p[n:], total+n
		}
		return w.attempted(err)
	})
	return total, w.resume(waitErr, err, "write")
}

// attempt calls f until it says the attempt is over, waiting for the
// socket to be ready for events in between.
func (w *netWait) attempt(events int16, f func(fd int) bool) error {
	if w.rc != nil {
		try := func(fd uintptr) bool { return f(int(fd)) }
		if events == unix.POLLIN {
			return w.rc.Read(try)
		}
		return w.rc.Write(try)
	}
	for !f(w.fd) {
		if err := w.poll(events); err != nil {
			return err
		}
	}
	return nil
}

// poll waits with poll(2) until the socket is ready for events, the
// deadline passes or the pool closes.
func (w *netWait) poll(events int16) error {
	for {
		if w.pool.stopped() {
			return errPoolStopped
		}
		left := time.Until(w.deadline)
		if left <= 0 {
			return os.ErrDeadlineExceeded
		}
		fds := []unix.PollFd{{Fd: int32(w.fd), Events: events}}
		n, err := unix.Poll(fds, int(min(left, pollSlice)/time.Millisecond)+1)
		switch {
		case err == unix.EINTR:
		case err != nil:
			return &hardError{os.NewSyscallError("poll", err)}
		case n > 0:
			return nil
		}
	}
}

// attempted reports whether an attempt that ended with err is over: it is
// unless the socket said EAGAIN. The netpoller then waits for the
// socket, which it made sure to hear of from before the attempt, so no
// edge is lost; and the slot goes back to the pool first, for another
// handshake to compute meanwhile.
func (w *netWait) attempted(err error) bool {
	if err == unix.EAGAIN {
		w.release()
		return false
	}
	return true
}

// resume takes a compute slot again after an attempt, and says how it
// went: waitErr is the netpoller's (the deadline, or the pool closing),
// err the system call's.
func (w *netWait) resume(waitErr, err error, op string) error {
	switch {
	case waitErr != nil && w.pool.stopped():
		return errPoolStopped
	case waitErr != nil:
		return waitErr
	case err != nil:
		return &hardError{os.NewSyscallError(op, err)}
	}
	return w.acquire()
}

// acquire takes a compute slot, unless the handshake holds one already;
// it gives up when the deadline passes or the pool closes.
func (w *netWait) acquire() error {
	if w.slot {
		return nil
	}
	if err := w.pool.slots.acquire(w.begun, w.pool.done, w.deadline); err != nil {
		return err
	}
	w.slot, w.begun = true, true
	return nil
}

// release gives the compute slot back, if the handshake holds it.
func (w *netWait) release() {
	if w.slot {
		w.pool.slots.release()
		w.slot = false
	}
}

// close closes the duplicate, if the handshake has one.
func (w *netWait) close() {
	if w.file != nil {
		w.file.Close()
	}
}
