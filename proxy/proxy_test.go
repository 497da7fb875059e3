package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/wsedge/wsedge/affinity"
	"github.com/wsedge/wsedge/upstream"
	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testProxy is a Server on a loopback port in front of backends.
type testProxy struct {
	srv  *Server
	addr string
	set  *upstream.Set
}

func startProxy(tb testing.TB, cfg Config, backends ...*upstreamtest.Backend) *testProxy {
	tb.Helper()
	var list []upstream.Backend
	for _, b := range backends {
		list = append(list, upstream.Backend{Addr: b.Addr, Weight: 1})
	}
	return startProxyOn(tb, cfg, list)
}

func startProxyOn(tb testing.TB, cfg Config, list []upstream.Backend, opts ...Option) *testProxy {
	tb.Helper()
	return startProxyWith(tb, cfg, list, func(addr string, loops int) (net.Listener, error) { return ListenTCP(addr, loops) }, opts...)
}

// startProxyWith starts a Server with opts on a listener from listen.
func startProxyWith(tb testing.TB, cfg Config, list []upstream.Backend, listen func(string, int) (net.Listener, error), opts ...Option) *testProxy {
	tb.Helper()
	set := upstream.NewSet(list)
	srv := New(cfg, set, opts...)
	ln, err := listen("127.0.0.1:0", srv.Loops())
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	watched := make(chan struct{})
	go func() { defer close(served); srv.Serve(ln) }()
	go func() { defer close(watched); srv.WatchMembers(ctx) }()
	tb.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
		cancel()
		<-served
		<-watched
	})
	return &testProxy{srv: srv, addr: ln.Addr().String(), set: set}
}

func (p *testProxy) url(path string) string { return "ws://" + p.addr + path }

