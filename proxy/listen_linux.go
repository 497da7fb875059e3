//go:build linux

package proxy

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
	"unsafe"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// ListenTCP opens a client listener whose connections the event loops
// accept themselves: one SO_REUSEPORT socket per loop, so that a client is
// accepted, upgraded and relayed on one thread, with no goroutine woken
// and no hand-over between threads per connection, whether it speaks plain
// TCP, TLS (WithTLS) or comes through a PROXY protocol balancer
// (WithProxyProtocol). loops is the number of loops of the Server that
// will serve it (Server.Loops); zero means one per processor the Go runtime
// may use, as for a Server built without WithLoops. Serve it with
// Server.Serve; other servers cannot accept from it.
func ListenTCP(address string, loops int, opts ...ListenOption) (net.Listener, error) {
	ap, err := resolveTCP(address)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (net.Listener, error) {
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
	ln := &loopListener{closed: make(chan struct{}), mode: newClientMode(opts)}
	if loops <= 0 {
		loops = runtime.GOMAXPROCS(0)
	}
	backlog := listenBacklog()
	for range loops {
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

// accept takes a connection from a listening socket with a raw system
// call that also yields the peer's address (x/sys's Accept4 asks the
// kernel for the socket's protocol on top, for every client).
func accept(fd int) (int, netip.AddrPort, error) {
	var sa unix.RawSockaddrAny
	size := uint32(unsafe.Sizeof(sa))
	nfd, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(fd), uintptr(unsafe.Pointer(&sa)),
		uintptr(unsafe.Pointer(&size)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, netip.AddrPort{}, e
	}
	switch sa.Addr.Family {
	case unix.AF_INET:
		in := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa))
		return int(nfd), netip.AddrPortFrom(netip.AddrFrom4(in.Addr), ntohs(in.Port)), nil
	case unix.AF_INET6:
		in := (*unix.RawSockaddrInet6)(unsafe.Pointer(&sa))
		return int(nfd), netip.AddrPortFrom(netip.AddrFrom16(in.Addr).Unmap(), ntohs(in.Port)), nil
	}
	unix.Close(int(nfd))
	return -1, netip.AddrPort{}, unix.EAFNOSUPPORT
}

// ntohs reads a port as the kernel stores it, in network byte order.
func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// loopListener is the set of listening sockets ListenTCP opened. Until
// Serve gives each to a loop they only queue connections.
type loopListener struct {
	addr   *net.TCPAddr
	mode   clientMode // what its clients speak before HTTP
	mu     sync.Mutex
	fds    []int
	owners []*loop // the loop each socket is registered with
	closed chan struct{}
	// closing is set by Close, before the sockets' loops get to close
	// them: what they accept meanwhile is not taken.
	closing atomic.Bool
}

// Accept waits for Close: connections are accepted by the event loops.
func (l *loopListener) Accept() (net.Conn, error) {
	<-l.closed
	return nil, net.ErrClosed
}

func (l *loopListener) Addr() net.Addr { return l.addr }

// Close stops accepting: each socket is closed on its loop, between two
// events, or at once when no loop has it.
func (l *loopListener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing.Swap(true) {
		return nil
	}
	close(l.closed)
	for i, fd := range l.fds {
		var owner *loop
		if i < len(l.owners) {
			owner = l.owners[i]
		}
		if owner == nil || !owner.post(func() { owner.unregister(fd); unix.Close(fd) }) {
			unix.Close(fd)
		}
	}
	return nil
}

// serveLoops registers ln's sockets with the loops and waits for Close.
func (s *Server) serveLoops(ln *loopListener) error {
	loops, err := s.poll.all()
	if err != nil {
		return fmt.Errorf("event loops: %w", err)
	}
	if err := ln.register(s, loops); err != nil {
		return err
	}
	<-ln.closed
	return net.ErrClosed
}

// register hands every socket to a loop.
func (l *loopListener) register(s *Server, loops []*loop) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing.Load() {
		return net.ErrClosed
	}
	if len(l.owners) > 0 {
		return errors.New("listener served twice")
	}
	l.owners = make([]*loop, len(l.fds))
	for i, fd := range l.fds {
		owner := loops[i%len(loops)]
		a := &acceptor{srv: s, loop: owner, ln: l, fd: fd}
		registered := make(chan error, 1)
		if !owner.post(func() { registered <- owner.register(fd, a, unix.EPOLLIN) }) {
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
	srv     *Server
	loop    *loop
	ln      *loopListener
	fd      int
	backoff time.Duration // while out of descriptors
}

// onEvent accepts one connection per readiness report, as nginx does by
// default: the socket is level-triggered, so a queue is reported again on
// the next turn, between the other connections' events, and no accept ends
// in EAGAIN.
func (a *acceptor) onEvent(_ int, _ uint32, now int64) {
	if a.ln.closing.Load() {
		return
	}
	fd, peer, err := accept(a.fd)
	switch {
	case err == nil:
		a.backoff = 0
		a.srv.acceptedOnLoop(a.loop, fd, peer, &a.ln.mode, now)
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
	a.srv.log.Warn("accept failed; retrying", zap.Error(err), zap.Duration("in", a.backoff))
	ev := unix.EpollEvent{Fd: int32(a.fd)}
	unix.EpollCtl(a.loop.epfd, unix.EPOLL_CTL_MOD, a.fd, &ev)
	time.AfterFunc(a.backoff, func() {
		a.loop.post(func() {
			if a.fd >= len(a.loop.conns) || a.loop.conns[a.fd] != loopConn(a) {
				return // closed meanwhile; the number may be another socket's now
			}
			ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(a.fd)}
			unix.EpollCtl(a.loop.epfd, unix.EPOLL_CTL_MOD, a.fd, &ev)
		})
	})
}

// halt: the listener owns the socket and closes it.
func (a *acceptor) halt(int64) {}

// acceptedOnLoop starts the handshake of a client accepted on l, which
// speaks what mode says before HTTP. Whatever the loop does not relay
// itself (plain HTTP, backends over TLS) goes to the HTTP path once its
// head is read, as upgrade.handOff decides.
func (s *Server) acceptedOnLoop(l *loop, fd int, peer netip.AddrPort, mode *clientMode, now int64) {
	u := &upgrade{srv: s, loop: l, cfd: fd, bfd: -1, peer: peer, mode: mode, started: now}
	u.start()
}
