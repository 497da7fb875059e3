//go:build linux

package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsedge/wsedge/upstream"
	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

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