func dial(tb testing.TB, p *testProxy, path string, h http.Header) *websocket.Conn {
	tb.Helper()
	c, res, err := websocket.DefaultDialer.Dial(p.url(path), h)
	if err != nil {
		status := 0
		if res != nil {
			status = res.StatusCode
		}
		tb.Fatalf("dial %s: %v (status %d)", path, err, status)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func whoami(tb testing.TB, c *websocket.Conn) string {
	tb.Helper()
	if err := c.WriteMessage(websocket.TextMessage, []byte("whoami")); err != nil {
		tb.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, msg, err := c.ReadMessage()
	if err != nil {
		tb.Fatal(err)
	}
	return string(msg)
}

// frameBytes builds one frame as a peer would send it.
func frameBytes(tb testing.TB, fin bool, rsv byte, op ws.OpCode, payload []byte, masked bool) []byte {
	tb.Helper()
	h := ws.Header{Fin: fin, Rsv: rsv >> 4, OpCode: op, Length: int64(len(payload)), Masked: masked}
	p := append([]byte(nil), payload...)
	if masked {
		h.Mask = ws.NewMask()
		ws.Cipher(p, h.Mask, 0)
	}
	var buf bytes.Buffer
	if err := ws.WriteHeader(&buf, h); err != nil {
		tb.Fatal(err)
	}
	buf.Write(p)
	return buf.Bytes()
}

// closeCode reads until the connection ends and returns the close code the
// client got; -1 when the connection ended without a close frame.
// dialEach opens n connections one after the other, each relaying a
// message before the next opens, gap apart.
func dialEach(tb testing.TB, p *testProxy, n int, gap time.Duration) []*websocket.Conn {
	tb.Helper()
	var conns []*websocket.Conn
	for range n {
		c := dial(tb, p, "/", nil)
		whoami(tb, c)
		conns = append(conns, c)
		time.Sleep(gap)
	}
	return conns
}

func closeCode(tb testing.TB, c *websocket.Conn, within time.Duration) int {
	tb.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			if ce.Code == websocket.CloseAbnormalClosure {
				return -1
			}
			return ce.Code
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			tb.Fatalf("no close within %v", within)
		}
		return -1
	}
}

// rig says how a test's proxy is built: the Server's options (a driver's
// choice, such as WithoutIOUring), and whether its clients come through a
// Go listener rather than ListenTCP's sockets.
type rig struct {
	opts       []Option
	goListener bool
}

func (r rig) start(tb testing.TB, cfg Config, backends ...*upstreamtest.Backend) *testProxy {
	tb.Helper()
	var list []upstream.Backend
	for _, b := range backends {
		list = append(list, upstream.Backend{Addr: b.Addr, Weight: 1})
	}
	return r.startOn(tb, cfg, list)
}

func (r rig) startOn(tb testing.TB, cfg Config, list []upstream.Backend) *testProxy {
	tb.Helper()
	listen := func(addr string, loops int) (net.Listener, error) { return ListenTCP(addr, loops) }
	if r.goListener {
		listen = func(addr string, _ int) (net.Listener, error) { return net.Listen("tcp", addr) }
	}
	return startProxyWith(tb, cfg, list, listen, r.opts...)
}

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

// TestGoListener runs a few tests again with clients accepted by a Go
// listener on a goroutine, as a program embedding the proxy may serve it,
// instead of by the event loops on ListenTCP's sockets.
func TestGoListener(t *testing.T) {
	for name, test := range map[string]func(*testing.T, rig){
		"Echo":                   echoThroughProxy,
		"Cookie":                 cookieAffinity,
		"Refusal":                backendRefusalRelayed,
		"PlainHTTP":              plainHTTPStreams,
		"ShutdownClosesWith1001": shutdownClosesWith1001,
	} {
		t.Run(name, func(t *testing.T) { test(t, rig{goListener: true}) })
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

func TestHeadersPassAndHopHeadersDrop(t *testing.T) {
	b := upstreamtest.Start(t)
	p := startProxy(t, Config{}, b)
	h := http.Header{}
	h.Set("Cookie", "session=abc")
	h.Set("Authorization", "Bearer t0ken")
	h.Set("Origin", "http://example.test")
	h.Set("X-Custom", "yes")
	h.Set("Keep-Alive", "timeout=5")
	h.Set("X-Forwarded-For", "6.6.6.6") // an untrusted client's claim
	dial(t, p, "/", h)
	got := b.Handshakes()[0].Header
	for k, want := range map[string]string{
		"Cookie": "session=abc", "Authorization": "Bearer t0ken", "Origin": "http://example.test",
		"X-Custom": "yes", "Keep-Alive": "", "X-Forwarded-For": "127.0.0.1",
	} {
		if got.Get(k) != want {
			t.Errorf("backend saw %s = %q, want %q", k, got.Get(k), want)
		}
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

func TestStickyByForwardedForFromTrustedProxy(t *testing.T) {
	var backends []*upstreamtest.Backend
	for i := range 3 {
		backends = append(backends, upstreamtest.Start(t, upstreamtest.WithName(fmt.Sprintf("b%d", i))))
	}
	p := startProxy(t, Config{Trusted: affinity.NewTrustedProxies([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")})}, backends...)
	count := map[string]int{}
	for i := range 60 {
		h := http.Header{"X-Forwarded-For": {fmt.Sprintf("10.%d.%d.7", i, i*3)}}
		c := dial(t, p, "/", h)
		first := whoami(t, c)
		c.Close()
		again := whoami(t, dial(t, p, "/", h))
		res := httpGet(t, "http://"+p.addr+"/poll", h)
		if again != first || res != first {
			t.Fatalf("client %d: websocket on %s, reconnect on %s, http on %s", i, first, again, res)
		}
		count[first]++
	}
	for name, n := range count {
		if n < 5 {
			t.Errorf("backend %s got %d of 60 clients", name, n)
		}
	}
	if len(count) != 3 {
		t.Fatalf("clients spread over %v, want all 3 backends", count)
	}
}

func httpGet(tb testing.TB, url string, h http.Header) string {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range h {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return string(body)
}

func TestCookieAffinity(t *testing.T) { cookieAffinity(t, rig{}) }

func cookieAffinity(t *testing.T, r rig) {
	var backends []*upstreamtest.Backend
	for i := range 3 {
		backends = append(backends, upstreamtest.Start(t, upstreamtest.WithName(fmt.Sprintf("b%d", i))))
	}
	p := r.start(t, Config{Key: KeyCookie, Cookie: "route"}, backends...)
	c, res, err := websocket.DefaultDialer.Dial(p.url("/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	first := whoami(t, c)
	c.Close()
	set := res.Header.Get("Set-Cookie")
	if !strings.HasPrefix(set, "route=") || !strings.Contains(set, "HttpOnly") ||
		!strings.Contains(set, "Path=/") || !strings.Contains(set, "SameSite=Lax") {
		t.Fatalf("101 Set-Cookie = %q, want an HttpOnly, Path=/, SameSite=Lax route cookie", set)
	}
	cookie := strings.SplitN(set, ";", 2)[0]
	// Each backend, pinned by its cookie, from any address.
	for _, b := range backends {
		h := http.Header{"Cookie": {"route=" + affinity.Token(b.Addr)}}
		if got := whoami(t, dial(t, p, "/", h)); got != b.Name {
			t.Fatalf("cookie for %s landed on %s", b.Name, got)
		}
	}
	if got := whoami(t, dial(t, p, "/", http.Header{"Cookie": {cookie}})); got != first {
		t.Fatalf("own cookie landed on %s, first connection on %s", got, first)
	}
	for _, junk := range []string{"route=", "route=zzz", "route=1ffffffffffffffff", "route=%00%01", "route=" + strings.Repeat("a", 5000)} {
		c, _, err := websocket.DefaultDialer.Dial(p.url("/"), http.Header{"Cookie": {junk}})
		if err != nil {
			t.Fatalf("cookie %.20q: %v", junk, err)
		}
		if got := whoami(t, c); got != first {
			t.Errorf("cookie %.20q: landed on %s, want the IP's backend %s", junk, got, first)
		}
		c.Close()
	}
}

func TestBackendRefusalRelayed(t *testing.T) { backendRefusalRelayed(t, rig{}) }

func backendRefusalRelayed(t *testing.T, r rig) {
	b := upstreamtest.Start(t, upstreamtest.WithRefuse(http.StatusForbidden, "no entry"))
	p := r.start(t, Config{}, b)
	_, res, err := websocket.DefaultDialer.Dial(p.url("/"), nil)
	if err == nil {
		t.Fatal("dial succeeded through a refusing backend")
	}
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "no entry") {
		t.Fatalf("status %d body %q, want 403 with the backend's body", res.StatusCode, body)
	}
}

func TestUnreachableAndSlowBackends(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	p := startProxyOn(t, Config{}, []upstream.Backend{{Addr: dead}})
	_, res, err := websocket.DefaultDialer.Dial(p.url("/"), nil)
	if err == nil || res == nil || res.StatusCode != http.StatusBadGateway {
		t.Fatalf("unreachable backend: err %v, res %v; want 502", err, res)
	}

	slow := upstreamtest.Start(t, upstreamtest.WithHandshakeDelay(3*time.Second))
	p = startProxy(t, Config{HandshakeTimeout: 300 * time.Millisecond}, slow)
	start := time.Now()
	_, res, err = websocket.DefaultDialer.Dial(p.url("/"), nil)
	if err == nil || res == nil || res.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("slow backend: err %v, res %v; want 504", err, res)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("504 took %v", d)
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

func TestMalformedHandshakes(t *testing.T) {
	b := upstreamtest.Start(t)
	p := startProxy(t, Config{}, b)
	tests := []struct {
		name string
		give string
		want int
	}{
		{"bad key", "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n\r\n", 400},
		{"wrong version", "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", 426},
		{"garbage", "\x16\x03\x01\x02\x00garbage\r\n\r\n", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", p.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.Write([]byte(tt.give))
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			line := make([]byte, 12)
			io.ReadFull(conn, line)
			if want := fmt.Sprintf("HTTP/1.1 %d", tt.want); string(line) != want {
				t.Fatalf("answer %q, want %q", line, want)
			}
		})
	}
	if n := len(b.Handshakes()); n != 0 {
		t.Fatalf("backend saw %d handshakes for malformed requests, want 0", n)
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

func TestPlainHTTPStreams(t *testing.T) { plainHTTPStreams(t, rig{}) }

func plainHTTPStreams(t *testing.T, r rig) {
	b := upstreamtest.Start(t, upstreamtest.WithName("b1"))
	p := r.start(t, Config{}, b)
	res, err := http.Get("http://" + p.addr + "/sse?count=3")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	buf := make([]byte, 64)
	start := time.Now()
	n, _ := res.Body.Read(buf)
	if !strings.Contains(string(buf[:n]), "data: 1") {
		t.Fatalf("first event %q", buf[:n])
	}
	if time.Since(start) > time.Second {
		t.Fatal("first event was not flushed at once")
	}
	rest, _ := io.ReadAll(res.Body)
	if !strings.Contains(string(rest), "data: 3") {
		t.Fatalf("rest of stream %q", rest)
	}

	body := strings.Repeat("x", 100000)
	res2, err := http.Post("http://"+p.addr+"/echo", "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(res2.Body)
	res2.Body.Close()
	if string(got) != body {
		t.Fatalf("echoed body of %d bytes, want %d", len(got), len(body))
	}
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

// Handing a plain HTTP connection to the HTTP server never waits on the
// event loop: with the HTTP server taking no connections at all, the
// WebSockets on the same loop keep echoing.
func TestHandOffNeverBlocksTheLoop(t *testing.T) {
	b := upstreamtest.Start(t)
	p := startProxyOn(t, Config{}, []upstream.Backend{{Addr: b.Addr, Weight: 1}}, WithLoops(1))
	c := dial(t, p, "/", nil)
	whoami(t, c)

	// A front whose HTTP server takes nothing: the hand-off must wait off
	// the loop.
	real := p.srv.front.Load()
	stalled := &front{ln: newHandoffListener()}
	p.srv.front.Store(stalled)
	defer func() {
		p.srv.front.Store(real)
		stalled.ln.Close()
	}()
	for range 3 {
		plain, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer plain.Close()
		io.WriteString(plain, "GET /page HTTP/1.1\r\nHost: app.test\r\n\r\n")
	}
	for i := range 20 {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		msg := fmt.Sprintf("still here %d", i)
		if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("echo %d while the HTTP server takes nothing: %v", i, err)
		}
		if string(got) != msg {
			t.Fatalf("echo %d = %q", i, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
