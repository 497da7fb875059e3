//go:build linux

package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"

	"github.com/wsedge/wsedge/upstream"
	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

// A client accepted from ListenTCP's sockets comes with its own address and
// with TCP_NODELAY already on, inherited from the listener.
func TestListenTCPAcceptsWithPeerAndNoDelay(t *testing.T) {
	ln, err := ListenTCP("127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lln := ln.(*loopListener)
	c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 3, 7)}}).Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := netip.MustParseAddrPort(c.LocalAddr().String())
	// The kernel put the connection in one socket's queue: find it.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		for _, lfd := range lln.fds {
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

// Every loop accepts: clients from many source addresses (which the kernel
// spreads over the sockets by their addresses) all get through, and
// closing the listener ends Serve and frees the port at once.
func TestListenTCPSpreadsAndCloses(t *testing.T) {
	b := upstreamtest.Start(t, upstreamtest.WithName("b1"))
	srv := New(Config{}, upstream.NewSet([]upstream.Backend{{Addr: b.Addr, Weight: 1}}))
	ln, err := ListenTCP("127.0.0.1:0", srv.Loops())
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()

	const clients = 64
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Go(func() {
			d := websocket.Dialer{NetDial: func(network, a string) (net.Conn, error) {
				nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, byte(10+i/8), byte(1+i%8))}}
				return nd.Dial(network, a)
			}}
			c, _, err := d.Dial("ws://"+addr+"/", nil)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			msg := fmt.Sprintf("client %d", i)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
				errs <- err
				return
			}
			if _, got, err := c.ReadMessage(); err != nil || string(got) != msg {
				errs <- fmt.Errorf("client %d: echo %q, %v", i, got, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Plain HTTP on the same sockets goes to the HTTP path.
	res, err := http.Get("http://" + addr + "/plain")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("plain GET: %s", res.Status)
	}

	ln.Close()
	select {
	case err := <-served:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Serve returned %v after Close, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
	// The loops close their sockets between two events: the port is free
	// a moment later.
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		again, err := net.Listen("tcp", addr)
		if err == nil {
			again.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("port still taken after Close: %v", err)
		}
	}
}

// A port something already listens on is refused, as with a plain
// listener, though the proxy's own sockets share theirs; a port given as 0
// on every address is chosen once and reached over IPv4.
func TestListenTCPPorts(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if ln, err := ListenTCP(busy.Addr().String(), 0); err == nil {
		ln.Close()
		t.Fatalf("ListenTCP on a port in use succeeded")
	} else if !errors.Is(err, unix.EADDRINUSE) || !strings.Contains(err.Error(), busy.Addr().String()) {
		t.Fatalf("ListenTCP on a port in use: %v, want address already in use naming it", err)
	}
	ln, err := ListenTCP("127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := ListenTCP(ln.Addr().String(), 0); err == nil {
		again.Close()
		t.Fatal("a second ListenTCP on the first's port succeeded")
	}
	ln.Close()
	if _, err := ListenTCP("127.0.0.1", 0); err == nil || !strings.Contains(err.Error(), "missing port") {
		t.Fatalf("ListenTCP without a port: %v", err)
	}

	any, err := ListenTCP(":0", 0)
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
