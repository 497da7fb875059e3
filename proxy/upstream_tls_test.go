package proxy

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/wsedge/wsedge/upstream"
	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

// A backend that speaks only TLS (wss://) is reached with [upstream_tls]:
// WebSockets and plain requests alike, with the backend's certificate
// checked against the configured roots.
func TestUpstreamTLS(t *testing.T) {
	up := websocket.Upgrader{}
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			http.Error(w, "TLS only", http.StatusBadRequest)
			return
		}
		if !websocket.IsWebSocketUpgrade(r) {
			w.Write([]byte("plain over tls"))
			return
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			op, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			c.WriteMessage(op, msg)
		}
	}))
	backend.StartTLS()
	defer backend.Close()
	roots := x509.NewCertPool()
	roots.AddCert(backend.Certificate())
	addr := strings.TrimPrefix(backend.URL, "https://")

	p := startProxyOn(t, Config{UpstreamTLS: &tls.Config{RootCAs: roots, ServerName: "example.com"}},
		[]upstream.Backend{{Addr: addr}})
	c := dial(t, p, "/", nil)
	msg := bytes.Repeat([]byte("secure "), 1000)
	if err := c.WriteMessage(websocket.TextMessage, msg); err != nil {
		t.Fatal(err)
	}
	_, got, err := c.ReadMessage()
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo over a TLS backend: err %v, equal %v", err, bytes.Equal(got, msg))
	}
	for _, lc := range p.srv.reg.sessions("") {
		if _, ok := lc.(*econn); !ok {
			t.Errorf("connection %T: not on the event loops", lc)
		}
	}
	if body := httpGet(t, "http://"+p.addr+"/page", nil); body != "plain over tls" {
		t.Fatalf("plain request over a TLS backend got %q", body)
	}

	// The wrong roots: the backend's certificate is refused, and the client
	// hears 502 rather than talking to an unverified server.
	p2 := startProxyOn(t, Config{UpstreamTLS: &tls.Config{RootCAs: x509.NewCertPool()}}, []upstream.Backend{{Addr: addr}})
	_, res, err := websocket.DefaultDialer.Dial(p2.url("/"), nil)
	if err == nil || res == nil || res.StatusCode != http.StatusBadGateway {
		t.Fatalf("unverified backend: err %v, response %v; want 502", err, res)
	}
}

// A backend named by host name is looked up off the loop and relayed by
// it like any other; a name with several addresses is tried address by
// address.
func TestBackendByName(t *testing.T) {
	b := upstreamtest.Start(t, upstreamtest.WithName("named"))
	_, port, _ := net.SplitHostPort(b.Addr)
	p := startProxyOn(t, Config{}, []upstream.Backend{{Addr: "localhost:" + port}})
	c := dial(t, p, "/", nil)
	if got := whoami(t, c); got != "named" {
		t.Fatalf("whoami = %q", got)
	}
	for _, lc := range p.srv.reg.sessions("") {
		if _, ok := lc.(*econn); !ok {
			t.Errorf("connection %T: not on the event loops", lc)
		}
	}
}
