package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
	"github.com/pires/go-proxyproto"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/wsedge/wsedge/affinity"
	"github.com/wsedge/wsedge/proxy/wsframe"
	"github.com/wsedge/wsedge/upstream"
)

// The fuzz targets here drive a whole Server over loopback sockets, as a
// client and a backend would, rather than one function: what they guard is
// the interplay of the handshake, the relay with and without io_uring, the close logic
// and the registry. Each input costs a connection through the proxy, so
// they run slower than FuzzFramer; testdata/fuzz/run.sh gives each a few
// seconds in CI.

const (
	// fuzzWait bounds every blocking step of one input.
	fuzzWait = 5 * time.Second
	// fuzzQuiet is how long a peer must have received nothing, once both
	// peers have written everything, before its view is taken as final.
	fuzzQuiet = 20 * time.Millisecond
	// fuzzAllocBound is the most one input may make the process allocate.
	// A relay that sized a buffer from a declared frame length would
	// allocate gigabytes for the headers the inputs carry.
	fuzzAllocBound = 64 << 20
	// fuzzSmallLimit is the message limit of half the relay servers, low
	// enough for inputs to cross it.
	fuzzSmallLimit = 4096
)

// Close codes the proxy may put in a close frame of its own: towards the
// client (relay.go: shutdown, protocol error, slow consumer or pong
// timeout, too big, backend not reading, backend gone or rebalanced,
// backend invalid), and towards the backend.
var (
	proxyCodesToClient  = []ws.StatusCode{1001, 1002, 1008, 1009, 1011, 1012, 1014}
	proxyCodesToBackend = []ws.StatusCode{1001, 1002, 1009}
)

// fuzzServer is a Server serving a loopback listener, as the binary runs
// it, with its log observed: the access log says how each connection
// ended, and net/http's "http: panic serving" line, which it writes when it
// recovers a handler's panic, would otherwise let a panic pass for a
// dropped connection. Panics on the event loops crash the process.
type fuzzServer struct {
	srv  *Server
	addr string
	logs *observer.ObservedLogs
}

// startFuzzServer serves cfg in front of backends on a loopback port, its
// clients speaking what opts say before HTTP. Without ring, the event
// loops make a system call per read and write (WithoutIOUring).
func startFuzzServer(tb testing.TB, cfg Config, backends []string, ring bool, opts ...ListenOption) *fuzzServer {
	tb.Helper()
	var list []upstream.Backend
	for _, b := range backends {
		list = append(list, upstream.Backend{Addr: b, Weight: 1})
	}
	core, logs := observer.New(zapcore.InfoLevel)
	srvOpts := []Option{WithLogger(zap.New(core))}
	if !ring {
		srvOpts = append(srvOpts, WithoutIOUring())
	}
	srv := New(cfg, upstream.NewSet(list), srvOpts...)
	srv.closeWait = 200 * time.Millisecond // uncooperative peers are the rule here
	ln, err := ListenTCP("127.0.0.1:0", 0, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	served, watched := make(chan struct{}), make(chan struct{})
	go func() { defer close(served); srv.Serve(ln) }()
	go func() { defer close(watched); srv.WatchMembers(ctx) }()
	tb.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), fuzzWait)
		defer scancel()
		srv.Shutdown(sctx)
		cancel()
		<-served
		<-watched
	})
	return &fuzzServer{srv: srv, addr: addr, logs: logs}
}

// settle waits for the access log lines of the connections an input
// upgraded, then takes everything logged for the input and fails tb on a
// recovered panic or on a close code no close frame may carry (1005, a
// close without a code, and 1006, none at all, are what the client saw
// in those cases).
func (fs *fuzzServer) settle(tb testing.TB, upgraded int) {
	tb.Helper()
	deadline := time.Now().Add(fuzzWait)
	for fs.logs.FilterMessage("connection closed").Len() < upgraded {
		if time.Now().After(deadline) {
			tb.Fatalf("%d of %d relayed connections logged their end within %v; live: %v",
				fs.logs.FilterMessage("connection closed").Len(), upgraded, fuzzWait, fs.srv.reg.counts())
		}
		time.Sleep(time.Millisecond)
	}
	for _, e := range fs.logs.TakeAll() {
		if strings.Contains(e.Message, "panic") {
			tb.Fatalf("the server panicked: %s", e.Message)
		}
		if e.Message != "connection closed" {
			continue
		}
		code, _ := e.ContextMap()["close_code"].(int64)
		if c := ws.StatusCode(code); !wsframe.ValidCloseCode(c) && c != ws.StatusNoStatusRcvd && c != ws.StatusAbnormalClosure {
			tb.Fatalf("connection closed with code %d in the log: %v", code, e.ContextMap())
		}
	}
}

