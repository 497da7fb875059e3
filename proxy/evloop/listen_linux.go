//go:build linux

package evloop

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Listen opens n listening sockets on address with SO_REUSEPORT, one for
// each loop that will accept from it (Serve), so that a client is accepted
// and served on one thread with no hand-over between threads; n <= 0 means
// one per processor the Go runtime may use. A port of 0 is chosen once for
// all of them; a port something else listens on already is refused, as
// with a plain listener.
func Listen(address string, n int) (*Listener, error) {
	ap, err := resolveTCP(address)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Listener, error) {
		return nil, &net.OpError{Op: "listen", Net: "tcp", Addr: net.TCPAddrFromAddrPort(ap), Err: err}
	}
	if ap.Port() != 0 {
		// Sockets with SO_REUSEPORT share a port with any other process of
		// the same user that sets it too: a second proxy started on a
		// taken port must fail, as it would with a plain listener.
		if err := probeFree(ap); err != nil {
			return fail(err)
		}
	}
	ln := &Listener{closed: make(chan struct{})}
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	backlog := listenBacklog()
	for range n {
		fd, err := listenReusePort(ap, backlog)
		if err != nil {
			ln.Close()
			return fail(err)
		}
		ln.fds = append(ln.fds, fd)
		if ap.Port() == 0 {
			// The first socket chose the port; the others share it.
			sa, err := unix.Getsockname(fd)
			if err != nil {
				ln.Close()
				return fail(os.NewSyscallError("getsockname", err))
			}
			ap = netip.AddrPortFrom(ap.Addr(), uint16(sockaddrPort(sa)))
		}
	}
	ln.addr = net.TCPAddrFromAddrPort(ap)
	return ln, nil
}

// resolveTCP turns "host:port" into an address to bind; an empty host is
// every IPv6 and IPv4 address, as with net.Listen, or every IPv4 address
// on a system without IPv6.
func resolveTCP(address string) (netip.AddrPort, error) {
	a, err := net.ResolveTCPAddr("tcp", address)
	if err != nil {
		return netip.AddrPort{}, &net.OpError{Op: "listen", Net: "tcp", Err: err}
	}
	ip, ok := netip.AddrFromSlice(a.IP)
	if !ok {
		ip = netip.IPv6Unspecified()
		if !hasIPv6() {
			ip = netip.IPv4Unspecified()
		}
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(a.Port)), nil
}

// probeFree binds, without listening, a socket that does not share its
// port: it fails when anything listens on ap.
func probeFree(ap netip.AddrPort) error {
	fd, sa, err := socketFor(ap)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) // connections in TIME_WAIT do not count
	if err := unix.Bind(fd, sa); err != nil {
		return os.NewSyscallError("bind", err)
	}
	return nil
}

// socketFor opens a TCP socket for ap's family. The unspecified IPv6
// address takes IPv4 clients too.
func socketFor(ap netip.AddrPort) (int, unix.Sockaddr, error) {
	if ap.Addr().Is4() {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
		if err != nil {
			return -1, nil, os.NewSyscallError("socket", err)
		}
		return fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}, nil
	}
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, nil, os.NewSyscallError("socket", err)
	}
	if ap.Addr().IsUnspecified() {
		unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0)
	}
	return fd, &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}, nil
}

