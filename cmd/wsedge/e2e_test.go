package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

// wsDial opens a WebSocket to path on p's client listener, as the mode
// connects, with header h, failing the test unless it is accepted.
func wsDial(t *testing.T, p *proc, path string, h http.Header) (*websocket.Conn, *http.Response) {
	t.Helper()
	c, res, err := p.wsDialer(*websocket.DefaultDialer).Dial(p.wsURL(path), h)
	if err != nil {
		status := 0
		if res != nil {
			status = res.StatusCode
		}
		t.Fatalf("dial %s: %v (status %d)", p.wsURL(path), err, status)
	}
	t.Cleanup(func() { c.Close() })
	return c, res
}

func askName(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := c.WriteMessage(websocket.TextMessage, []byte("whoami")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, msg, err := c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	return string(msg)
}

// closeCodeOf reads until the connection ends and returns the close code
// received; -1 when it ended without a close frame.
func closeCodeOf(t *testing.T, c *websocket.Conn, within time.Duration) int {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure {
			return ce.Code
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection not closed within %v", within)
		}
		return -1
	}
}

func threeBackends(t *testing.T, opts ...upstreamtest.Option) []*upstreamtest.Backend {
	var bs []*upstreamtest.Backend
	for i := range 3 {
		bs = append(bs, upstreamtest.Start(t, append([]upstreamtest.Option{upstreamtest.WithName(fmt.Sprintf("app%d", i))}, opts...)...))
	}
	return bs
}

// 300 clients behind a trusted proxy, each with its own X-Forwarded-For:
// spread over the three backends, and each client's WebSocket, its
// reconnect and its plain HTTP requests meet on one backend.
func TestStickyRoutingOf300Clients(t *testing.T) {
	bs := threeBackends(t)
	p := startWsedge(t, "[affinity]\ntrusted_proxies = [\"127.0.0.1/32\"]\n"+upstreams(bs...))

	const clients = 300
	type result struct{ ws, again, http string }
	results := make([]result, clients)
	hc := p.httpClient(t)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range clients {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			h := http.Header{"X-Forwarded-For": {fmt.Sprintf("203.%d.%d.%d", i%7, i/7, i%251)}}
			c, _ := wsDial(t, p, "/socket", h)
			results[i].ws = askName(t, c)
			c.Close()
			c2, _ := wsDial(t, p, "/socket", h)
			results[i].again = askName(t, c2)
			c2.Close()
			req, _ := http.NewRequest(http.MethodGet, p.httpURL("/poll?t=1"), nil)
			req.Header = h.Clone()
			res, err := hc.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			results[i].http = res.Header.Get("X-Backend")
		})
	}
	wg.Wait()
	count := map[string]int{}
	for i, r := range results {
		if r.ws == "" || r.ws != r.again || r.ws != r.http {
			t.Fatalf("client %d: websocket on %q, reconnect on %q, http on %q", i, r.ws, r.again, r.http)
		}
		count[r.ws]++
	}
	t.Logf("300 clients spread: %v", count)
	for _, b := range bs {
		if count[b.Name] < clients*15/100 {
			t.Errorf("backend %s got %d of %d clients, want at least 15%%", b.Name, count[b.Name], clients)
		}
	}
}

// Subprotocol and permessage-deflate are negotiated between the client and
// the backend, both gorilla/websocket, through the proxy.
func TestNegotiationEndToEnd(t *testing.T) {
	b := upstreamtest.Start(t, upstreamtest.WithSubprotocols("mqtt", "graphql-ws"), upstreamtest.WithCompression())
	p := startWsedge(t, upstreams(b))
	d := p.wsDialer(websocket.Dialer{Subprotocols: []string{"graphql-ws", "mqtt"}, EnableCompression: true})
	c, res, err := d.Dial(p.wsURL("/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Subprotocol() != "graphql-ws" {
		t.Fatalf("subprotocol %q, want graphql-ws", c.Subprotocol())
	}
	if ext := res.Header.Get("Sec-WebSocket-Extensions"); !strings.Contains(ext, "permessage-deflate") {
		t.Fatalf("Sec-WebSocket-Extensions %q, want permessage-deflate", ext)
	}
	for i := range 20 {
		msg := bytes.Repeat([]byte(fmt.Sprintf("message %d ", i)), 500)
		c.WriteMessage(websocket.TextMessage, msg)
		_, got, err := c.ReadMessage()
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("message %d: err %v", i, err)
		}
	}
	seen := b.Handshakes()[0].Header.Get("Sec-Websocket-Extensions")
	if !strings.Contains(seen, "permessage-deflate") {
		t.Fatalf("backend saw extensions %q, want the client's permessage-deflate offer", seen)
	}
}

