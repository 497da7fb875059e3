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
