package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// echoBufferSize is the pooled buffer a backend echoes a frame through;
// frames larger than this are echoed in pieces of this size.
const echoBufferSize = 64 << 10

// Backend is an echo server for benchmarks: every data frame comes back as
// it arrived (same opcode, FIN and RSV bits; unmasked, since a server does
// not mask), pings are answered, a close is echoed, and any request that is
// not an upgrade gets 200, which passes HTTP health checks. An idle
// connection holds the read buffer net/http gave it and a parked
// goroutine; a frame in flight borrows a pooled buffer.
//
// Backend is safe for concurrent use. Close stops it and waits for every
// connection.
type Backend struct {
	srv  *http.Server
	lns  []net.Listener
	bufs sync.Pool // *[]byte of echoBufferSize

	mu     sync.Mutex // guards conns and closed
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup // listeners' Serve loops and hijacked connections

	handshakes, messages, bytes, requests atomic.Int64
	live                                  atomic.Int64
}

// BackendStats counts what a Backend has served.
type BackendStats struct {
	Handshakes int64 `json:"handshakes"`
	Live       int64 `json:"live"`
	Messages   int64 `json:"messages"` // data frames echoed
	Bytes      int64 `json:"bytes"`    // payload bytes echoed
	Requests   int64 `json:"requests"` // plain HTTP requests answered
}

// ListenBackend listens on every address and serves until Close.
func ListenBackend(addrs []string) (*Backend, error) {
	if len(addrs) == 0 {
		return nil, errors.New("backend: no listen address")
	}
	b := &Backend{conns: map[net.Conn]struct{}{}}
	b.bufs.New = func() any { p := make([]byte, echoBufferSize); return &p }
	b.srv = &http.Server{Handler: http.HandlerFunc(b.serveHTTP), ReadHeaderTimeout: 5 * time.Second}
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			for _, l := range b.lns {
				l.Close()
			}
			return nil, fmt.Errorf("backend: %w", err)
		}
		b.lns = append(b.lns, ln)
	}
	for _, ln := range b.lns {
		b.wg.Go(func() { _ = b.srv.Serve(ln) })
	}
	return b, nil
}

// Addrs returns the addresses listened on, with ports resolved.
func (b *Backend) Addrs() []string {
	out := make([]string, len(b.lns))
	for i, ln := range b.lns {
		out[i] = ln.Addr().String()
	}
	return out
}

// Stats returns the counts so far.
func (b *Backend) Stats() BackendStats {
	return BackendStats{
		Handshakes: b.handshakes.Load(), Live: b.live.Load(),
		Messages: b.messages.Load(), Bytes: b.bytes.Load(), Requests: b.requests.Load(),
	}
}

// Close stops listening, closes every connection and waits for them.
// http.Server.Close does not know hijacked connections, hence the
// registry.
func (b *Backend) Close() error {
	err := b.srv.Close()
	b.mu.Lock()
	b.closed = true
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
	return err
}

func (b *Backend) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Upgrade") == "" {
		b.requests.Add(1)
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok\n")
		return
	}
	conn, rw, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		return // the upgrader has answered with the reason
	}
	_ = conn.SetDeadline(time.Time{}) // none of net/http's deadlines apply to the WebSocket
	if !b.track(conn) {
		conn.Close()
		return
	}
	b.handshakes.Add(1)
	b.live.Add(1)
	defer func() {
		b.live.Add(-1)
		b.untrack(conn)
	}()
	// Only the reader is kept: it may hold bytes the client sent right
	// after its request.
	_ = b.echo(conn, rw.Reader)
}

// track registers a hijacked connection, unless Close has begun.
func (b *Backend) track(c net.Conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.conns[c] = struct{}{}
	b.wg.Add(1)
	return true
}

func (b *Backend) untrack(c net.Conn) {
	c.Close()
	b.mu.Lock()
	delete(b.conns, c)
	b.mu.Unlock()
	b.wg.Done()
}

// echo serves one WebSocket until the peer closes or fails.
func (b *Backend) echo(conn net.Conn, r *bufio.Reader) error {
	var scratch [ws.MaxHeaderSize - 2]byte
	for {
		h, err := ws.ReadHeaderBuffer(r, scratch[:])
		if err != nil {
			return err
		}
		switch h.OpCode {
		case ws.OpPong:
			if _, err := r.Discard(int(h.Length)); err != nil {
				return err
			}
			continue
		case ws.OpPing:
			h.OpCode = ws.OpPong // RFC 6455 5.5.2: same payload
		}
		if err := b.echoFrame(conn, r, h); err != nil {
			return err
		}
		if h.OpCode == ws.OpClose { // echoed: the closing handshake is done (7.1.2)
			return nil
		}
		if !h.OpCode.IsControl() {
			b.messages.Add(1)
			b.bytes.Add(h.Length)
		}
	}
}

// echoFrame sends back a frame whose header h has been read: header and
// payload in one write when they fit the buffer, else piece by piece.
func (b *Backend) echoFrame(conn net.Conn, r *bufio.Reader, h ws.Header) error {
	bp := b.bufs.Get().(*[]byte)
	defer b.bufs.Put(bp)
	buf := *bp
	mask, masked := h.Mask, h.Masked
	h.Masked, h.Mask = false, [4]byte{}
	hdr := len(appendHeader(buf[:0], h))
	for off, left := 0, int(h.Length); ; hdr = 0 {
		n := min(left, len(buf)-hdr)
		p := buf[hdr : hdr+n]
		if _, err := io.ReadFull(r, p); err != nil {
			return err
		}
		if masked {
			ws.Cipher(p, mask, off)
		}
		if _, err := conn.Write(buf[:hdr+n]); err != nil {
			return err
		}
		off, left = off+n, left-n
		if left == 0 {
			return nil
		}
	}
}

// RunBackend serves an echo Backend on addrs until ctx ends or limit (if
// positive) passes, then closes it and writes its stats and CPU time to w.
func RunBackend(ctx context.Context, addrs []string, limit time.Duration, w io.Writer, asJSON bool) error {
	b, err := ListenBackend(addrs)
	if err != nil {
		return err
	}
	cpu0, err := selfCPU()
	if err != nil {
		b.Close()
		return err
	}
	start := time.Now()
	if limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	<-ctx.Done()
	st := b.Stats()
	cerr := b.Close()
	cpu1, err := selfCPU()
	if err != nil {
		return err
	}
	rep := BackendReport{Addrs: b.Addrs(), Seconds: time.Since(start).Seconds(), CPU: (cpu1 - cpu0).Seconds(), Stats: st}
	if err := writeReport(w, rep, asJSON); err != nil {
		return err
	}
	return cerr
}

// BackendReport is what RunBackend writes when it stops.
type BackendReport struct {
	Addrs   []string     `json:"addrs"`
	Seconds float64      `json:"seconds"`
	CPU     float64      `json:"cpu_s"`
	Stats   BackendStats `json:"stats"`
}