// hasIPv6 reports whether the system can open IPv6 sockets.
func hasIPv6() bool {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

func listenReusePort(ap netip.AddrPort, backlog int) (int, error) {
	fd, sa, err := socketFor(ap)
	if err != nil {
		return -1, err
	}
	// Accepted sockets inherit TCP_NODELAY from the listener, which spares
	// a system call per client.
	for _, opt := range [][2]int{{unix.SOL_SOCKET, unix.SO_REUSEADDR}, {unix.SOL_SOCKET, unix.SO_REUSEPORT}, {unix.IPPROTO_TCP, unix.TCP_NODELAY}} {
		if err := unix.SetsockoptInt(fd, opt[0], opt[1], 1); err != nil {
			unix.Close(fd)
			return -1, os.NewSyscallError("setsockopt", err)
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("bind", err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("listen", err)
	}
	return fd, nil
}

// listenBacklog is the kernel's somaxconn, as Go's own listeners use.
func listenBacklog() int {
	b, err := os.ReadFile("/proc/sys/net/core/somaxconn")
	if err == nil {
		var n int
		if _, err := fmt.Sscan(string(b), &n); err == nil && n > 0 {
			return n
		}
	}
	return unix.SOMAXCONN
}

func sockaddrPort(sa unix.Sockaddr) int {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return a.Port
	case *unix.SockaddrInet6:
		return a.Port
	}
	return 0
}

// Listener is the set of listening sockets Listen opened. Until Serve
// gives each to a loop they only queue connections. It is a net.Listener
// whose Accept only waits for Close: the loops accept its connections
// themselves. Safe for concurrent use.
type Listener struct {
	addr    *net.TCPAddr
	mu      sync.Mutex
	fds     []int
	owners  []*Loop  // the loop each socket is registered with
	targets []Target // what Serve was given, for Resume
	paused  bool     // Pause took the sockets off their loops
	closed  chan struct{}
	// closing is set by Close, before the sockets' loops get to close
	// them: what they accept meanwhile is not taken.
	closing atomic.Bool
}

var _ net.Listener = (*Listener)(nil)

// Accept waits for Close: connections are accepted by the event loops.
func (l *Listener) Accept() (net.Conn, error) {
	<-l.closed
	return nil, net.ErrClosed
}

// Addr is the address the sockets listen on.
func (l *Listener) Addr() net.Addr { return l.addr }

// Close stops accepting: each socket is closed on its loop, between two
// events, or at once when no loop has it.
func (l *Listener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing.Swap(true) {
		return nil
	}
	close(l.closed)
	for i, fd := range l.fds {
		var owner *Loop
		if i < len(l.owners) {
			owner = l.owners[i]
		}
		// Release, not Unregister: a socket handed over to another process
		// lives on there, and epoll would go on reporting it here.
		if owner == nil || !owner.Post(func() { owner.Release(fd); unix.Close(fd) }) {
			unix.Close(fd)
		}
	}
	return nil
}

// Target is a loop that accepts from one of a Listener's sockets, and
// what it does with each connection it accepts: Accepted runs on the
// loop's goroutine with the new socket, non-blocking and Accepted's to own
// from then on, and the client's address.
type Target struct {
	Loop     *Loop
	Accepted func(fd int, peer netip.AddrPort, now int64)
}

// Serve hands the sockets to targets, socket i to targets[i%len(targets)],
// and waits for Close. It returns net.ErrClosed, or why the sockets could
// not all be handed over.
func (l *Listener) Serve(targets []Target) error {
	if err := l.register(targets); err != nil {
		return err
	}
	<-l.closed
	return net.ErrClosed
}

// register hands every socket to a target's loop.
func (l *Listener) register(targets []Target) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing.Load() {
		return net.ErrClosed
	}
	if len(l.owners) > 0 {
		return errors.New("listener served twice")
	}
	l.targets = targets
	return l.registerLocked()
}

// registerLocked registers every socket with its target's loop. l.mu must
// be held.
func (l *Listener) registerLocked() error {
	targets := l.targets
	l.owners = make([]*Loop, len(l.fds))
	for i, fd := range l.fds {
		t := targets[i%len(targets)]
		owner := t.Loop
		a := &acceptor{loop: owner, ln: l, fd: fd, accepted: t.Accepted}
		registered := make(chan error, 1)
		if !owner.Post(func() { registered <- owner.Register(fd, a, unix.EPOLLIN) }) {
			return errors.New("event loops stopped")
		}
		if err := <-registered; err != nil {
			return err
		}
		l.owners[i] = owner
	}
	return nil
}

// acceptor takes connections from one listening socket on its loop.
type acceptor struct {
	loop     *Loop
	ln       *Listener
	fd       int
	accepted func(fd int, peer netip.AddrPort, now int64)
	backoff  time.Duration // while out of descriptors
}

// OnEvent accepts one connection per readiness report, as nginx does by
// default: the socket is level-triggered, so a queue is reported again on
// the next turn, between the other connections' events, and no accept ends
// in EAGAIN.
func (a *acceptor) OnEvent(_ int, _ uint32, now int64) {
	if a.ln.closing.Load() {
		return
	}
	fd, peer, err := accept(a.fd)
	switch {
	case err == nil:
		a.backoff = 0
		a.accepted(fd, peer, now)
	case errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) || errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM):
		a.pause(err)
	}
	// EAGAIN, ECONNABORTED, EINTR: nothing to take this time.
}

// pause stops accepting for a while when the process or the system is out
// of descriptors or memory, rather than spinning on the same error: the
// kernel keeps queueing meanwhile.
func (a *acceptor) pause(err error) {
	a.backoff = min(max(2*a.backoff, 5*time.Millisecond), time.Second)
	a.loop.log.Warn("accept failed; retrying", zap.Error(err), zap.Duration("in", a.backoff))
	ev := unix.EpollEvent{Fd: int32(a.fd)}
	unix.EpollCtl(a.loop.epfd, unix.EPOLL_CTL_MOD, a.fd, &ev)
	time.AfterFunc(a.backoff, func() {
		a.loop.Post(func() {
			if a.fd >= len(a.loop.handlers) || a.loop.handlers[a.fd] != Handler(a) {
				return // closed meanwhile; the number may be another socket's now
			}
			ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(a.fd)}
			unix.EpollCtl(a.loop.epfd, unix.EPOLL_CTL_MOD, a.fd, &ev)
		})
	})
}

// Halt: the listener owns the socket and closes it.
func (a *acceptor) Halt(int64) {}
