//go:build linux

package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"

	"github.com/wsedge/wsedge/upstream"
	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

// handoffRig is two Servers in one process, as an old proxy and the new
// one that takes over from it, in front of one echo backend: the old one
// serving a listener, the new one not yet.
type handoffRig struct {
	backend  *upstreamtest.Backend
	old, new *Server
	ln       net.Listener // the old server's
	addr     string
	served   sync.WaitGroup
}

func startHandoffRig(t *testing.T, cfg Config) *handoffRig {
	t.Helper()
	r := &handoffRig{backend: upstreamtest.Start(t)}
	set := upstream.NewSet([]upstream.Backend{{Addr: r.backend.Addr, Weight: 1}})
	r.old, r.new = New(cfg, set, WithLoops(2)), New(cfg, set, WithLoops(2))
	ln, err := ListenTCP("127.0.0.1:0", r.old.Loops())
	if err != nil {
		t.Fatal(err)
	}
	r.ln, r.addr = ln, ln.Addr().String()
	r.served.Go(func() { r.old.Serve(ln) })
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r.old.Shutdown(ctx)
		r.new.Shutdown(ctx)
		r.served.Wait()
	})
	return r
}

// handOver runs one round between the two servers over a fresh socket
// pair, through mangle when it is set, and returns both sides' results.
func (r *handoffRig) handOver(t *testing.T, mangle func(kind uint8, p []byte) []byte) (HandOverResult, error, int, error) {
	t.Helper()
	oldEnd, f, err := NewHandoffPair()
	if err != nil {
		t.Fatal(err)
	}
	newEnd, err := NewHandoffConn(f)
	if err != nil {
		t.Fatal(err)
	}
	ends := []*HandoffConn{oldEnd, newEnd}
	var relay sync.WaitGroup
	defer func() {
		for _, h := range ends {
			h.Close()
		}
		relay.Wait()
	}()
	if mangle != nil {
		// A go-between that passes every frame on, mangled.
		midOld, fm, err := NewHandoffPair()
		if err != nil {
			t.Fatal(err)
		}
		midNew, err := NewHandoffConn(fm)
		if err != nil {
			t.Fatal(err)
		}
		ends = append(ends, midOld, midNew)
		toOld := newEnd
		relay.Go(func() { pipeFrames(toOld, midOld, mangle) })
		relay.Go(func() { pipeFrames(midOld, toOld, nil) })
		newEnd = midNew
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var took int
	var takeErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		took, _, takeErr = r.new.TakeOver(ctx, newEnd)
	}()
	res, err := r.old.HandOver(ctx, oldEnd, HandOverOptions{})
	<-done
	return res, err, took, takeErr
}

// pipeFrames copies frames from src to dst, through mangle when set, until
// src ends.
func pipeFrames(src, dst *HandoffConn, mangle func(uint8, []byte) []byte) {
	for {
		kind, p, fds, err := src.recv()
		var refused *HandoffRefused
		switch {
		case errors.As(err, &refused):
			kind, p = msgFail, encodeFail(refused.Reason)
		case err != nil:
			dst.uc.CloseWrite()
			return
		}
		if mangle != nil {
			p = mangle(kind, append([]byte(nil), p...))
		}
		err = dst.send(kind, p, fds)
		closeFDs(fds)
		if err != nil {
			return
		}
	}
}

// echoClient sends numbered messages and checks each comes back once and
// in order, until stop; it reports what it saw on done.
type echoClient struct {
	c    *websocket.Conn
	sent int
	err  error
}

func (e *echoClient) run(stop <-chan struct{}) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-time.After(5 * time.Millisecond):
		}
		want := fmt.Sprintf("msg-%d", i)
		e.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if err := e.c.WriteMessage(websocket.TextMessage, []byte(want)); err != nil {
			e.err = err
			return
		}
		e.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, got, err := e.c.ReadMessage()
		if err != nil {
			e.err = err
			return
		}
		if string(got) != want {
			e.err = fmt.Errorf("got %q, want %q", got, want)
			return
		}
		e.sent++
	}
}

