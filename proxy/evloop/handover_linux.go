//go:build linux

package evloop

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// What a binary upgrade needs of the poller: a Listener's sockets lent to
// another process and taken off the loops meanwhile, a Listener built
// around sockets another process lent, and a look at every handler of a
// loop. The sockets themselves cross between processes by SCM_RIGHTS,
// which is the caller's business.

// Dup returns duplicates of the listening sockets, for another process to
// accept from: they are the same sockets, and connections queued on them
// go to whichever process accepts first. The caller owns and closes the
// duplicates.
func (l *Listener) Dup() ([]int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing.Load() {
		return nil, net.ErrClosed
	}
	var out []int
	for _, fd := range l.fds {
		d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			for _, d := range out {
				unix.Close(d)
			}
			return nil, os.NewSyscallError("fcntl", err)
		}
		out = append(out, d)
	}
	return out, nil
}

// Pause takes the sockets off their loops, which stop accepting from
// them; the kernel goes on queueing connections, for Resume or for
// another process that holds the sockets too. It returns once no loop
// accepts any more.
func (l *Listener) Pause() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing.Load() {
		return net.ErrClosed
	}
	if l.paused || len(l.owners) == 0 {
		l.paused = true
		return nil
	}
	for i, fd := range l.fds {
		owner := l.owners[i]
		if owner == nil {
			continue
		}
		done := make(chan struct{})
		if !owner.Post(func() { owner.Release(fd); close(done) }) {
			continue // the loop stopped and registers nothing any more
		}
		<-done
	}
	l.paused = true
	return nil
}

// Resume gives paused sockets back to the loops Serve gave them to.
func (l *Listener) Resume() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing.Load() {
		return net.ErrClosed
	}
	if !l.paused {
		return nil
	}
	l.paused = false
	if len(l.targets) == 0 {
		return nil // not served yet: Serve registers them
	}
	return l.registerLocked()
}

// Adopt builds a Listener around listening sockets another process opened
// and lent (see Dup), to be served like one from Listen, with n sockets
// at least (n <= 0: one per processor the Go runtime may use): when there
// are fewer, more are opened on the same address with SO_REUSEPORT, as
// the lent ones were. Adopt takes the descriptors over, closing them when
// it fails.
func Adopt(fds []int, n int) (*Listener, error) {
	ln := &Listener{closed: make(chan struct{}), fds: fds}
	fail := func(err error) (*Listener, error) {
		ln.Close()
		return nil, err
	}
	if len(fds) == 0 {
		return nil, errors.New("adopt: no socket")
	}
	var ap netip.AddrPort
	for i, fd := range fds {
		got, err := listening(fd)
		if err != nil {
			return fail(fmt.Errorf("adopt socket %d: %w", fd, err))
		}
		if i == 0 {
			ap = got
		} else if got != ap {
			return fail(fmt.Errorf("adopt: sockets listen on %s and %s", ap, got))
		}
	}
	if n <= 0 {
		n = len(fds)
	}
	for len(ln.fds) < n {
		fd, err := listenReusePort(ap, listenBacklog())
		if err != nil {
			return fail(&net.OpError{Op: "listen", Net: "tcp", Addr: net.TCPAddrFromAddrPort(ap), Err: err})
		}
		ln.fds = append(ln.fds, fd)
	}
	ln.addr = net.TCPAddrFromAddrPort(ap)
	return ln, nil
}

// listening checks that fd is a listening TCP socket, makes it
// non-blocking and close-on-exec, and returns its address.
func listening(fd int) (netip.AddrPort, error) {
	if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || v != 1 {
		return netip.AddrPort{}, errors.New("not a listening socket")
	}
	if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil || v != unix.IPPROTO_TCP {
		return netip.AddrPort{}, errors.New("not a TCP socket")
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return netip.AddrPort{}, os.NewSyscallError("fcntl", err)
	}
	unix.CloseOnExec(fd)
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return netip.AddrPort{}, os.NewSyscallError("getsockname", err)
	}
	ap := tcpAddr(sa).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// Each calls f with every descriptor registered with the loop and its
// handler, in the order of the descriptors. It runs on the loop's
// goroutine; f must not register or unregister descriptors.
func (l *Loop) Each(f func(fd int, h Handler)) {
	for fd, h := range l.handlers {
		if h != nil {
			f(fd, h)
		}
	}
}
