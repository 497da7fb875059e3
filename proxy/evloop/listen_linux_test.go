//go:build linux

package evloop

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A client accepted from Listen's sockets comes with its own address and
// with TCP_NODELAY already on, inherited from the listener.
func TestListenAcceptsWithPeerAndNoDelay(t *testing.T) {
	ln, err := Listen("127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 3, 7)}}).Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := netip.MustParseAddrPort(c.LocalAddr().String())
	// The kernel put the connection in one socket's queue: find it.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		for _, lfd := range ln.fds {
			fd, peer, err := accept(lfd)
			if errors.Is(err, unix.EAGAIN) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			if peer != want {
				t.Fatalf("accepted peer %v, want %v", peer, want)
			}
			if v, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY); err != nil || v == 0 {
				t.Fatalf("TCP_NODELAY on the accepted socket = %d, %v; want it on", v, err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no socket of the listener had the connection")
		}
	}
}

// A port something already listens on is refused, as with a plain
// listener, though the proxy's own sockets share theirs; a port given as 0
// on every address is chosen once and reached over IPv4.
func TestListenPorts(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if ln, err := Listen(busy.Addr().String(), 0); err == nil {
		ln.Close()
		t.Fatalf("Listen on a port in use succeeded")
	} else if !errors.Is(err, unix.EADDRINUSE) || !strings.Contains(err.Error(), busy.Addr().String()) {
		t.Fatalf("Listen on a port in use: %v, want address already in use naming it", err)
	}
	ln, err := Listen("127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := Listen(ln.Addr().String(), 0); err == nil {
		again.Close()
		t.Fatal("a second Listen on the first's port succeeded")
	}
	ln.Close()
	if _, err := Listen("127.0.0.1", 0); err == nil || !strings.Contains(err.Error(), "missing port") {
		t.Fatalf("Listen without a port: %v", err)
	}

	any, err := Listen(":0", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer any.Close()
	port := any.Addr().(*net.TCPAddr).Port
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatalf("dial the every-address listener over IPv4: %v", err)
	}
	c.Close()
}
