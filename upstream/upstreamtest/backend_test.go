package upstreamtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// wait bounds every blocking step of a test.
const wait = 5 * time.Second

// dial opens a gorilla client connection to path on b.
func dial(t *testing.T, b *Backend, path string, d websocket.Dialer) (*websocket.Conn, *http.Response) {
	t.Helper()
	d.HandshakeTimeout = wait
	c, resp, err := d.Dial("ws://"+b.Addr+path, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", b.Name, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, resp
}

// rawClient is a frame-level client, for what gorilla's client hides.
type rawClient struct {
	conn net.Conn
	r    io.Reader // bytes the handshake read ahead come first
	hs   ws.Handshake
}

func dialRaw(t *testing.T, b *Backend, d ws.Dialer) *rawClient {
	t.Helper()
	d.Timeout = wait
	conn, br, hs, err := d.Dial(t.Context(), "ws://"+b.Addr+"/")
	if err != nil {
		t.Fatalf("dial %s: %v", b.Name, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := &rawClient{conn: conn, r: conn, hs: hs}
	if br != nil {
		c.r = br
	}
	return c
}

// send writes f masked, as a client must (RFC 6455 5.3).
func (c *rawClient) send(t *testing.T, f ws.Frame) {
	t.Helper()
	if err := ws.WriteFrame(c.conn, ws.MaskFrame(f)); err != nil {
		t.Fatalf("write frame: %v", err)
	}
}

func (c *rawClient) read(t *testing.T) ws.Frame {
	t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(wait))
	f, err := ws.ReadFrame(c.r)
	if err != nil {
		t.Fatalf("read frame: %v", err)
	}
	return f
}

// httpClient returns a client whose connections end with the test.
func httpClient(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: wait}
}

func waitConns(t *testing.T, b *Backend, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if err := b.WaitConns(ctx, n); err != nil {
		t.Fatal(err)
	}
}

func TestEcho(t *testing.T) {
	big := randomBytes(16 << 20)
	tests := []struct {
		name     string
		giveOp   int
		give     []byte
		wantEcho []byte
	}{
		{"text", websocket.TextMessage, []byte("hello"), []byte("hello")},
		{"binary", websocket.BinaryMessage, []byte{0, 1, 0xff}, []byte{0, 1, 0xff}},
		{"empty", websocket.TextMessage, []byte{}, []byte{}},
		{"whoami", websocket.TextMessage, []byte("whoami"), []byte("b1")},
		{"whoami as binary is echoed", websocket.BinaryMessage, []byte("whoami"), []byte("whoami")},
		{"whoami with more is echoed", websocket.TextMessage, []byte("whoami?"), []byte("whoami?")},
		{"longer than a write buffer", websocket.TextMessage, bytes.Repeat([]byte("é"), 50_000), bytes.Repeat([]byte("é"), 50_000)},
		{"16 MiB", websocket.BinaryMessage, big, big},
	}
	b := Start(t, WithName("b1"))
	c, resp := dial(t, b, "/", websocket.Dialer{})
	if got := resp.Header.Get("X-Backend"); got != "b1" {
		t.Errorf("101 X-Backend = %q, want b1", got)
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Write while reading: a large echo comes back before the
			// message has been sent in full.
			errc := make(chan error, 1)
			go func() { errc <- c.WriteMessage(tt.giveOp, tt.give) }()
			op, got, err := c.ReadMessage()
			if werr := <-errc; werr != nil {
				t.Fatalf("write: %v", werr)
			}
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if op != tt.giveOp || !bytes.Equal(got, tt.wantEcho) {
				t.Errorf("echo = op %d, %d bytes %.20q; want op %d, %d bytes %.20q",
					op, len(got), got, tt.giveOp, len(tt.wantEcho), tt.wantEcho)
			}
			if got, want := b.Messages(), int64(i+1); got != want {
				t.Errorf("Messages() = %d, want %d", got, want)
			}
		})
	}
	if b.Accepted() != 1 || b.Conns() != 1 {
		t.Errorf("Accepted() = %d, Conns() = %d; want 1, 1", b.Accepted(), b.Conns())
	}
}

