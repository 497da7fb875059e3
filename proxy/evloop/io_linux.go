//go:build linux

package evloop

import (
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ReadFD reads from a non-blocking descriptor: unix.EAGAIN when nothing is
// there, (0, nil) at the end of the stream.
func ReadFD(fd int, p []byte) (int, error) { return rawIO(unix.SYS_READ, fd, p) }

// WriteFD writes to a non-blocking descriptor what it takes now:
// unix.EAGAIN when it takes nothing.
func WriteFD(fd int, p []byte) (int, error) { return rawIO(unix.SYS_WRITE, fd, p) }

// rawIO reads or writes with a raw system call: the sockets are
// non-blocking, so a call never waits, and skipping the scheduler's
// bookkeeping for a blocking call keeps the loop's thread and processor
// together.
func rawIO(sysno uintptr, fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, _, e := unix.RawSyscall(sysno, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case 0:
			return int(n), nil
		case unix.EINTR:
			continue
		}
		return 0, e
	}
}

// epollPoll collects ready events without waiting: a raw system call,
// since it never blocks.
func epollPoll(epfd int, events []unix.EpollEvent) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])),
		uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
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

// LocalAddr is the address a TCP socket is bound to; an empty address
// when the kernel cannot say.
func LocalAddr(fd int) *net.TCPAddr {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return &net.TCPAddr{}
	}
	return tcpAddr(sa)
}

// PeerAddr is the address a TCP socket is connected to; an empty address
// when the kernel cannot say.
func PeerAddr(fd int) *net.TCPAddr {
	sa, _ := unix.Getpeername(fd)
	return tcpAddr(sa)
}

// tcpAddr turns a socket address into a *net.TCPAddr.
func tcpAddr(sa unix.Sockaddr) *net.TCPAddr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	}
	return &net.TCPAddr{}
}
