package upstreamtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gorilla/websocket"
)

// Backend is a fake app server listening on loopback. It serves plain HTTP
// and WebSocket upgrades on one port and records what it sees.
//
// A Backend is safe for concurrent use. It owns every connection it accepts
// and every goroutine serving them; Close ends them all and waits.
type Backend struct {
	// Name is what the backend answers to "whoami", sends as X-Backend and
	// serves as its plain HTTP body. Read it; do not change it.
	Name string
	// Addr is the host:port the backend listens on. Read it; do not change
	// it.
	Addr string

	opts     options
	ln       net.Listener
	srv      *http.Server
	upgrader websocket.Upgrader

	// ctx is the parent of every request's context; Close and Kill cancel it
	// so that handlers waiting on a timer (delays, /slow, /sse) return.
	ctx    context.Context
	cancel context.CancelFunc

	accepted  atomic.Int64
	messages  atomic.Int64
	pongs     atomic.Int64
	unhealthy atomic.Bool // SetHealthy(false): /healthz answers 503

	// wg counts the Serve loop and every accepted TCP connection until it
	// ends: until net/http reports it closed, or, once hijacked for a
	// WebSocket, until its handler returns. Close waits on it, because
	// http.Server forgets hijacked connections.
	wg        sync.WaitGroup
	closeOnce sync.Once

	mu         sync.Mutex           // guards the fields below
	conns      map[net.Conn]bool    // every open TCP connection; true once hijacked
	ws         map[*wsConn]struct{} // WebSocket connections from the accepted handshake to their end
	wsChanged  chan struct{}        // closed and replaced whenever ws changes
	handshakes []Handshake          // every upgrade request, in arrival order
	requests   []Request            // every plain HTTP request, in arrival order
	closed     bool                 // Close began: new connections are closed at once
	killed     bool                 // Kill began: new connections are reset at once
}

// Handshake is a WebSocket upgrade request a Backend received, refused or
// not.
type Handshake struct {
	Method     string
	Path       string // path and query, as sent
	Header     http.Header
	RemoteAddr string // the peer's host:port: the proxy's, when behind one
	Host       string
}

// Request is a plain (non-upgrade) HTTP request a Backend received.
type Request struct {
	Method     string
	Path       string // path and query, as sent
	Header     http.Header
	RemoteAddr string
	Host       string
}

// connKey is the request context key under which a Backend stores the raw
// TCP connection a request arrived on.
type connKey struct{}

// Start starts a Backend and registers its Close with tb.Cleanup. It fails
// the test if the backend cannot listen.
func Start(tb testing.TB, opts ...Option) *Backend {
	tb.Helper()
	b, err := New(opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(b.Close)
	return b
}

// New starts a Backend without a testing.TB, for use outside tests. The
// caller must Close it.
func New(opts ...Option) (*Backend, error) {
	o := options{addr: "127.0.0.1:0"}
	for _, opt := range opts {
		opt(&o)
	}
	if o.refuse && (o.refuseStatus < 200 || o.refuseStatus > 599) {
		return nil, fmt.Errorf("upstreamtest: refusal status %d: want 200-599", o.refuseStatus)
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return nil, fmt.Errorf("upstreamtest: listen %s: %w", o.addr, err)
	}
	b := &Backend{
		Name:      o.name,
		Addr:      ln.Addr().String(),
		opts:      o,
		ln:        ln,
		conns:     make(map[net.Conn]bool),
		ws:        make(map[*wsConn]struct{}),
		wsChanged: make(chan struct{}),
	}
	if b.Name == "" {
		b.Name = "backend-" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.upgrader = websocket.Upgrader{
		// Origin policy is the proxy's job (allowed_origins); a backend that
		// checked it too would hide the proxy's mistakes.
		CheckOrigin:       func(*http.Request) bool { return true },
		EnableCompression: o.compression,
		// Writes go out in frames of up to this size; the pool keeps idle
		// connections from holding a write buffer.
		WriteBufferSize: 32 << 10,
		WriteBufferPool: &sync.Pool{},
	}
	b.srv = &http.Server{
		Handler:     http.HandlerFunc(b.serve),
		BaseContext: func(net.Listener) context.Context { return b.ctx },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
		ConnState: b.trackConn,
	}
	b.wg.Go(func() { _ = b.srv.Serve(ln) }) // ends when the listener closes
	return b, nil
}

// URL returns the backend's base URL, "http://127.0.0.1:port".
func (b *Backend) URL() string { return "http://" + b.Addr }

// Close stops accepting, closes every connection (without a WebSocket close
// frame; use CloseAll first for a graceful close) and waits until every
// goroutine serving the backend has returned. Close may be called more than
// once and after Kill.
func (b *Backend) Close() {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		conns := b.openConns()
		b.mu.Unlock()
		_ = b.srv.Close() // the listener and every connection net/http still tracks
		for _, c := range conns {
			_ = c.Close()
		}
		// Only now: a handler woken earlier would still answer, and its
		// client would take the cut-short work for a success.
		b.cancel()
	})
	b.wg.Wait()
}