func TestFragmentsAndPing(t *testing.T) {
	tests := []struct {
		name  string
		give  []ws.Frame // sent in order, each masked
		want  string     // the echoed message
		wantP string     // payload of the pong, "" when no ping was sent
	}{
		{
			name: "three fragments",
			give: []ws.Frame{
				ws.NewFrame(ws.OpText, false, []byte("frag")),
				ws.NewFrame(ws.OpContinuation, false, []byte("men")),
				ws.NewFrame(ws.OpContinuation, true, []byte("ted")),
			},
			want: "fragmented",
		},
		{
			name: "ping between fragments",
			give: []ws.Frame{
				ws.NewFrame(ws.OpBinary, false, []byte("who")),
				ws.NewPingFrame([]byte("are you there")),
				ws.NewFrame(ws.OpContinuation, true, []byte("ami")),
			},
			want:  "whoami", // binary: echoed, not answered
			wantP: "are you there",
		},
		{
			name: "whoami in fragments",
			give: []ws.Frame{
				ws.NewFrame(ws.OpText, false, []byte("who")),
				ws.NewFrame(ws.OpContinuation, true, []byte("ami")),
			},
			want: "b1",
		},
	}
	b := Start(t, WithName("b1"))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, b, ws.Dialer{})
			for _, f := range tt.give {
				c.send(t, f)
			}
			var msg []byte
			var pong string
			for fin := false; !fin; { // bounded by the read deadline
				f := c.read(t)
				switch f.Header.OpCode {
				case ws.OpPong:
					pong = string(f.Payload)
				case ws.OpText, ws.OpBinary, ws.OpContinuation:
					msg = append(msg, f.Payload...)
					fin = f.Header.Fin
				default:
					t.Fatalf("unexpected frame %v", f.Header.OpCode)
				}
			}
			if string(msg) != tt.want {
				t.Errorf("echo = %q, want %q", msg, tt.want)
			}
			if pong != tt.wantP {
				t.Errorf("pong = %q, want %q", pong, tt.wantP)
			}
		})
	}
}

func TestCloseIsEchoed(t *testing.T) {
	b := Start(t)
	c := dialRaw(t, b, ws.Dialer{})
	c.send(t, ws.NewCloseFrame(ws.NewCloseFrameBody(4000, "bye")))
	f := c.read(t)
	if code, _ := ws.ParseCloseFrameData(f.Payload); f.Header.OpCode != ws.OpClose || code != 4000 {
		t.Fatalf("got %v with code %d, want a close with 4000", f.Header.OpCode, code)
	}
	if _, err := c.r.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("read after close = %v, want EOF: the backend closes TCP", err)
	}
	waitConns(t, b, 0)
}