// relayRig is a backend listener the fuzz harness answers itself and the
// relay servers in front of it: with and without io_uring, each with a
// small and a huge message limit.
type relayRig struct {
	backend net.Listener
	servers [4]*fuzzServer // index: bit 0 a system call per read and write, bit 1 small limit
}

func newRelayRig(tb testing.TB) *relayRig {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	rig := &relayRig{backend: ln}
	for i := range rig.servers {
		// No heartbeats: the proxy's own pings would be all a peer gets
		// that the other did not send.
		cfg := Config{MaxMessageBytes: 1 << 40, WriteTimeout: 2 * time.Second}
		if i&2 != 0 {
			cfg.MaxMessageBytes = fuzzSmallLimit
		}
		rig.servers[i] = startFuzzServer(tb, cfg, []string{ln.Addr().String()}, i&1 == 0)
	}
	return rig
}

// relayFlags are the harness's choices for one input, from its flags byte.
type relayFlags struct {
	server    int  // which of the rig's servers
	extension bool // permessage-deflate negotiated, so data frames may carry RSV1
	coalesce  bool // each peer's first bytes go out with its handshake
	backendUp bool // the backend hangs up first, else the client
	dribble   bool // bytes go out a few at a time
}

func parseRelayFlags(b uint8) relayFlags {
	return relayFlags{server: int(b & 3), extension: b&4 != 0, coalesce: b&8 != 0, backendUp: b&16 != 0, dribble: b&32 != 0}
}

// FuzzRelay feeds arbitrary bytes to a relayed WebSocket from both ends at
// once, through either driver: the proxy must not panic or allocate by
// declared lengths, each peer must receive a prefix of what the other sent
// (the proxy's own heartbeat pongs taken out), then at most one close
// frame of the proxy's own with a code it uses, and the connection must
// end and be logged once when the peers hang up.
func FuzzRelay(f *testing.F) {
	text := frameBytes(f, true, 0, ws.OpText, []byte("hello"), true)
	echo := frameBytes(f, true, 0, ws.OpText, []byte("hello"), false)
	f.Add(text, echo, uint8(0))
	f.Add(text, echo, uint8(1))
	f.Add(append(frameBytes(f, false, 0, ws.OpBinary, []byte("frag"), true),
		frameBytes(f, true, 0, ws.OpContinuation, []byte("ment"), true)...),
		frameBytes(f, true, 0, ws.OpClose, ws.NewCloseFrameBody(4000, "app"), false), uint8(8))
	f.Add(frameBytes(f, true, 0, ws.OpText, []byte("x"), false), []byte{0x82, 0x7f, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2}, uint8(2))
	f.Add(frameBytes(f, true, 0, ws.OpPong, []byte("wsedge-hb:00000001"), true), echo, uint8(32))
	f.Add([]byte("garbage that is no frame at all"), []byte("\x8f\x00\x88\x01\x03"), uint8(16|3))

	rig := newRelayRig(f)
	f.Fuzz(func(t *testing.T, fromClient, fromBackend []byte, flags uint8) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		rig.relay(t, fromClient, fromBackend, parseRelayFlags(flags))
		runtime.ReadMemStats(&after)
		if grew := after.TotalAlloc - before.TotalAlloc; grew > fuzzAllocBound {
			t.Fatalf("relaying %d and %d bytes allocated %d MiB", len(fromClient), len(fromBackend), grew>>20)
		}
	})
}

