package proxy

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"

	"github.com/wsedge/wsedge/upstream"
	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

// relayTests are the relay's tests, run again through each other way a
// connection can be driven.
func relayTests() map[string]func(*testing.T, rig) {
	return map[string]func(*testing.T, rig){
		"Echo":                   echoThroughProxy,
		"Compression":            subprotocolAndCompression,
		"CloseCodes":             closeCodesPassThrough,
		"BackendDeath":           backendDeathGives1012,
		"ProtocolViolations":     protocolViolationsAnswered,
		"SlowConsumer":           slowConsumerClosed,
		"HeartbeatPongsKept":     heartbeatPongsNotForwarded,
		"PingsPassThrough":       peerPingsPassThrough,
		"ShutdownClosesWith1001": shutdownClosesWith1001,
		"HangUpWithLastBytes":    clientHangingUpWithItsLastBytes,
		"ClientGone":             clientGoneTellsBackend,
	}
}

// TestWithoutRing runs the relay's tests again with every read and write a
// system call of its own, as on a kernel without io_uring.
func TestWithoutRing(t *testing.T) {
	for name, test := range relayTests() {
		t.Run(name, func(t *testing.T) { test(t, rig{opts: []Option{WithoutIOUring()}}) })
	}
}

func TestEchoThroughProxy(t *testing.T) { echoThroughProxy(t, rig{}) }

func echoThroughProxy(t *testing.T, r rig) {
	b := upstreamtest.Start(t, upstreamtest.WithName("b1"))
	p := r.start(t, Config{}, b)
	c := dial(t, p, "/chat?room=1", nil)
	for _, size := range []int{0, 1, 125, 126, 65535, 65536, 300000} {
		msg := bytes.Repeat([]byte{byte(size)}, size)
		if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("size %d: echo differs", size)
		}
	}
	if got := whoami(t, c); got != "b1" {
		t.Fatalf("whoami = %q, want b1", got)
	}
	hs := b.Handshakes()
	if len(hs) != 1 || hs[0].Path != "/chat?room=1" {
		t.Fatalf("backend saw handshakes %+v, want one for /chat?room=1", hs)
	}
	if got := hs[0].Header.Get("X-Forwarded-For"); got != "127.0.0.1" {
		t.Fatalf("X-Forwarded-For = %q, want 127.0.0.1", got)
	}
	if got := hs[0].Header.Get("X-Real-Ip"); got != "127.0.0.1" {
		t.Fatalf("X-Real-IP = %q, want 127.0.0.1", got)
	}
	if got := hs[0].Header.Get("X-Forwarded-Proto"); got != "http" {
		t.Fatalf("X-Forwarded-Proto = %q, want http", got)
	}
}

func TestSubprotocolAndCompressionEndToEnd(t *testing.T) { subprotocolAndCompression(t, rig{}) }

func subprotocolAndCompression(t *testing.T, r rig) {
	b := upstreamtest.Start(t, upstreamtest.WithSubprotocols("v2.chat", "v1.chat"), upstreamtest.WithCompression())
	p := r.start(t, Config{}, b)
	d := websocket.Dialer{Subprotocols: []string{"v1.chat", "v2.chat"}, EnableCompression: true}
	c, res, err := d.Dial(p.url("/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Subprotocol() != "v1.chat" {
		t.Fatalf("subprotocol %q, want v1.chat (the client's first that the backend speaks)", c.Subprotocol())
	}
	if ext := res.Header.Get("Sec-WebSocket-Extensions"); !strings.Contains(ext, "permessage-deflate") {
		t.Fatalf("extensions %q, want permessage-deflate negotiated", ext)
	}
	msg := bytes.Repeat([]byte("compressible "), 10000)
	if err := c.WriteMessage(websocket.TextMessage, msg); err != nil {
		t.Fatal(err)
	}
	_, got, err := c.ReadMessage()
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("compressed echo: err %v, equal %v", err, bytes.Equal(got, msg))
	}
}

func TestCloseCodesPassThrough(t *testing.T) { closeCodesPassThrough(t, rig{}) }

func closeCodesPassThrough(t *testing.T, r rig) {
	b := upstreamtest.Start(t)
	p := r.start(t, Config{}, b)
	c := dial(t, p, "/", nil)
	b.WaitConns(context.Background(), 1)
	b.CloseAll(4321, "app says bye")
	if got := closeCode(t, c, 5*time.Second); got != 4321 {
		t.Fatalf("close code %d, want the backend's 4321", got)
	}
}