// A 16 MiB message crosses the proxy intact without the proxy holding it.
func TestLargeMessageBoundedMemory(t *testing.T) {
	b := upstreamtest.Start(t)
	p := startWsedge(t, "[websocket]\nmax_message_bytes = \"64MiB\"\n"+upstreams(b))
	c, _ := wsDial(t, p, "/", nil)
	askName(t, c)
	before := p.rss(t)
	msg := make([]byte, 16<<20)
	rand.Read(msg)
	done := make(chan error, 1)
	go func() { done <- c.WriteMessage(websocket.BinaryMessage, msg) }()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, got, err := c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("16 MiB message changed on the way")
	}
	grew := p.rss(t) - before
	t.Logf("proxy RSS %d KiB before, grew %d KiB relaying 16 MiB each way", before>>10, grew>>10)
	if grew > 4<<20 {
		t.Fatalf("proxy RSS grew by %d KiB relaying a 16 MiB message, want under 4 MiB", grew>>10)
	}
}

// A client that stops reading is closed within write_timeout + 1s, its
// backend gets 1001, and the proxy does not buffer for it meanwhile.
func TestSlowConsumerClosedInTime(t *testing.T) {
	b := upstreamtest.Start(t)
	p := startWsedge(t, "[websocket]\nwrite_timeout = \"1s\"\nmax_message_bytes = \"2MiB\"\n"+upstreams(b))
	c, _ := wsDial(t, p, "/", nil)
	askName(t, c)
	before := p.rss(t)
	start := time.Now()
	msg := make([]byte, 1<<20)
	go func() {
		// The echoes pile up towards a client that never reads.
		for range 64 {
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if c.WriteMessage(websocket.BinaryMessage, msg) != nil {
				return
			}
		}
	}()
	p.logs.wait(t, `"cause":"slow_consumer"`, 5*time.Second, `"close_code":1008`)
	if took := time.Since(start); took > 2*time.Second+500*time.Millisecond {
		t.Fatalf("slow consumer closed after %v, want within write_timeout + 1s (plus filling the buffers)", took)
	}
	grew := p.rss(t) - before
	deadline := time.Now().Add(3 * time.Second)
	for b.Conns() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("backend connection of the slow consumer still open")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if grew > 4<<20 {
		t.Errorf("proxy RSS grew by %d KiB while the consumer was stuck", grew>>10)
	}
}

// A backend's refusal reaches the client with its status and body.
func TestRefusalStatusesRelayed(t *testing.T) {
	for _, status := range []int{401, 403, 404} {
		b := upstreamtest.Start(t, upstreamtest.WithRefuse(status, fmt.Sprintf("refused with %d", status)))
		p := startWsedge(t, upstreams(b))
		_, res, err := p.wsDialer(*websocket.DefaultDialer).Dial(p.wsURL("/"), nil)
		if err == nil || res == nil {
			t.Fatalf("status %d: dial err %v, response %v", status, err, res)
		}
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != status || !strings.Contains(string(body), fmt.Sprintf("refused with %d", status)) {
			t.Errorf("got %d %q, want %d with the backend's body", res.StatusCode, body, status)
		}
	}
}