// relay runs one input: a client and a backend connect through the proxy,
// send their bytes, read until both have been quiet, hang up in the chosen
// order, and the results are checked.
func (rig *relayRig) relay(t *testing.T, fromClient, fromBackend []byte, fl relayFlags) {
	fs := rig.servers[fl.server]
	type side struct {
		conn net.Conn
		r    *bufio.Reader
		err  error
	}
	backendc := make(chan side, 1)
	go func() {
		rig.backend.(*net.TCPListener).SetDeadline(time.Now().Add(fuzzWait))
		conn, err := rig.backend.Accept()
		if err != nil {
			backendc <- side{err: err}
			return
		}
		r, err := answerUpgrade(conn, fl, fromBackend)
		backendc <- side{conn: conn, r: r, err: err}
	}()

	client, err := net.DialTimeout("tcp", fs.addr, fuzzWait)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	cr, err := askUpgrade(client, fl, fromClient)
	b := <-backendc
	if b.conn != nil {
		defer b.conn.Close()
	}
	if b.err != nil {
		t.Fatalf("backend side of the handshake: %v", b.err)
	}
	if err != nil {
		fs.settle(t, 0)
		t.Fatalf("client side of the handshake: %v", err)
	}

	// Read before writing, so that neither peer's writes can wait on the
	// other's reads.
	var written sync.WaitGroup
	written.Add(2)
	allWritten := make(chan struct{})
	go func() { written.Wait(); close(allWritten) }()
	var atClient, atBackend []byte
	var reads sync.WaitGroup
	reads.Go(func() { atClient = readUntilQuiet(client, cr, allWritten) })
	reads.Go(func() { atBackend = readUntilQuiet(b.conn, b.r, allWritten) })
	go func() { defer written.Done(); sendBytes(client, fromClient, fl) }()
	go func() { defer written.Done(); sendBytes(b.conn, fromBackend, fl) }()
	reads.Wait()
	if fl.backendUp {
		b.conn.Close()
		client.Close()
	} else {
		client.Close()
		b.conn.Close()
	}
	<-allWritten

	fs.settle(t, 1)
	if err := checkRelayed(atBackend, fromClient, true); err != nil {
		t.Errorf("client to backend: %v", err)
	}
	if err := checkRelayed(atClient, fromBackend, false); err != nil {
		t.Errorf("backend to client: %v", err)
	}
}

// fuzzKey is the client's Sec-WebSocket-Key, the sample of RFC 6455.
const fuzzKey = "dGhlIHNhbXBsZSBub25jZQ=="