func TestBackendDeathGives1012(t *testing.T) { backendDeathGives1012(t, rig{}) }

func backendDeathGives1012(t *testing.T, r rig) {
	b := upstreamtest.Start(t)
	p := r.start(t, Config{}, b)
	c := dial(t, p, "/", nil)
	whoami(t, c)
	b.Kill()
	if got := closeCode(t, c, 5*time.Second); got != 1012 {
		t.Fatalf("close code %d after the backend died, want 1012", got)
	}
}

func TestProtocolViolationsAnswered(t *testing.T) { protocolViolationsAnswered(t, rig{}) }

func protocolViolationsAnswered(t *testing.T, r rig) {
	b := upstreamtest.Start(t)
	p := r.start(t, Config{MaxMessageBytes: 1 << 20}, b)
	good := dial(t, p, "/", nil)

	tests := []struct {
		name string
		give []byte
		want int
	}{
		{"unmasked frame", []byte{0x81, 0x02, 'h', 'i'}, 1002},
		{"2 GiB frame", []byte{0x82, 0xff, 0, 0, 0, 0, 0x80, 0, 0, 0, 1, 2, 3, 4}, 1009},
		{"reserved opcode", []byte{0x83, 0x80, 1, 2, 3, 4}, 1002},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, p, "/", nil)
			raw := c.NetConn()
			if _, err := raw.Write(tt.give); err != nil {
				t.Fatal(err)
			}
			if got := closeCode(t, c, 5*time.Second); got != tt.want {
				t.Fatalf("close code %d, want %d", got, tt.want)
			}
		})
	}
	if got := whoami(t, good); got == "" {
		t.Fatal("a well-behaved client stopped working")
	}
}

func TestSlowConsumerClosed(t *testing.T) { slowConsumerClosed(t, rig{}) }