// Malformed input gets a clear status or close code, and a well-behaved
// client next to it does not notice.
func TestBadInputAnswered(t *testing.T) {
	b := upstreamtest.Start(t)
	p := startWsedge(t, upstreams(b))
	good, _ := wsDial(t, p, "/", nil)
	askName(t, good)

	httpCases := []struct {
		name, give string
		want       int
	}{
		{"garbage bytes", "\x00\x01\x02garbage\xff\r\n\r\n", 400},
		{"bad Sec-WebSocket-Key", "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: not-base64!\r\n\r\n", 400},
		{"wrong version", "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 7\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", 426},
	}
	for _, tt := range httpCases {
		conn, err := p.dialRaw(t.Context(), netip.Addr{})
		if err != nil {
			t.Fatal(err)
		}
		conn.Write([]byte(tt.give))
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		line := make([]byte, 12)
		io.ReadFull(conn, line)
		conn.Close()
		if want := fmt.Sprintf("HTTP/1.1 %d", tt.want); string(line) != want {
			t.Errorf("%s: answer %q, want %q", tt.name, line, want)
		}
	}

	frameCases := []struct {
		name string
		give []byte
		want int
	}{
		{"unmasked client frame", []byte{0x81, 0x03, 'a', 'b', 'c'}, 1002},
		{"frame declaring 2 GiB", []byte{0x82, 0xff, 0, 0, 0, 0, 0x80, 0, 0, 0, 9, 9, 9, 9}, 1009},
	}
	for _, tt := range frameCases {
		c, _ := wsDial(t, p, "/", nil)
		c.NetConn().Write(tt.give)
		if got := closeCodeOf(t, c, 5*time.Second); got != tt.want {
			t.Errorf("%s: close code %d, want %d", tt.name, got, tt.want)
		}
	}
	if askName(t, good) != b.Name {
		t.Fatal("the well-behaved client lost its backend")
	}
}