// Kill makes the backend die as a crashed process does: the listener closes,
// so new connections are refused, and every open connection is reset (TCP
// RST via SO_LINGER 0) with no WebSocket close frame and no end to a
// half-sent HTTP response. Kill returns once every goroutine serving the
// backend has returned. To restart it, Start a new Backend WithAddr(b.Addr).
func (b *Backend) Kill() {
	b.mu.Lock()
	b.killed = true
	conns := b.openConns()
	b.mu.Unlock()
	_ = b.ln.Close()
	for _, c := range conns {
		reset(c)
	}
	// Only now: handlers woken earlier could end their responses cleanly.
	b.cancel()
	b.wg.Wait()
}

// reset closes c so that the peer sees a TCP RST rather than a FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// openConns returns the open TCP connections. b.mu must be held.
func (b *Backend) openConns() []net.Conn {
	conns := make([]net.Conn, 0, len(b.conns))
	for c := range b.conns {
		conns = append(conns, c)
	}
	return conns
}

// trackConn follows every TCP connection through net/http's states so that
// Close and Kill can reach it, hijacked or not.
func (b *Backend) trackConn(c net.Conn, state http.ConnState) {
	switch state {
	case http.StateNew:
		// Called from the Serve loop, which wg already counts, so this Add
		// never races with Wait at zero.
		b.mu.Lock()
		b.conns[c] = false
		b.wg.Add(1)
		closed, killed := b.closed, b.killed
		b.mu.Unlock()
		switch {
		case killed:
			reset(c)
		case closed:
			_ = c.Close()
		}
	case http.StateHijacked:
		b.mu.Lock()
		if _, ok := b.conns[c]; ok {
			b.conns[c] = true
		}
		b.mu.Unlock()
	case http.StateClosed:
		b.forgetConn(c)
	}
}

// forgetConn drops c from the open connections, once.
func (b *Backend) forgetConn(c net.Conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.conns[c]; ok {
		delete(b.conns, c)
		b.wg.Done()
	}
}

// serve is the backend's one handler: upgrades go to the WebSocket side,
// everything else to plain HTTP.
func (b *Backend) serve(w http.ResponseWriter, r *http.Request) {
	if c, ok := r.Context().Value(connKey{}).(net.Conn); ok {
		defer b.releaseHijacked(c)
	}
	if websocket.IsWebSocketUpgrade(r) {
		b.serveUpgrade(w, r)
		return
	}
	b.serveHTTP(w, r)
}

// releaseHijacked closes and forgets c if a handler hijacked it: net/http
// no longer reports on hijacked connections.
func (b *Backend) releaseHijacked(c net.Conn) {
	b.mu.Lock()
	hijacked := b.conns[c]
	b.mu.Unlock()
	if hijacked {
		_ = c.Close()
		b.forgetConn(c)
	}
}

// Accepted returns how many WebSocket upgrades the backend has accepted. An
// upgrade counts before its 101 response is sent, so a client that has seen
// the 101 also sees it counted.
func (b *Backend) Accepted() int { return int(b.accepted.Load()) }

// Messages returns how many WebSocket data messages the backend has read in
// full. In echo mode a message counts before the last frame of its echo is
// sent, so a client that has read the echo also sees it counted.
func (b *Backend) Messages() int64 { return b.messages.Load() }

// Handshakes returns a copy of every upgrade request received so far, in
// order, including refused and malformed ones. A handshake is recorded
// before it is answered.
func (b *Backend) Handshakes() []Handshake {
	b.mu.Lock()
	defer b.mu.Unlock()
	hs := make([]Handshake, len(b.handshakes))
	for i, h := range b.handshakes {
		h.Header = h.Header.Clone()
		hs[i] = h
	}
	return hs
}

// Requests returns a copy of every plain HTTP request received so far, in
// order. A request is recorded before it is answered.
func (b *Backend) Requests() []Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	rs := make([]Request, len(b.requests))
	for i, r := range b.requests {
		r.Header = r.Header.Clone()
		rs[i] = r
	}
	return rs
}

func (b *Backend) recordHandshake(r *http.Request) {
	h := Handshake{
		Method:     r.Method,
		Path:       r.RequestURI,
		Header:     r.Header.Clone(),
		RemoteAddr: r.RemoteAddr,
		Host:       r.Host,
	}
	b.mu.Lock()
	b.handshakes = append(b.handshakes, h)
	b.mu.Unlock()
}

func (b *Backend) recordRequest(r *http.Request) {
	req := Request{
		Method:     r.Method,
		Path:       r.RequestURI,
		Header:     r.Header.Clone(),
		RemoteAddr: r.RemoteAddr,
		Host:       r.Host,
	}
	b.mu.Lock()
	b.requests = append(b.requests, req)
	b.mu.Unlock()
}
