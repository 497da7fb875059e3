package main

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// lenientBackend records every request head it gets, read the way many
// app servers read them: a bare LF ends a line, a CR before it is dropped,
// a line starting with white space continues the one before. Such a
// backend believes whatever header lines reach it, so it shows what a
// client could make a backend believe through the proxy.
type lenientBackend struct {
	addr string
	mu   sync.Mutex
	seen map[string][]http.Header // by request path
}

func startLenientBackend(t *testing.T) *lenientBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &lenientBackend{addr: ln.Addr().String(), seen: map[string][]http.Header{}}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { b.serve(c) })
		}
	})
	return b
}

func (b *lenientBackend) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for {
		path, h, err := readLenient(br)
		if err != nil {
			return
		}
		b.mu.Lock()
		b.seen[path] = append(b.seen[path], h)
		b.mu.Unlock()
		if key := h.Get("Sec-Websocket-Key"); key != "" {
			sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
			fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
				base64.StdEncoding.EncodeToString(sum[:]))
			io.Copy(io.Discard, br)
			return
		}
		if n := h.Get("Content-Length"); n != "" {
			var k int64
			fmt.Sscan(n, &k)
			io.CopyN(io.Discard, br, k)
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	}
}

// readLenient reads one request head the lenient way.
func readLenient(br *bufio.Reader) (string, http.Header, error) {
	first, err := br.ReadString('\n')
	if err != nil {
		return "", nil, err
	}
	parts := strings.Fields(first)
	if len(parts) < 2 {
		return "", nil, fmt.Errorf("bad request line %q", first)
	}
	h := http.Header{}
	last := ""
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return "", nil, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return parts[1], h, nil
		}
		if (line[0] == ' ' || line[0] == '\t') && last != "" {
			vs := h[last]
			vs[len(vs)-1] += " " + strings.TrimSpace(line)
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		last = http.CanonicalHeaderKey(strings.TrimSpace(name))
		h[last] = append(h[last], strings.TrimSpace(value))
	}
}

func (b *lenientBackend) heads(path string) []http.Header {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seen[path]
}

// Every request head is read by one set of rules, whichever way it comes
// in: on the event loops (WebSocket upgrades), on the HTTP path (plain
// requests, the first on a connection and one kept alive after it), and
// through a PROXY protocol listener. A head that smuggles a line past a
// lenient backend is refused and reaches no backend; forwarding headers a
// client sends, in any spelling, never reach one; the backend sees only
// the proxy's own.
func TestRequestHeadRules(t *testing.T) {
	b := startLenientBackend(t)
	cfg := "[health]\ntype = \"tcp\"\n[affinity]\ntrusted_proxies = [\"127.0.0.1/32\"]\n[[upstream]]\naddress = \"" + b.addr + "\"\n"
	plain := startWsedge(t, cfg)
	behindBalancer := startWsedge(t, "proxy_protocol = true\n"+cfg)

	refused := []struct{ name, lines string }{
		{"bare LF smuggles X-Forwarded-For", "X-A: b\nX-Forwarded-For: 6.6.6.6\r\n"},
		{"bare CR smuggles X-Forwarded-For", "X-A: b\rX-Forwarded-For: 6.6.6.6\r\n"},
		{"NUL in a value", "X-A: b\x00X-Forwarded-For: 6.6.6.6\r\n"},
		{"obs-fold", "X-A: b\r\n X-Forwarded-For: 6.6.6.6\r\n"},
		{"space before the colon", "X-Forwarded-For : 6.6.6.6\r\n"},
		{"name not a token", "X-Forwarded-For(x): 6.6.6.6\r\n"},
		{"second Host", "Host: evil.example\r\n"},
		{"Content-Length not a number", "Content-Length: 0x10\r\n"},
		{"Content-Length and Transfer-Encoding", "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n"},
	}
	stripped := []struct{ name, lines string }{
		{"X-Forwarded-For", "X-Forwarded-For: 6.6.6.6\r\n"},
		{"x-forwarded-for", "x-forwarded-for: 6.6.6.6\r\n"},
		{"X_Forwarded_For", "X_Forwarded_For: 6.6.6.6\r\n"},
		{"X-Real-IP", "X-Real-IP: 6.6.6.6\r\n"},
		{"X_Real_Ip", "X_Real_Ip: 6.6.6.6\r\n"},
		{"Forwarded", "Forwarded: for=6.6.6.6\r\n"},
		{"X-Forwarded-Host", "X-Forwarded-Host: 6.6.6.6\r\n"},
		{"X-Forwarded-Proto", "X-Forwarded-Proto: 6.6.6.6\r\n"},
		{"X_Forwarded_Proto", "X_forwarded_proto: 6.6.6.6\r\n"},
	}
	paths := []struct {
		name string
		p    *proc
		ask  func(t *testing.T, p *proc, path, lines string) (status int, answered bool)
	}{
		{"upgrade on the event loops", plain, askUpgrade},
		{"plain request", plain, askPlain},
		{"request kept alive", plain, askKeptAlive},
		{"upgrade through the PROXY protocol listener", behindBalancer, askUpgrade},
		{"plain request through the PROXY protocol listener", behindBalancer, askPlain},
		{"request kept alive through the PROXY protocol listener", behindBalancer, askKeptAlive},
	}
	n := 0
	for _, path := range paths {
		for _, tt := range refused {
			n++
			target := fmt.Sprintf("/refused-%d", n)
			t.Run(path.name+"/"+tt.name, func(t *testing.T) {
				status, answered := path.ask(t, path.p, target, tt.lines)
				if answered && status != http.StatusBadRequest && status != http.StatusNotImplemented {
					t.Errorf("answered %d, want 400 (or 501)", status)
				}
				if !strings.Contains(path.name, "kept alive") && !answered {
					t.Error("no answer: the first request of a connection is told why it is refused")
				}
				if got := b.heads(target); len(got) > 0 {
					t.Errorf("the refused request reached the backend: %v", got[0])
				}
			})
		}
		for _, tt := range stripped {
			n++
			target := fmt.Sprintf("/stripped-%d", n)
			t.Run(path.name+"/"+tt.name, func(t *testing.T) {
				status, _ := path.ask(t, path.p, target, tt.lines)
				if status != http.StatusSwitchingProtocols && status != http.StatusOK {
					t.Fatalf("answered %d", status)
				}
				got := b.heads(target)
				if len(got) != 1 {
					t.Fatalf("backend got %d requests, want 1", len(got))
				}
				if xff := got[0].Get("X-Forwarded-For"); e2e.proxyHeader && namesBalancer(xff) {
					t.Errorf("backend saw X-Forwarded-For %q: the balancer, not the client its PROXY header named", xff)
				}
				for k, vs := range got[0] {
					for _, v := range vs {
						if strings.Contains(v, "6.6.6.6") {
							t.Errorf("backend believes %s: %s", k, v)
						}
					}
				}
				h := got[0]
				if h.Get("X-Forwarded-For") != "127.0.0.9" || h.Get("X-Real-Ip") != "127.0.0.9" || h.Get("X-Forwarded-Proto") != path.p.scheme() {
					t.Errorf("backend saw X-Forwarded-For %q, X-Real-IP %q, X-Forwarded-Proto %q; want the proxy's own",
						h.Get("X-Forwarded-For"), h.Get("X-Real-Ip"), h.Get("X-Forwarded-Proto"))
				}
			})
		}
	}
}