// The proxy pings; a client that answers stays, one that cannot is closed.
func TestHeartbeats(t *testing.T) {
	b := upstreamtest.Start(t)
	p := startWsedge(t, "[websocket]\nping_interval = \"200ms\"\npong_timeout = \"300ms\"\n"+upstreams(b))
	alive, _ := wsDial(t, p, "/", nil)
	pings := make(chan struct{}, 100)
	alive.SetPingHandler(func(data string) error {
		pings <- struct{}{}
		return alive.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	readErr := make(chan error, 1)
	go func() {
		for {
			if _, _, err := alive.ReadMessage(); err != nil {
				readErr <- err
				return
			}
		}
	}()
	mute, _ := wsDial(t, p, "/", nil) // never reads, so never answers a ping
	_ = mute
	p.logs.wait(t, `"cause":"pong_timeout"`, 3*time.Second)
	select {
	case err := <-readErr:
		t.Fatalf("the answering client was closed: %v", err)
	case <-time.After(time.Second):
	}
	if len(pings) < 3 {
		t.Fatalf("the answering client saw %d pings in over a second, want several", len(pings))
	}
	if b.Conns() != 1 {
		t.Fatalf("backend has %d connections, want only the answering client's", b.Conns())
	}
}

// SIGHUP applies a new config to new connections without touching live
// ones; removing a backend moves its clients with 1012; a broken file
// changes nothing. SIGTERM closes clients with 1001.
func TestReloadAndShutdown(t *testing.T) {
	b1 := upstreamtest.Start(t, upstreamtest.WithName("first"))
	b2 := upstreamtest.Start(t, upstreamtest.WithName("second"))
	cfg := "[affinity]\nkey = \"header\"\nheader = \"X-User\"\n"
	p := startWsedge(t, cfg+upstreams(b1))
	user := func(i int) http.Header { return http.Header{"X-User": {fmt.Sprintf("user-%d", i)}} }
	var live []*websocket.Conn
	for i := range 20 {
		c, _ := wsDial(t, p, "/", user(i))
		if askName(t, c) != "first" {
			t.Fatal("not on the only backend")
		}
		live = append(live, c)
	}

	// Add a backend: with on_add = "keep" nothing live moves, and new
	// clients reach it.
	writeConfig(t, p.cfgPath, cfg+upstreams(b1, b2))
	p.signal(t, syscall.SIGHUP)
	p.logs.wait(t, "config reloaded", 5*time.Second)
	for i, c := range live {
		if got := askName(t, c); got != "first" {
			t.Fatalf("live connection %d moved to %q by a reload", i, got)
		}
	}
	onSecond := 0
	for i := 100; i < 140; i++ {
		c, _ := wsDial(t, p, "/", user(i))
		if askName(t, c) == "second" {
			onSecond++
		}
		c.Close()
	}
	if onSecond == 0 {
		t.Fatal("no new client landed on the added backend")
	}

	// A broken file changes nothing and says why.
	writeConfig(t, p.cfgPath, cfg+"[websocket]\nping_interval = \"soon\"\n"+upstreams(b2))
	p.signal(t, syscall.SIGHUP)
	p.logs.wait(t, "config reload failed", 5*time.Second, "websocket.ping_interval")
	for i, c := range live {
		if got := askName(t, c); got != "first" {
			t.Fatalf("live connection %d on %q after a broken reload", i, got)
		}
	}

	// Remove the first backend: its clients are told to reconnect.
	writeConfig(t, p.cfgPath, cfg+upstreams(b2))
	p.signal(t, syscall.SIGHUP)
	for i, c := range live {
		if got := closeCodeOf(t, c, 5*time.Second); got != 1012 {
			t.Fatalf("connection %d of a removed backend closed with %d, want 1012", i, got)
		}
	}
	again, _ := wsDial(t, p, "/", user(0))
	if got := askName(t, again); got != "second" {
		t.Fatalf("reconnect landed on %q, want second", got)
	}

	p.signal(t, syscall.SIGTERM)
	if got := closeCodeOf(t, again, 5*time.Second); got != 1001 {
		t.Errorf("close code on shutdown %d, want 1001", got)
	}
	if code := p.waitExit(t, 10*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
}

// Connection ends are logged once each, with who, where, how long, how much
// and why.
func TestAccessLogLine(t *testing.T) {
	b := upstreamtest.Start(t)
	p := startWsedge(t, upstreams(b))
	c, _ := wsDial(t, p, "/", nil)
	askName(t, c)
	c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4000, "done"), time.Now().Add(time.Second))
	line := p.logs.wait(t, `"msg":"connection closed"`, 5*time.Second)
	for _, want := range []string{`"client":"127.0.0.1"`, `"backend":"` + b.Addr + `"`, `"duration"`, `"bytes_in"`, `"bytes_out"`, `"close_code":4000`} {
		if !strings.Contains(line, want) {
			t.Errorf("log line %s lacks %s", line, want)
		}
	}
}

// A reload that moves the listener opens the new address, closes the old
// one, and leaves live connections relaying.
func TestReloadMovesListener(t *testing.T) {
	b := upstreamtest.Start(t)
	first, second := freePort(t), freePort(t)
	path := filepath.Join(t.TempDir(), "proxy.toml")
	write := func(listen string) {
		writeServeConfig(t, path, fmt.Sprintf("listen = %q\nadmin_listen = \"127.0.0.1:0\"\n%s", listen, upstreams(b)))
	}
	write(first)
	p := runWsedge(t, "serve", "--config", path)
	p.listening(t, p.waitStarted(t))
	t.Cleanup(func() { p.stop(t) })
	live, _ := wsDial(t, p, "/", nil)
	askName(t, live)

	write(second)
	p.signal(t, syscall.SIGHUP)
	p.logs.wait(t, "config reloaded", 5*time.Second)
	if askName(t, live) != b.Name {
		t.Fatal("the live connection stopped relaying when the listener moved")
	}
	p.listen = second
	fresh, _ := wsDial(t, p, "/", nil)
	askName(t, fresh)
	if c, err := net.DialTimeout("tcp", first, time.Second); err == nil {
		c.Close()
		t.Fatalf("the old address %s still accepts connections", first)
	}
}