func TestSubprotocol(t *testing.T) {
	tests := []struct {
		name  string
		opts  []Option
		offer []string
		want  string
	}{
		{"client's first choice wins", []Option{WithSubprotocols("v1", "v2")}, []string{"v2", "v1"}, "v2"},
		{"first supported", []Option{WithSubprotocols("v1", "v2")}, []string{"v3", "v1"}, "v1"},
		{"none supported", []Option{WithSubprotocols("v1")}, []string{"v3"}, ""},
		{"server has none", nil, []string{"v1"}, ""},
		{"client offers none", []Option{WithSubprotocols("v1")}, nil, ""},
		{"forced by header", []Option{WithResponseHeader("Sec-WebSocket-Protocol", "rogue")}, []string{"v1"}, "rogue"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := Start(t, tt.opts...)
			c, _ := dial(t, b, "/", websocket.Dialer{Subprotocols: tt.offer})
			if got := c.Subprotocol(); got != tt.want {
				t.Errorf("subprotocol = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCompression(t *testing.T) {
	msg := bytes.Repeat([]byte("compressible "), 4000)
	t.Run("round trip", func(t *testing.T) {
		b := Start(t, WithCompression())
		// gorilla's client compresses what it sends, so this also checks
		// that the backend decompresses.
		c, resp := dial(t, b, "/", websocket.Dialer{EnableCompression: true})
		if ext := resp.Header.Get("Sec-WebSocket-Extensions"); !strings.HasPrefix(ext, "permessage-deflate") {
			t.Fatalf("extensions = %q, want permessage-deflate", ext)
		}
		if err := c.WriteMessage(websocket.TextMessage, msg); err != nil {
			t.Fatal(err)
		}
		if _, got, err := c.ReadMessage(); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("echo = %d bytes, %v; want %d bytes", len(got), err, len(msg))
		}
	})
	t.Run("frames really compressed", func(t *testing.T) {
		b := Start(t, WithCompression())
		c := dialRaw(t, b, ws.Dialer{Extensions: []httphead.Option{wsflate.DefaultParameters.Option()}})
		if len(c.hs.Extensions) != 1 {
			t.Fatalf("extensions = %v, want permessage-deflate", c.hs.Extensions)
		}
		c.send(t, ws.NewTextFrame(msg)) // uncompressed: RSV1 clear
		f := c.read(t)
		if !f.Header.Rsv1() || !f.Header.Fin || len(f.Payload) >= len(msg)/10 {
			t.Fatalf("echo frame rsv1=%v fin=%v %d bytes; want one compressed frame, far under %d",
				f.Header.Rsv1(), f.Header.Fin, len(f.Payload), len(msg))
		}
		d, err := wsflate.DecompressFrame(f)
		if err != nil || !bytes.Equal(d.Payload, msg) {
			t.Fatalf("decompressed = %d bytes, %v; want the %d sent", len(d.Payload), err, len(msg))
		}
	})
	t.Run("off by default", func(t *testing.T) {
		b := Start(t)
		_, resp := dial(t, b, "/", websocket.Dialer{EnableCompression: true})
		if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
			t.Errorf("extensions = %q, want none", ext)
		}
	})
}

func TestRefuse(t *testing.T) {
	b := Start(t, WithName("b1"), WithRefuse(http.StatusServiceUnavailable, "busy"))
	d := websocket.Dialer{HandshakeTimeout: wait}
	_, resp, err := d.Dial("ws://"+b.Addr+"/", nil)
	if !errors.Is(err, websocket.ErrBadHandshake) || resp == nil {
		t.Fatalf("dial = %v, want a bad handshake", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || string(body) != "busy" || resp.Header.Get("X-Backend") != "b1" {
		t.Errorf("refusal = %d %q X-Backend %q; want 503 \"busy\" b1", resp.StatusCode, body, resp.Header.Get("X-Backend"))
	}
	if len(b.Handshakes()) != 1 || b.Accepted() != 0 || b.Conns() != 0 {
		t.Errorf("Handshakes %d, Accepted %d, Conns %d; want 1, 0, 0", len(b.Handshakes()), b.Accepted(), b.Conns())
	}
	resp, err = httpClient(t).Get(b.URL())
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("plain GET = %d, want 200", resp.StatusCode)
	}
}

func TestHandshakeDelay(t *testing.T) {
	const delay = 300 * time.Millisecond
	b := Start(t, WithHandshakeDelay(delay))
	// A client that gives up first, as a proxy with a short
	// handshake_timeout does.
	impatient := websocket.Dialer{HandshakeTimeout: delay / 3}
	if _, _, err := impatient.Dial("ws://"+b.Addr+"/", nil); err == nil {
		t.Fatal("dial with a timeout shorter than the delay succeeded")
	}
	start := time.Now()
	dial(t, b, "/", websocket.Dialer{})
	if took := time.Since(start); took < delay {
		t.Errorf("handshake took %v, want at least %v", took, delay)
	}
}

func TestNeverRead(t *testing.T) {
	b := Start(t, WithNeverRead())
	c, _ := dial(t, b, "/", websocket.Dialer{})
	chunk := make([]byte, 64<<10)
	var sent int
	var err error
	for range 1024 { // 64 MiB: far beyond what loopback buffers hold
		_ = c.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
		if err = c.WriteMessage(websocket.BinaryMessage, chunk); err != nil {
			break
		}
		sent += len(chunk)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("after %d bytes, write error = %v; want a timeout once the window is full", sent, err)
	}
	t.Logf("writes blocked after %d KiB", sent>>10)
	if b.Messages() != 0 {
		t.Errorf("Messages() = %d, want 0", b.Messages())
	}
}

func TestSilent(t *testing.T) {
	b := Start(t, WithSilent())
	c := dialRaw(t, b, ws.Dialer{})
	c.send(t, ws.NewTextFrame([]byte("whoami")))
	c.send(t, ws.NewPingFrame([]byte("ping")))
	c.send(t, ws.NewFrame(0x3, true, []byte("reserved opcode"))) // a protocol error, unanswered too
	c.send(t, ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "")))
	_ = c.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	n, err := c.r.Read(make([]byte, 1))
	var ne net.Error
	if n != 0 || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read = %d bytes, %v; want nothing until the deadline", n, err)
	}
	_ = c.conn.Close()
	waitConns(t, b, 0)
	if b.Messages() != 1 {
		t.Errorf("Messages() = %d, want 1", b.Messages())
	}
}