// The old server's connections move to the new one in the middle of their
// traffic: echoes in flight, a fragmented message half sent, a frame
// header cut short, an outstanding ping. Every client goes on as if
// nothing happened, on the new server, and the old one holds nothing.
func TestHandOverMovesLiveConnections(t *testing.T) {
	r := startHandoffRig(t, Config{PingInterval: 300 * time.Millisecond})
	url := "ws://" + r.addr + "/"
	var echoes []*echoClient
	for range 6 {
		c, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		echoes = append(echoes, &echoClient{c: c})
	}
	// A raw client, in the middle of a fragmented message and then in
	// the middle of a frame header when the hand-over comes.
	raw, br := rawDial(t, r.addr)
	defer raw.Close()
	raw.Write(frameBytes(t, false, 0, ws.OpText, []byte("first half, "), true))
	mid := frameBytes(t, true, 0, ws.OpContinuation, []byte("second half"), true)
	raw.Write(mid[:3])
	waitFor(t, "every connection registered", func() bool { return len(r.old.Connections("")) == 7 })

	stop := make(chan struct{})
	var clients sync.WaitGroup
	for _, e := range echoes {
		clients.Go(func() { e.run(stop) })
	}
	time.Sleep(300 * time.Millisecond)
	if err := PauseListener(r.ln); err != nil {
		t.Fatal(err)
	}
	res, err, took, takeErr := r.handOver(t, nil)
	if err != nil || takeErr != nil {
		t.Fatalf("hand-over: old %v, new %v", err, takeErr)
	}
	if res.Moved != 7 || took != 7 {
		t.Fatalf("moved %d, taken %d; want 7", res.Moved, took)
	}
	if n := len(r.old.Connections("")); n != 0 {
		t.Fatalf("old server still lists %d connections", n)
	}
	fds, err := ListenerFDs(r.ln)
	if err != nil {
		t.Fatal(err)
	}
	adopted, err := AdoptTCP(fds, r.new.Loops())
	if err != nil {
		t.Fatal(err)
	}
	r.served.Go(func() { r.new.Serve(adopted) })
	r.ln.Close()

	raw.Write(mid[3:])
	if got := readRawText(t, br); got != "first half, second half" {
		t.Fatalf("fragmented message came back as %q", got)
	}
	time.Sleep(500 * time.Millisecond) // the echoes go on, with pings from the new server
	close(stop)
	clients.Wait()
	for i, e := range echoes {
		if e.err != nil || e.sent < 10 {
			t.Errorf("echo client %d: %d messages, %v", i, e.sent, e.err)
		}
	}
	if n := len(r.new.Connections("")); n != 7 {
		t.Fatalf("new server lists %d connections, want 7", n)
	}
	ponged := 0 // the raw client answers no ping
	for _, info := range r.new.Connections("") {
		if !info.LastPong.IsZero() {
			ponged++
		}
	}
	if ponged < len(echoes) {
		t.Errorf("%d connections answered the new server's pings, want %d", ponged, len(echoes))
	}
	// A new client lands on the new server, through the adopted listener.
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, "the new client on the new server", func() bool { return len(r.new.Connections("")) == 8 })
}

// A new process that refuses the round, whatever it found wrong, leaves
// every connection with the old one, which relays on.
func TestHandOverRefusedKeepsConnections(t *testing.T) {
	tests := []struct {
		name   string
		mangle func(kind uint8, p []byte) []byte
	}{
		{"record cut short", func(kind uint8, p []byte) []byte {
			if kind == msgConns {
				return p[:len(p)-1]
			}
			return p
		}},
		{"bad framer state", func(kind uint8, p []byte) []byte {
			if kind == msgConns {
				// Skip to the first record's framer snapshot and make its
				// version one nobody speaks.
				r := &wireReader{b: p}
				r.u16()
				r.u32()
				r.u64()
				r.str(maxRecordString, "")
				r.str(maxRecordString, "")
				r.blob8()
				r.u64()
				at := len(p) - len(r.b) + 1 + 8 + 1 // flags, start, the snapshot's length
				p[at] = 9
			}
			return p
		}},
		{"commit miscounted", func(kind uint8, p []byte) []byte {
			if kind == msgCommit {
				p[3]++
			}
			return p
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startHandoffRig(t, Config{})
			c, _, err := websocket.DefaultDialer.Dial("ws://"+r.addr+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			echo := &echoClient{c: c}
			stop := make(chan struct{})
			var client sync.WaitGroup
			client.Go(func() { echo.run(stop) })
			waitFor(t, "the connection registered", func() bool { return len(r.old.Connections("")) == 1 })
			_, err, _, takeErr := r.handOver(t, tt.mangle)
			if err == nil || takeErr == nil {
				t.Fatalf("hand-over went through: old %v, new %v", err, takeErr)
			}
			t.Logf("refused: old %v; new %v", err, takeErr)
			if n := len(r.new.Connections("")); n != 0 {
				t.Fatalf("the new server kept %d connections", n)
			}
			time.Sleep(200 * time.Millisecond)
			close(stop)
			client.Wait()
			if echo.err != nil || echo.sent < 5 {
				t.Fatalf("echo after the refused hand-over: %d messages, %v", echo.sent, echo.err)
			}
			if n := len(r.old.Connections("")); n != 1 {
				t.Fatalf("old server lists %d connections, want 1", n)
			}
		})
	}
}

// rawDial opens a WebSocket by hand, for frame-level writes.
func rawDial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", addr)
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("raw upgrade: %v %v", res, err)
	}
	return c, br
}

// readRawText reads frames until a whole text message, skipping pings.
func readRawText(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	var msg []byte
	for {
		h, err := ws.ReadHeader(br)
		if err != nil {
			t.Fatal(err)
		}
		p := make([]byte, h.Length)
		if _, err := ioReadFull(br, p); err != nil {
			t.Fatal(err)
		}
		if h.OpCode.IsControl() {
			continue
		}
		msg = append(msg, p...)
		if h.Fin {
			return string(msg)
		}
	}
}

func ioReadFull(br *bufio.Reader, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := br.Read(p[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within 5s: %s", what)
		}
	}
}