// dialFrom connects to p as the client 127.0.0.9, whom the proxies above
// do not trust.
func dialFrom(t *testing.T, p *proc) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c, err := p.dialRaw(ctx, netip.MustParseAddr("127.0.0.9"))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

// askUpgrade sends a WebSocket upgrade for path carrying lines, and
// returns the answer's status; answered is false when the connection
// ended without one.
func askUpgrade(t *testing.T, p *proc, path, lines string) (int, bool) {
	c := dialFrom(t, p)
	defer c.Close()
	io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: wsedge.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"+lines+"\r\n")
	return statusOf(bufio.NewReader(c))
}

// askPlain sends a plain GET for path carrying lines.
func askPlain(t *testing.T, p *proc, path, lines string) (int, bool) {
	c := dialFrom(t, p)
	defer c.Close()
	io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: wsedge.test\r\n"+lines+"\r\n")
	return statusOf(bufio.NewReader(c))
}

// askKeptAlive sends a good request, then, on the same connection once it
// is answered, a GET for path carrying lines: the HTTP server reads this
// second head.
func askKeptAlive(t *testing.T, p *proc, path, lines string) (int, bool) {
	c := dialFrom(t, p)
	defer c.Close()
	br := bufio.NewReader(c)
	io.WriteString(c, "GET /warm HTTP/1.1\r\nHost: wsedge.test\r\n\r\n")
	if status, _ := statusOf(br); status != http.StatusOK {
		t.Fatalf("first request answered %d", status)
	}
	io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: wsedge.test\r\n"+lines+"\r\n")
	return statusOf(br)
}

// statusOf reads an answer's status code, and its body when it has one.
func statusOf(br *bufio.Reader) (int, bool) {
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, false
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		io.Copy(io.Discard, res.Body)
	}
	res.Body.Close()
	return res.StatusCode, true
}

// A request hidden in a body, where a front end that goes by
// Content-Length saw body bytes and the proxy would go by
// Transfer-Encoding, never reaches a backend: the smuggling request is
// refused and its connection closed, on every path.
func TestSmuggledRequestNeverReachesBackend(t *testing.T) {
	b := startLenientBackend(t)
	p := startWsedge(t, "[health]\ntype = \"tcp\"\n[[upstream]]\naddress = \""+b.addr+"\"\n")
	hidden := "GET /hidden HTTP/1.1\r\nHost: wsedge.test\r\n\r\n"
	smuggle := fmt.Sprintf("POST /front HTTP/1.1\r\nHost: wsedge.test\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n%s",
		5+len(hidden), hidden)
	for _, first := range []string{"", "GET /warm HTTP/1.1\r\nHost: wsedge.test\r\n\r\n"} {
		c := dialFrom(t, p)
		io.WriteString(c, first+smuggle)
		br := bufio.NewReader(c)
		var statuses []int
		for {
			status, ok := statusOf(br)
			if !ok {
				break
			}
			statuses = append(statuses, status)
		}
		c.Close()
		if first == "" && (len(statuses) != 1 || statuses[0] != http.StatusBadRequest) {
			t.Errorf("smuggling request answered %v, want one 400 and the connection closed", statuses)
		}
		if first != "" && (len(statuses) != 1 || statuses[0] != http.StatusOK) {
			t.Errorf("after a good request the smuggling one got %v, want the good one's 200 and the connection closed", statuses)
		}
	}
	if got := b.heads("/hidden"); len(got) > 0 {
		t.Errorf("the hidden request reached the backend %d times", len(got))
	}
	if got := b.heads("/front"); len(got) > 0 {
		t.Errorf("the smuggling request reached the backend %d times", len(got))
	}
}