// askUpgrade sends the client's upgrade request, with the first bytes of
// payload when coalescing, and reads the proxy's 101. The rest of payload
// is left for sendBytes; the reader returned holds what came after the
// 101.
func askUpgrade(conn net.Conn, fl relayFlags, payload []byte) (*bufio.Reader, error) {
	req := "GET /fuzz HTTP/1.1\r\nHost: fuzz.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + fuzzKey + "\r\n"
	if fl.extension {
		req += "Sec-WebSocket-Extensions: permessage-deflate\r\n"
	}
	msg := []byte(req + "\r\n")
	if fl.coalesce {
		msg = append(msg, payload...)
	}
	conn.SetDeadline(time.Now().Add(fuzzWait))
	if _, err := conn.Write(msg); err != nil {
		return nil, err
	}
	r := bufio.NewReader(conn)
	res, err := http.ReadResponse(r, nil)
	if err != nil {
		return nil, err
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSwitchingProtocols {
		return nil, fmt.Errorf("proxy answered %s", res.Status)
	}
	if got := res.Header.Get("Sec-WebSocket-Extensions"); fl.extension != (got != "") {
		return nil, fmt.Errorf("extension offered %v, proxy answered %q", fl.extension, got)
	}
	conn.SetDeadline(time.Time{})
	return r, nil
}

// answerUpgrade reads the proxy's upgrade request on the backend side and
// accepts it, sending the first bytes of payload with the 101 when
// coalescing.
func answerUpgrade(conn net.Conn, fl relayFlags, payload []byte) (*bufio.Reader, error) {
	conn.SetDeadline(time.Now().Add(fuzzWait))
	r := bufio.NewReader(conn)
	req, err := http.ReadRequest(r)
	if err != nil {
		return nil, err
	}
	accept := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	res := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(accept[:]) + "\r\n"
	if fl.extension {
		if !strings.Contains(req.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate") {
			return nil, fmt.Errorf("proxy did not pass the extension offer on: %q", req.Header.Get("Sec-WebSocket-Extensions"))
		}
		res += "Sec-WebSocket-Extensions: permessage-deflate\r\n"
	}
	msg := []byte(res + "\r\n")
	if fl.coalesce {
		msg = append(msg, payload...)
	}
	if _, err := conn.Write(msg); err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return r, nil
}

// sendBytes writes what the handshake did not carry of p, a few bytes at a
// time when dribbling. Write errors are expected: the proxy may have hung
// up on a peer that broke the protocol.
func sendBytes(conn net.Conn, p []byte, fl relayFlags) {
	if fl.coalesce {
		return
	}
	conn.SetWriteDeadline(time.Now().Add(fuzzWait))
	for len(p) > 0 {
		n := len(p)
		if fl.dribble {
			n = min(n, 1+int(p[0]%7))
		}
		if _, err := conn.Write(p[:n]); err != nil {
			return
		}
		p = p[n:]
	}
}

// readUntilQuiet reads everything the peer gets until the connection ends
// or, once allWritten is closed, nothing has come for fuzzQuiet.
func readUntilQuiet(conn net.Conn, r io.Reader, allWritten <-chan struct{}) []byte {
	var got []byte
	buf := make([]byte, 4096)
	for deadline := time.Now().Add(fuzzWait); time.Now().Before(deadline); {
		conn.SetReadDeadline(time.Now().Add(fuzzQuiet))
		n, err := r.Read(buf)
		got = append(got, buf[:n]...)
		var ne net.Error
		switch {
		case err == nil:
		case errors.As(err, &ne) && ne.Timeout():
			select {
			case <-allWritten:
				return got
			default:
			}
		default:
			return got
		}
	}
	return got
}

// checkRelayed checks what one peer received against what the other sent:
// a prefix of it, then at most one close frame of the proxy's own, which
// may only start between frames. Towards the backend (masked) the proxy's
// heartbeat pongs are taken out of what the client sent, and the proxy's
// close carries a mask. Nothing may follow a close frame.
func checkRelayed(got, sent []byte, masked bool) error {
	want := sent
	codes := proxyCodesToClient
	if masked {
		want = withoutHeartbeatPongs(sent)
		codes = proxyCodesToBackend
	}
	if err := nothingAfterClose(got); err != nil {
		return err
	}
	if bytes.HasPrefix(want, got) {
		return nil
	}
	for _, b := range frameStarts(want) {
		if b > len(got) || !bytes.Equal(got[:b], want[:b]) {
			break
		}
		if code, ok := oneCloseFrame(got[b:], masked); ok {
			for _, c := range codes {
				if code == c {
					return nil
				}
			}
			return fmt.Errorf("after %d relayed bytes the proxy closed with code %d, not one it uses", b, code)
		}
	}
	n := 0
	for n < len(got) && n < len(want) && got[n] == want[n] {
		n++
	}
	return fmt.Errorf("received %d bytes that are not what was sent (%d bytes) plus a close of the proxy's: they differ at byte %d: got % x, sent % x",
		len(got), len(want), n, clip(got[n:]), clip(want[n:]))
}

func clip(p []byte) []byte { return p[:min(len(p), 32)] }

// frameStarts returns the offsets in p where a frame starts, as long as p
// parses as frames: 0, then the end of each whole frame.
func frameStarts(p []byte) []int {
	starts := []int{0}
	for off := 0; off < len(p); {
		n, ok := wholeFrame(p[off:])
		if !ok {
			break
		}
		off += n
		starts = append(starts, off)
	}
	return starts
}

// wholeFrame returns the length of the whole frame at the start of p, by
// gobwas/ws's reading of its header, not the proxy's.
func wholeFrame(p []byte) (int, bool) {
	r := bytes.NewReader(p)
	h, err := ws.ReadHeader(r)
	if err != nil {
		return 0, false
	}
	hlen := len(p) - r.Len()
	if h.Length < 0 || h.Length > int64(len(p)-hlen) {
		return 0, false
	}
	return hlen + int(h.Length), true
}

// withoutHeartbeatPongs returns p without the masked pongs whose payload
// marks them as answers to the proxy's own pings, which the proxy keeps
// from the backend. It stops looking at the first bytes that are not a
// whole frame.
func withoutHeartbeatPongs(p []byte) []byte {
	var out []byte
	for len(p) > 0 {
		n, ok := wholeFrame(p)
		if !ok {
			break
		}
		if !isHeartbeatPong(p[:n]) {
			out = append(out, p[:n]...)
		}
		p = p[n:]
	}
	return append(out, p...)
}

func isHeartbeatPong(frame []byte) bool {
	f, err := ws.ReadFrame(bytes.NewReader(frame))
	if err != nil || f.Header.OpCode != ws.OpPong || !f.Header.Fin || f.Header.Rsv != 0 || !f.Header.Masked || f.Header.Length > 125 {
		return false
	}
	ws.Cipher(f.Payload, f.Header.Mask, 0)
	return bytes.HasPrefix(f.Payload, heartbeatPrefix)
}

// oneCloseFrame reports whether p is exactly one close frame, masked or
// not as asked, and its code (1005 when it has none).
func oneCloseFrame(p []byte, masked bool) (ws.StatusCode, bool) {
	n, ok := wholeFrame(p)
	if !ok || n != len(p) {
		return 0, false
	}
	f, err := ws.ReadFrame(bytes.NewReader(p))
	if err != nil || f.Header.OpCode != ws.OpClose || f.Header.Masked != masked {
		return 0, false
	}
	if masked {
		ws.Cipher(f.Payload, f.Header.Mask, 0)
	}
	if len(f.Payload) < 2 {
		return ws.StatusNoStatusRcvd, true
	}
	return ws.StatusCode(binary.BigEndian.Uint16(f.Payload)), true
}

// nothingAfterClose fails when a whole close frame in p is followed by
// anything (RFC 6455 section 5.5.1).
func nothingAfterClose(p []byte) error {
	for off := 0; off < len(p); {
		n, ok := wholeFrame(p[off:])
		if !ok {
			return nil
		}
		if ws.OpCode(p[off]&0x0f) == ws.OpClose && off+n < len(p) {
			return fmt.Errorf("%d bytes relayed after a close frame", len(p)-off-n)
		}
		off += n
	}
	return nil
}

// handshakeBackend is a backend for the handshake targets: it accepts every
// upgrade and answers every other request 200, and remembers the
// X-Forwarded-For of the last upgrade, which is what it was told of the
// client.
type handshakeBackend struct {
	addr string
	mu   sync.Mutex
	xff  string
}

func startHandshakeBackend(tb testing.TB) *handshakeBackend {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	hb := &handshakeBackend{addr: ln.Addr().String()}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	var conns sync.WaitGroup
	srv := &http.Server{
		ErrorLog: log.New(io.Discard, "", 0),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !websocket.IsWebSocketUpgrade(r) {
				io.WriteString(w, "ok")
				return
			}
			hb.mu.Lock()
			hb.xff = r.Header.Get("X-Forwarded-For")
			hb.mu.Unlock()
			c, err := up.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			conns.Add(1)
			defer conns.Done()
			defer c.Close()
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
			}
		}),
	}
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(ln) }()
	tb.Cleanup(func() {
		srv.Close()
		<-served
		conns.Wait()
	})
	return hb
}