func TestKill(t *testing.T) {
	b := Start(t, WithName("b1"))
	c := dialRaw(t, b, ws.Dialer{})
	resp, err := httpClient(t).Get(b.URL() + "/sse?count=100")
	if err != nil {
		t.Fatal(err)
	}
	events := bufio.NewReader(resp.Body)
	if _, err := events.ReadString('\n'); err != nil {
		t.Fatal(err)
	}

	b.Kill()

	_ = c.conn.SetReadDeadline(time.Now().Add(wait))
	if n, err := c.r.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("WebSocket read after Kill = %d bytes, %v; want a reset, no close frame", n, err)
	}
	if _, err := io.ReadAll(events); err == nil {
		t.Error("SSE stream ended cleanly after Kill; want an error")
	}
	if _, err := net.DialTimeout("tcp", b.Addr, wait); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial after Kill = %v, want connection refused", err)
	}
	if b.Conns() != 0 {
		t.Errorf("Conns() = %d after Kill, want 0", b.Conns())
	}

	// Restarting on the same address is how a test brings a backend back.
	again := Start(t, WithAddr(b.Addr), WithName("b1"))
	c2, _ := dial(t, again, "/", websocket.Dialer{})
	if err := c2.WriteMessage(websocket.TextMessage, []byte("whoami")); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c2.ReadMessage(); err != nil || string(got) != "b1" {
		t.Errorf("whoami after restart = %q, %v", got, err)
	}
}

func TestCloseAll(t *testing.T) {
	b := Start(t)
	clients := make([]*websocket.Conn, 3)
	for i := range clients {
		clients[i], _ = dial(t, b, "/", websocket.Dialer{})
	}
	b.CloseAll(ws.StatusGoingAway, "going away")
	for i, c := range clients {
		_ = c.SetReadDeadline(time.Now().Add(wait))
		_, _, err := c.ReadMessage() // answers the close, as gorilla does
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != 1001 || ce.Text != "going away" {
			t.Errorf("client %d: read = %v, want close 1001 \"going away\"", i, err)
		}
	}
	waitConns(t, b, 0)
	if b.Accepted() != len(clients) {
		t.Errorf("Accepted() = %d, want %d", b.Accepted(), len(clients))
	}
}

func TestCutReason(t *testing.T) {
	tests := []struct {
		give string
		want int // length in bytes
	}{
		{"short", 5},
		{strings.Repeat("a", 200), 123},
		{strings.Repeat("é", 100), 122}, // 2-byte runes: 123 would split one
	}
	for _, tt := range tests {
		if got := cutReason(tt.give); len(got) != tt.want || !strings.HasPrefix(tt.give, got) {
			t.Errorf("cutReason(%.10q...) = %d bytes, want %d", tt.give, len(got), tt.want)
		}
	}
}

func TestHandshakesRecorded(t *testing.T) {
	b := Start(t)
	h := http.Header{"X-Forwarded-For": {"203.0.113.7"}, "Cookie": {"wsedge_route=abc"}}
	d := websocket.Dialer{HandshakeTimeout: wait}
	c, _, err := d.Dial("ws://"+b.Addr+"/chat?room=1", h)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// A malformed upgrade is recorded too, and answered by the upgrader.
	req, _ := http.NewRequest(http.MethodPost, b.URL()+"/bad", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	resp, err := httpClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST upgrade = %d, want 405", resp.StatusCode)
	}

	got := b.Handshakes()
	if len(got) != 2 {
		t.Fatalf("Handshakes() has %d, want 2", len(got))
	}
	first := got[0]
	if first.Method != http.MethodGet || first.Path != "/chat?room=1" || first.Host != b.Addr ||
		first.RemoteAddr != c.LocalAddr().String() ||
		first.Header.Get("X-Forwarded-For") != "203.0.113.7" || first.Header.Get("Cookie") != "wsedge_route=abc" {
		t.Errorf("first handshake = %+v", first)
	}
	if got[1].Method != http.MethodPost || got[1].Path != "/bad" {
		t.Errorf("second handshake = %s %s, want POST /bad", got[1].Method, got[1].Path)
	}
	first.Header.Set("Cookie", "changed")
	if b.Handshakes()[0].Header.Get("Cookie") != "wsedge_route=abc" {
		t.Error("changing a returned handshake changed the record")
	}
	if b.Accepted() != 1 || len(b.Requests()) != 0 {
		t.Errorf("Accepted %d, Requests %d; want 1, 0", b.Accepted(), len(b.Requests()))
	}
}

