package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/wsedge/wsedge/upstream"
	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

// The rig of the package's tests: a Server on a loopback port in front of
// fake backends, built as a test's rig says (which driver, which
// listener), and the client-side helpers the tests share.

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

// closeCode reads until the connection ends and returns the close code the
// client got; -1 when the connection ended without a close frame.
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
