package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pires/go-proxyproto"

	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

// idleClients holds n WebSockets open through p, each dialed by dial, and
// returns how many goroutines and how much heap the proxy gained for them.
func idleClients(t *testing.T, p *proc, n int, dial func() (*websocket.Conn, error)) (goroutines, heapPerConn float64) {
	t.Helper()
	before := scrape(t, p)
	var conns []*websocket.Conn
	for i := range n {
		c, err := dial()
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	askName(t, conns[0])
	askName(t, conns[n-1])
	after := scrape(t, p)
	goroutines = gaugeValue(t, after, "go_goroutines") - gaugeValue(t, before, "go_goroutines")
	heap := gaugeValue(t, after, "go_memstats_heap_inuse_bytes") - gaugeValue(t, before, "go_memstats_heap_inuse_bytes")
	return goroutines, heap / float64(n)
}

// A wss:// client is served by the event loops like a plain one: holding
// hundreds of them costs the proxy no goroutine each and a few KiB of TLS
// state, where a goroutine per direction and a read buffer cost tens. The
// handshake offers http/1.1 by ALPN, and a client with a session ticket
// resumes.
func TestTLSClientsOnTheLoops(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca := newTestCA(t)
	ca.issue(t, 1, certPath, keyPath)
	b := upstreamtest.Start(t)
	p := startWsedge(t, fmt.Sprintf("[websocket]\nping_interval = \"0s\"\n[tls]\ncert = %q\nkey = %q\n%s", certPath, keyPath, upstreams(b)))

	sessions := tls.NewLRUClientSessionCache(8)
	cfg := &tls.Config{RootCAs: ca.pool, ClientSessionCache: sessions, NextProtos: []string{"http/1.1"}}
	d := p.wsDialer(websocket.Dialer{HandshakeTimeout: 5 * time.Second, TLSClientConfig: cfg})
	const n = 300
	goroutines, heap := idleClients(t, p, n, func() (*websocket.Conn, error) {
		c, _, err := d.Dial("wss://"+p.listen+"/", nil)
		return c, err
	})
	t.Logf("%d idle wss clients: %+.0f goroutines, %.1f KiB of heap each", n, goroutines, heap/1024)
	if goroutines > 20 {
		t.Errorf("%+.0f goroutines for %d idle wss clients: they are not on the loops", goroutines, n)
	}
	if heap > 24<<10 {
		t.Errorf("%.1f KiB of heap per idle wss client; want the TLS state and little more", heap/1024)
	}

	c, _, err := d.Dial("wss://"+p.listen+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st := c.NetConn().(*tls.Conn).ConnectionState()
	if st.NegotiatedProtocol != "http/1.1" {
		t.Errorf("ALPN chose %q, want http/1.1", st.NegotiatedProtocol)
	}
	if !st.DidResume {
		t.Error("a client with a session ticket did not resume")
	}
	askName(t, c)
}

// Behind a PROXY protocol balancer the loops read the header and serve
// the client: no goroutine each, and the backend sees the address the
// header names.
func TestProxyProtocolClientsOnTheLoops(t *testing.T) {
	b := upstreamtest.Start(t)
	p := startWsedge(t, "proxy_protocol = true\n[websocket]\nping_interval = \"0s\"\n[affinity]\ntrusted_proxies = [\"127.0.0.1/32\"]\n"+upstreams(b))
	i := 0
	d := p.wsDialer(websocket.Dialer{
		HandshakeTimeout: 5 * time.Second,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			i++
			src := &net.TCPAddr{IP: net.IPv4(198, 51, 100, byte(i%250+1)), Port: 40000 + i}
			if _, err := proxyproto.HeaderProxyFromAddrs(1, src, conn.RemoteAddr()).WriteTo(conn); err != nil {
				conn.Close()
				return nil, err
			}
			return conn, nil
		},
	})
	const n = 300
	goroutines, heap := idleClients(t, p, n, func() (*websocket.Conn, error) {
		c, _, err := d.Dial(p.wsURL("/"), nil)
		return c, err
	})
	t.Logf("%d idle clients behind a PROXY balancer: %+.0f goroutines, %.1f KiB of heap each", n, goroutines, heap/1024)
	if goroutines > 20 {
		t.Errorf("%+.0f goroutines for %d idle clients: they are not on the loops", goroutines, n)
	}
	c, res, err := d.Dial(p.wsURL("/"), http.Header{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, want := res.Header.Get("X-Seen-Real-Ip"), fmt.Sprintf("198.51.100.%d", i%250+1); got != want {
		t.Errorf("backend saw X-Real-IP %q, want %s from the PROXY header", got, want)
	}
}