func TestHTTP(t *testing.T) {
	tests := []struct {
		name       string
		givePath   string
		wantStatus int
		wantBody   string
	}{
		{"any path", "/anything?x=1", http.StatusOK, "b1"},
		{"health", "/healthz", http.StatusOK, "b1"},
		{"status", "/status/503", http.StatusServiceUnavailable, "Service Unavailable"},
		{"bad status", "/status/abc", http.StatusBadRequest, "status must be 200-599\n"},
		{"slow", "/slow?delay=100ms", http.StatusOK, "b1"},
		{"bad delay", "/slow?delay=soon", http.StatusBadRequest, "delay must be a duration >= 0\n"},
		{"sse", "/sse?count=2", http.StatusOK, "data: 1\n\ndata: 2\n\n"},
		{"bad count", "/sse?count=-1", http.StatusBadRequest, "count must be a number >= 0\n"},
	}
	b := Start(t, WithName("b1"), WithResponseHeader("Set-Cookie", "route=b1"))
	client := httpClient(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, b.URL()+tt.givePath, nil)
			req.Header.Set("X-Forwarded-For", "203.0.113.7, 10.0.0.1")
			req.Header.Set("X-Real-IP", "203.0.113.7")
			req.Header.Set("X-Forwarded-Proto", "https")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != tt.wantStatus || string(body) != tt.wantBody {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
			wantHeader := map[string]string{
				"X-Backend":              "b1",
				"Set-Cookie":             "route=b1",
				"X-Seen-Forwarded-For":   "203.0.113.7, 10.0.0.1",
				"X-Seen-Real-IP":         "203.0.113.7",
				"X-Seen-Forwarded-Proto": "https",
			}
			for k, want := range wantHeader {
				if got := resp.Header.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			reqs := b.Requests()
			if len(reqs) != i+1 || reqs[i].Path != tt.givePath {
				t.Errorf("Requests() = %d, last %+v; want %d, last %s", len(reqs), reqs[len(reqs)-1], i+1, tt.givePath)
			}
		})
	}
	_, resp := dial(t, b, "/", websocket.Dialer{})
	if got := resp.Header.Get("Set-Cookie"); got != "route=b1" {
		t.Errorf("101 Set-Cookie = %q, want route=b1", got)
	}
}

func TestSSEFlushesEachEvent(t *testing.T) {
	b := Start(t)
	resp, err := httpClient(t).Get(b.URL() + "/sse?count=4")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type = %q", ct)
	}
	r := bufio.NewReader(resp.Body)
	var at []time.Time
	for i := 1; i <= 4; i++ {
		line, err := r.ReadString('\n')
		if err != nil || line != "data: "+string(rune('0'+i))+"\n" {
			t.Fatalf("event %d = %q, %v", i, line, err)
		}
		at = append(at, time.Now())
		if _, err := r.ReadString('\n'); err != nil { // the blank line ending the event
			t.Fatal(err)
		}
	}
	// Three 50ms gaps; buffered events would arrive together.
	if spread := at[3].Sub(at[0]); spread < 100*time.Millisecond {
		t.Errorf("events arrived within %v, want them spaced by about 50ms", spread)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Errorf("after the last event: %v, want EOF", err)
	}
}

func TestEchoStreams(t *testing.T) {
	b := Start(t)
	pr, pw := io.Pipe()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, b.URL()+"/echo", pr)
	errc := make(chan error, 1)
	respc := make(chan *http.Response, 1)
	go func() {
		resp, err := httpClient(t).Do(req)
		respc <- resp
		errc <- err
	}()
	// The first chunk must come back while the body is still open.
	if _, err := pw.Write([]byte("chunk-1")); err != nil {
		t.Fatal(err)
	}
	resp := <-respc
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	for _, chunk := range []string{"chunk-1", "chunk-2"} {
		if chunk != "chunk-1" {
			if _, err := pw.Write([]byte(chunk)); err != nil {
				t.Fatal(err)
			}
		}
		got := make([]byte, len(chunk))
		if _, err := io.ReadFull(resp.Body, got); err != nil || string(got) != chunk {
			t.Fatalf("echo = %q, %v; want %q", got, err, chunk)
		}
	}
	_ = pw.Close()
	if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
		t.Errorf("after the body ended: %q, %v; want a clean end", rest, err)
	}
}

