package upstreamtest

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
)

// websocketGUID is what a server appends to the client's key to prove it
// speaks WebSocket (RFC 6455 section 4.2.2).
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// Script is what a Scripted backend does with each WebSocket upgrade it
// receives. Both functions get the raw connection, which is closed when
// they return; they must return once it fails, as it does on Close.
type Script struct {
	// Handshake, when set, answers the upgrade instead of the backend: it
	// gets the connection once the request has been read, and nothing else
	// is sent. A handshake cut short by a crash is Handshake: Reset.
	Handshake func(conn net.Conn)
	// Session runs once the 101 has been sent, in place of a WebSocket
	// library: whatever it writes reaches the peer as is, and reads start
	// with the first byte after the request. Nil holds the connection,
	// reading and discarding, until the peer or Close ends it.
	Session func(conn net.Conn)
}

// Scripted is a fake app server whose WebSocket side is written by the
// test, for the faults no real WebSocket library produces: a message cut
// off by a crash, invalid frames, a reset in the middle of a handshake.
// Plain HTTP requests, such as a proxy's health checks, get 200 "ok".
//
// A Scripted is safe for concurrent use. It owns every connection it
// accepts; Close ends them and waits for every script.
type Scripted struct {
	// Addr is the host:port the backend listens on. Read it; do not change
	// it.
	Addr string

	script   Script
	srv      *http.Server
	upgrades atomic.Int64
	requests atomic.Int64

	wg     sync.WaitGroup // the Serve loop and every running handler
	mu     sync.Mutex     // guards the fields below
	conns  map[net.Conn]struct{}
	closed bool
}

// StartScripted starts a Scripted backend on 127.0.0.1:0 and registers its
// Close with tb.Cleanup.
func StartScripted(tb testing.TB, script Script) *Scripted {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("upstreamtest: listen: %v", err)
	}
	s := &Scripted{Addr: ln.Addr().String(), script: script, conns: make(map[net.Conn]struct{})}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve)}
	s.wg.Go(func() { _ = s.srv.Serve(ln) }) // ends when the listener closes
	tb.Cleanup(s.Close)
	return s
}

// URL returns the backend's base URL, "http://127.0.0.1:port".
func (s *Scripted) URL() string { return "http://" + s.Addr }

// Upgrades returns how many WebSocket upgrade requests the backend has
// received, whatever its script did with them.
func (s *Scripted) Upgrades() int { return int(s.upgrades.Load()) }

// Requests returns how many plain HTTP requests the backend has answered.
func (s *Scripted) Requests() int { return int(s.requests.Load()) }

// Conns returns how many upgraded connections are open now.
func (s *Scripted) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Close stops accepting, closes every connection and waits until every
// script has returned. It may be called more than once.
func (s *Scripted) Close() {
	s.mu.Lock()
	s.closed = true
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	_ = s.srv.Close()
	for _, c := range conns {
		_ = c.Close()
	}
	s.wg.Wait()
}

// Reset closes conn so that the peer sees a TCP RST rather than a FIN, as
// when the process behind it crashes.
func Reset(conn net.Conn) {
	if bc, ok := conn.(*bufferedConn); ok {
		conn = bc.Conn
	}
	reset(conn)
}

func (s *Scripted) serve(w http.ResponseWriter, r *http.Request) {
	if !hasToken(r.Header, "Upgrade", "websocket") {
		s.requests.Add(1)
		_, _ = io.WriteString(w, "ok")
		return
	}
	s.upgrades.Add(1)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.wg.Add(1) // before Close's Wait: closed was false under the lock
	s.mu.Unlock()
	defer s.wg.Done()

	raw, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	conn := &bufferedConn{Conn: raw, r: brw.Reader}
	if !s.track(raw) {
		_ = raw.Close()
		return
	}
	defer s.untrack(raw)
	defer raw.Close()

	if s.script.Handshake != nil {
		s.script.Handshake(conn)
		return
	}
	accept := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + websocketGUID))
	_, err = fmt.Fprintf(raw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
		base64.StdEncoding.EncodeToString(accept[:]))
	if err != nil {
		return
	}
	if s.script.Session == nil {
		_, _ = io.Copy(io.Discard, conn)
		return
	}
	s.script.Session(conn)
}

// track registers an upgraded connection so that Close reaches it; false
// when Close has begun.
func (s *Scripted) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Scripted) untrack(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

// bufferedConn reads through the reader net/http used for the request, so
// that bytes it read ahead are not lost.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
