package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsedge/wsedge/upstream"
	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

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