func TestEchoLargeBody(t *testing.T) {
	b := Start(t)
	body := randomBytes(4 << 20)
	resp, err := httpClient(t).Post(b.URL()+"/echo", "application/x-test", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(got, body) || resp.Header.Get("Content-Type") != "application/x-test" {
		t.Errorf("echo = %d bytes (%v), Content-Type %q; want the %d bytes sent",
			len(got), err, resp.Header.Get("Content-Type"), len(body))
	}
}

func TestCloseEndsEverything(t *testing.T) {
	tests := []struct {
		name  string
		opts  []Option
		start func(t *testing.T, b *Backend) <-chan error // returns when the client's work ends
	}{
		{"echo connection", nil, func(t *testing.T, b *Backend) <-chan error {
			c, _ := dial(t, b, "/", websocket.Dialer{})
			return goErr(func() error { _, _, err := c.ReadMessage(); return err })
		}},
		{"never-read connection", []Option{WithNeverRead()}, func(t *testing.T, b *Backend) <-chan error {
			c, _ := dial(t, b, "/", websocket.Dialer{})
			return goErr(func() error { _, _, err := c.ReadMessage(); return err })
		}},
		{"silent connection", []Option{WithSilent()}, func(t *testing.T, b *Backend) <-chan error {
			c, _ := dial(t, b, "/", websocket.Dialer{})
			return goErr(func() error { _, _, err := c.ReadMessage(); return err })
		}},
		{"delayed handshake", []Option{WithHandshakeDelay(time.Hour)}, func(t *testing.T, b *Backend) <-chan error {
			errc := goErr(func() error {
				d := websocket.Dialer{HandshakeTimeout: wait}
				c, _, err := d.Dial("ws://"+b.Addr+"/", nil)
				if err == nil {
					_ = c.Close()
				}
				return err
			})
			eventually(t, func() bool { return len(b.Handshakes()) == 1 })
			return errc
		}},
		{"slow request", nil, func(t *testing.T, b *Backend) <-chan error {
			client := httpClient(t)
			errc := goErr(func() error {
				resp, err := client.Get(b.URL() + "/slow?delay=1h")
				if err == nil {
					_ = resp.Body.Close()
				}
				return err
			})
			eventually(t, func() bool { return len(b.Requests()) == 1 })
			return errc
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := New(tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			errc := tt.start(t, b)
			start := time.Now()
			b.Close()
			if took := time.Since(start); took > time.Second {
				t.Errorf("Close took %v", took)
			}
			select {
			case err := <-errc:
				if err == nil {
					t.Error("client's work succeeded after Close; want it cut off")
				}
			case <-time.After(wait):
				t.Fatal("client still blocked after Close")
			}
			if b.Conns() != 0 {
				t.Errorf("Conns() = %d after Close", b.Conns())
			}
			b.Close() // a second Close is harmless
		})
	}
}

func TestNewRejectsBadRefusal(t *testing.T) {
	for _, status := range []int{0, http.StatusSwitchingProtocols, 600} {
		if b, err := New(WithRefuse(status, "")); err == nil {
			b.Close()
			t.Errorf("New(WithRefuse(%d)) succeeded, want an error", status)
		}
	}
}

func TestDefaultName(t *testing.T) {
	b := Start(t)
	_, port, _ := net.SplitHostPort(b.Addr)
	if b.Name != "backend-"+port || b.URL() != "http://127.0.0.1:"+port {
		t.Errorf("Name %q, URL %q; want backend-%s, http://127.0.0.1:%s", b.Name, b.URL(), port, port)
	}
}

func TestWaitConnsGivesUp(t *testing.T) {
	b := Start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := b.WaitConns(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitConns = %v, want deadline exceeded", err)
	}
}

// randomBytes returns n bytes no compressor or lucky offset can fake.
func randomBytes(n int) []byte {
	p := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(p)
	return p
}

func goErr(f func() error) <-chan error {
	errc := make(chan error, 1)
	go func() { errc <- f() }()
	return errc
}

// eventually waits, boundedly, for cond.
func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(wait); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
	}
}