func slowConsumerClosed(t *testing.T, r rig) {
	b := upstreamtest.Start(t)
	p := r.start(t, Config{WriteTimeout: 500 * time.Millisecond}, b)
	c := dial(t, p, "/", nil)
	// Ask the backend for a flood the client never reads: echo big messages
	// while not reading. Writes go until the proxy gives up on this client.
	msg := make([]byte, 1<<20)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 64; i++ {
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
				return
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for b.Conns() > 0 || b.Accepted() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("backend connection still open: the slow client was never closed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.Close()
	<-done
}

// The proxy's heartbeat pongs stay with the proxy: the backend sees only
// the client's data.
func TestHeartbeatPongsNotForwarded(t *testing.T) { heartbeatPongsNotForwarded(t, rig{}) }

func heartbeatPongsNotForwarded(t *testing.T, r rig) {
	b := upstreamtest.Start(t)
	p := r.start(t, Config{PingInterval: 50 * time.Millisecond, PongTimeout: time.Second}, b)
	c := dial(t, p, "/", nil)
	pings := make(chan string, 64)
	c.SetPingHandler(func(data string) error {
		pings <- data
		return c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	go func() {
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	}()
	for range 3 {
		select {
		case data := <-pings:
			if !strings.HasPrefix(data, "wsedge-hb:") {
				t.Fatalf("ping payload %q", data)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("no heartbeat ping within 2s")
		}
	}
	if n := b.Pongs(); n != 0 {
		t.Fatalf("backend received %d pongs answering the proxy's pings", n)
	}
}

// Pings from either peer reach the other and their pongs come back.
func TestPeerPingsPassThrough(t *testing.T) { peerPingsPassThrough(t, rig{}) }

func peerPingsPassThrough(t *testing.T, r rig) {
	b := upstreamtest.Start(t)
	p := r.start(t, Config{}, b)
	c := dial(t, p, "/", nil)
	pongs := make(chan string, 1)
	c.SetPongHandler(func(data string) error { pongs <- data; return nil })
	pinged := make(chan string, 1)
	c.SetPingHandler(func(data string) error {
		pinged <- data
		return c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	go func() {
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	}()
	if err := c.WriteControl(websocket.PingMessage, []byte("from client"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-pongs:
		if got != "from client" {
			t.Fatalf("pong %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the backend's pong never came back")
	}
	b.WaitConns(context.Background(), 1)
	b.PingAll("from backend")
	select {
	case got := <-pinged:
		if got != "from backend" {
			t.Fatalf("ping %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the backend's ping never arrived")
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.Pongs() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the client's pong never reached the backend")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Shutdown tells every client 1001 and waits for them to go.
func TestShutdownClosesWith1001(t *testing.T) { shutdownClosesWith1001(t, rig{}) }

func shutdownClosesWith1001(t *testing.T, r rig) {
	b := upstreamtest.Start(t)
	p := r.start(t, Config{}, b)
	conns := dialEach(t, p, 20, 0)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- p.srv.Shutdown(ctx)
	}()
	for _, c := range conns {
		if got := closeCode(t, c, 5*time.Second); got != 1001 {
			t.Fatalf("close code %d on shutdown, want 1001", got)
		}
		c.Close()
	}
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// Lowering a connection limit below the live count sheds the newest
// connections with 1013 (try again later) and leaves the rest alone.
func TestLoweredLimitShedsNewest(t *testing.T) {
	b := upstreamtest.Start(t)
	p := startProxy(t, Config{}, b)
	conns := dialEach(t, p, 5, 2*time.Millisecond) // distinct start times
	p.srv.SetConfig(Config{MaxConnections: 3})
	for i, c := range conns[3:] {
		if got := closeCode(t, c, 5*time.Second); got != 1013 {
			t.Fatalf("newest connection %d closed with %d, want 1013", i, got)
		}
	}
	for i, c := range conns[:3] {
		if got := whoami(t, c); got == "" {
			t.Fatalf("connection %d within the limit stopped working", i)
		}
	}
}

// A client that answers a ping and hangs up at once sends its last bytes
// and its FIN together, and the proxy hears of both in one readiness
// report: reading the bytes must not leave the hang-up unread, or the
// connection and its backend stay open until a timeout.
func TestClientHangingUpWithItsLastBytes(t *testing.T) { clientHangingUpWithItsLastBytes(t, rig{}) }

func clientHangingUpWithItsLastBytes(t *testing.T, r rig) {
	b := upstreamtest.Start(t)
	p := r.start(t, Config{PingInterval: 20 * time.Millisecond, PongTimeout: 10 * time.Second}, b)
	var slowest time.Duration
	for i := range 50 {
		c := dial(t, p, "/", nil)
		pinged := make(chan struct{}, 1)
		c.SetPingHandler(func(data string) error {
			err := c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
			select {
			case pinged <- struct{}{}:
			default:
			}
			return err
		})
		read := make(chan struct{})
		go func() {
			defer close(read)
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
			}
		}()
		<-pinged
		c.Close() // right behind the pong, no close frame
		<-read
		start := time.Now()
		for b.Conns() != 0 {
			if time.Since(start) > 2*time.Second {
				t.Fatalf("client %d hung up with its pong; the proxy still holds its backend connection after 2s", i)
			}
			time.Sleep(time.Millisecond)
		}
		slowest = max(slowest, time.Since(start))
	}
	t.Logf("50 clients hung up right after a pong: the slowest was noticed after %v", slowest)
}

// A client that vanishes without a close frame leaves its backend a 1001
// "client went away", written as the proxy closes the connection.
func TestClientGoneTellsBackend(t *testing.T) { clientGoneTellsBackend(t, rig{}) }

func clientGoneTellsBackend(t *testing.T, r rig) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closes := make(chan ws.StatusCode, 10)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := ws.Upgrade(conn); err != nil {
					return
				}
				for {
					f, err := ws.ReadFrame(conn)
					if err != nil {
						closes <- 0 // no close frame before the end
						return
					}
					if f.Header.OpCode == ws.OpClose {
						ws.Cipher(f.Payload, f.Header.Mask, 0)
						code, _ := ws.ParseCloseFrameData(f.Payload)
						closes <- code
						return
					}
				}
			})
		}
	})
	p := r.startOn(t, Config{}, []upstream.Backend{{Addr: ln.Addr().String(), Weight: 1}})
	for i := range 5 {
		c := dial(t, p, "/", nil)
		if err := c.WriteMessage(websocket.TextMessage, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		c.UnderlyingConn().Close() // no close frame
		select {
		case code := <-closes:
			if code != ws.StatusGoingAway {
				t.Fatalf("client %d vanished: the backend got close code %d, want 1001", i, code)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("client %d vanished: the backend heard nothing in 5s", i)
		}
	}
}