func (hb *handshakeBackend) lastXFF() string {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	return hb.xff
}

// handshakeStatuses are the answers a request head may get: for heads that
// do not parse or come too slowly (400, 408, 413, 417, 431, 501, 505),
// from the proxy's checks (400, 403, 405, 426, 429, 503), from the backend
// or for it (502, 504), and the backend's own (100 Continue, 101, 200).
var handshakeStatuses = map[int]bool{
	100: true, 101: true, 200: true,
	400: true, 403: true, 405: true, 408: true, 413: true, 417: true, 426: true, 429: true, 431: true,
	501: true, 502: true, 503: true, 504: true, 505: true,
}

// FuzzHandshake sends arbitrary request heads to the proxy in each
// affinity mode (mode%3), through the event loops' own handshake or, with
// mode%6 >= 3, through the HTTP server's: each gets a status line with a
// status from a known set, or, when it does not even parse as HTTP,
// possibly a closed connection; never a hang or a panic. An upgrade that
// is answered 101 is relayed and logged once when the client hangs up.
func FuzzHandshake(f *testing.F) {
	upgrade := "GET /chat?room=1 HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + fuzzKey + "\r\n"
	for _, seed := range []struct {
		head string
		mode uint8
	}{
		{upgrade + "\r\n", 0},
		{upgrade + "X-Forwarded-For: 203.0.113.7, 198.51.100.1\r\n\r\n", 0},
		{upgrade + "Forwarded: for=\"[2001:db8::1]:4711\";proto=https, for=192.0.2.60\r\n\r\n", 0},
		{upgrade + "Cookie: wsedge_route=v1.0123456789abcdef; other=1\r\n\r\n", 1},
		{upgrade + "X-Session-ID: user-42\r\n\r\n", 2},
		{"GET /socket.io/?EIO=4&transport=polling&sid=abc HTTP/1.1\r\nHost: app.test\r\n\r\n", 1},
		{"POST /submit HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhello", 0},
		{strings.Replace(upgrade, "Version: 13", "Version: 8", 1) + "\r\n", 0},
		{strings.Replace(upgrade, "GET", "PUT", 1) + "\r\n", 0},
		{strings.Replace(upgrade, "HTTP/1.1", "HTTP/1.0", 1) + "\r\n", 0},
		{upgrade + "Sec-WebSocket-Key: " + fuzzKey + "\r\n\r\n", 0},
		{upgrade + "Origin: https://evil.test\r\n\r\n", 0},
		{"GET http://app.test/abs HTTP/1.1\r\nHost: other.test\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + fuzzKey + "\r\n\r\n", 2},
		{"OPTIONS * HTTP/1.1\r\nHost: app.test\r\n\r\n", 0},
		{"GET / HTTP/1.1\r\nHost: app.test\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc", 0},
		{"GET / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: gzip\r\n\r\n", 0},
		{"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 0},
	} {
		f.Add([]byte(seed.head), seed.mode)
	}

	hb := startHandshakeBackend(f)
	var servers []*fuzzServer
	for _, ring := range []bool{true, false} {
		for _, cfg := range []Config{
			{Key: KeyIP, Trusted: affinity.NewTrustedProxies([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}),
				AllowedOrigins: []string{"https://app.test"}, MaxConnectionsPerIP: 1000},
			{Key: KeyCookie},
			{Key: KeyHeader, Header: "X-Session-ID"},
		} {
			cfg.HandshakeTimeout = 2 * time.Second
			servers = append(servers, startFuzzServer(f, cfg, []string{hb.addr}, ring))
		}
	}
	f.Fuzz(func(t *testing.T, head []byte, mode uint8) {
		fs := servers[int(mode)%len(servers)]
		if !bytes.Contains(head, []byte("\r\n\r\n")) {
			head = append(bytes.Clone(head), "\r\n\r\n"...)
		}
		_, parseErr := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		status, err := statusOf(fs.addr, head)
		fs.settle(t, upgrades(status))
		switch {
		case errors.Is(err, errNoAnswer) && parseErr != nil:
			// Not HTTP at all: dropping the connection is a clear answer.
		case err != nil:
			t.Fatalf("head %q: %v", clip(head), err)
		case !handshakeStatuses[status]:
			t.Fatalf("head %q: status %d, not one the proxy gives", head, status)
		}
	})
}

// upgrades is how many relayed connections a status started.
func upgrades(status int) int {
	if status == http.StatusSwitchingProtocols {
		return 1
	}
	return 0
}

// errNoAnswer is a connection closed before any status line.
var errNoAnswer = errors.New("connection closed without an answer")

// statusOf sends raw to the proxy at addr and returns the status of the
// first status line that comes back; the connection is closed after.
func statusOf(addr string, raw []byte) (int, error) {
	conn, err := net.DialTimeout("tcp", addr, fuzzWait)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(fuzzWait))
	if _, err := conn.Write(raw); err != nil {
		return 0, errNoAnswer // the proxy hung up on the first bytes
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return 0, fmt.Errorf("no answer within %v", fuzzWait)
	case err != nil && line == "":
		return 0, errNoAnswer
	case err != nil:
		return 0, fmt.Errorf("status line %q cut short: %v", line, err)
	}
	proto, rest, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
	code, _, _ := strings.Cut(rest, " ")
	status, err := strconv.Atoi(code)
	if (proto != "HTTP/1.1" && proto != "HTTP/1.0") || err != nil {
		return 0, fmt.Errorf("status line %q", line)
	}
	return status, nil
}

// FuzzProxyHeader puts an arbitrary PROXY protocol header (v1 or v2) in
// front of a valid upgrade, on a listener that believes it, as a proxy
// behind a trusted load balancer runs: a header go-proxyproto reads is
// honoured (the backend is told the client address it carries, or the
// peer's for LOCAL and address-less headers), no header at all is plain
// traffic, and a broken one gets no upgrade; the backend is never told a
// client address that is not an IP address (a Unix socket adds nothing to
// X-Forwarded-For).
func FuzzProxyHeader(f *testing.F) {
	for _, seed := range []string{
		"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n",
		"PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n",
		"PROXY UNKNOWN\r\n",
		"PROXY TCP4 203.0.113.7 192.0.2.1 99999 443\r\n",
		"PROXY TCP4 203.0.113",
		"",
	} {
		f.Add([]byte(seed))
	}
	for _, h := range []*proxyproto.Header{
		proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 1}, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 2}),
		proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("2001:db8::7"), Port: 1}, &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 2}),
		{Version: 2, Command: proxyproto.LOCAL},
	} {
		b, err := h.Format()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}

	hb := startHandshakeBackend(f)
	loopback := affinity.NewTrustedProxies([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})
	cfg := Config{HandshakeTimeout: 2 * time.Second, Trusted: loopback}
	fs := startFuzzServer(f, cfg, []string{hb.addr}, true, WithProxyProtocol(loopback))
	request := []byte("GET / HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + fuzzKey + "\r\n\r\n")

	f.Fuzz(func(t *testing.T, header []byte) {
		stream := append(bytes.Clone(header), request...)
		br := bufio.NewReader(bytes.NewReader(stream))
		h, readErr := proxyproto.Read(br)
		rest, _ := io.ReadAll(br)
		status, err := statusOf(fs.addr, stream)
		fs.settle(t, upgrades(status))
		if err != nil && !errors.Is(err, errNoAnswer) {
			t.Fatalf("header %q: %v", clip(header), err)
		}
		if status == http.StatusSwitchingProtocols {
			xff := hb.lastXFF()
			for _, a := range strings.Split(xff, ", ") {
				if _, perr := netip.ParseAddr(a); perr != nil && xff != "" {
					t.Fatalf("header %q: the backend was told X-Forwarded-For %q, not a list of IP addresses", clip(header), xff)
				}
			}
			if want, ok := proxiedClient(h); ok && xff != want {
				t.Fatalf("header %q: the backend was told X-Forwarded-For %q, want %s", clip(header), xff, want)
			}
		}
		switch {
		case readErr != nil && !errors.Is(readErr, proxyproto.ErrNoProxyProtocol):
			if status == http.StatusSwitchingProtocols {
				t.Fatalf("header %q (%v) was upgraded", clip(header), readErr)
			}
		case !bytes.Equal(rest, request):
			// The header is followed by bytes of its own: whatever they make
			// of the request, the answer is a status or a hang-up.
			if err == nil && !handshakeStatuses[status] {
				t.Fatalf("header %q: status %d", clip(header), status)
			}
		case status != http.StatusSwitchingProtocols:
			t.Fatalf("header %q (read as %v): status %d, err %v; want the upgrade", clip(header), h, status, err)
		}
	})
}

// proxiedClient is the X-Forwarded-For the backend must be told for a
// PROXY header h: the client address it carries, or the peer's own for no
// header, LOCAL and UNKNOWN; false when h names something that is not an
// IP address (a Unix socket), which the product's listener replaces by
// the peer and this one leaves out.
func proxiedClient(h *proxyproto.Header) (string, bool) {
	if h == nil || h.Command.IsLocal() || h.SourceAddr == nil {
		return "127.0.0.1", true
	}
	ap, err := netip.ParseAddrPort(h.SourceAddr.String())
	if err != nil {
		return "", false
	}
	return ap.Addr().Unmap().String(), true
}
