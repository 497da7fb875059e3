package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

// checkTimeout is short: every failing case below fails by timing out or
// at once.
const checkTimeout = 300 * time.Millisecond

func runCheck(t *testing.T, c *checker, addr string) (error, time.Duration) {
	t.Helper()
	return runCheckWithin(t, c, addr, checkTimeout)
}

func runCheckWithin(t *testing.T, c *checker, addr string, timeout time.Duration) (error, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	start := time.Now()
	err := c.check(ctx, addr)
	return err, time.Since(start)
}

// closedAddr returns an address nothing listens on any more.
func closedAddr(t *testing.T) string {
	b := upstreamtest.Start(t)
	b.Close()
	return b.Addr
}

func TestChecks(t *testing.T) {
	tests := []struct {
		name       string
		typ        string
		path       string
		backend    []upstreamtest.Option
		closed     bool // check a port nothing listens on
		wantErr    string
		wantStatus int
	}{
		{name: "http 200", typ: CheckHTTP, path: "/healthz"},
		{name: "http 503", typ: CheckHTTP, path: "/status/503", wantErr: "status 503", wantStatus: 503},
		{name: "http 404", typ: CheckHTTP, path: "/status/404", wantErr: "status 404", wantStatus: 404},
		{name: "http redirect is not healthy", typ: CheckHTTP, path: "/status/302", wantErr: "status 302", wantStatus: 302},
		{name: "http too slow", typ: CheckHTTP, path: "/slow?delay=5s", wantErr: "deadline exceeded"},
		{name: "http refused", typ: CheckHTTP, path: "/healthz", closed: true, wantErr: "refused"},
		// The http check passes against each of these: only the websocket
		// check sees that the WebSocket side is broken.
		{name: "http passes a wedged websocket side", typ: CheckHTTP, path: "/", backend: []upstreamtest.Option{upstreamtest.WithSilent()}},
		{name: "websocket echo", typ: CheckWebSocket, path: "/ws"},
		{name: "websocket silent: no pong", typ: CheckWebSocket, path: "/ws", backend: []upstreamtest.Option{upstreamtest.WithSilent()}, wantErr: "wait for pong"},
		{name: "websocket never reads: no pong", typ: CheckWebSocket, path: "/ws", backend: []upstreamtest.Option{upstreamtest.WithNeverRead()}, wantErr: "wait for pong"},
		{name: "websocket refused 503", typ: CheckWebSocket, path: "/ws", backend: []upstreamtest.Option{upstreamtest.WithRefuse(503, "overloaded")}, wantErr: "upgrade: status 503", wantStatus: 503},
		{name: "websocket upgrade hangs", typ: CheckWebSocket, path: "/ws", backend: []upstreamtest.Option{upstreamtest.WithHandshakeDelay(5 * time.Second)}, wantErr: "upgrade"},
		{name: "websocket refused connection", typ: CheckWebSocket, path: "/ws", closed: true, wantErr: "refused"},
		{name: "tcp", typ: CheckTCP},
		{name: "tcp refused", typ: CheckTCP, closed: true, wantErr: "refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var addr string
			if tt.closed {
				addr = closedAddr(t)
			} else {
				addr = upstreamtest.Start(t, tt.backend...).Addr
			}
			c := newChecker(tt.typ, tt.path, nil)
			defer c.close()
			err, took := runCheck(t, c, addr)
			if took > checkTimeout+200*time.Millisecond {
				t.Errorf("check took %v, beyond its %v timeout", took, checkTimeout)
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("check failed: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("check error = %v, want one containing %q", err, tt.wantErr)
			}
			var ce *CheckError
			if !errors.As(err, &ce) || ce.Addr != addr || ce.Type != tt.typ {
				t.Errorf("error %v is not a *CheckError for %s %s", err, tt.typ, addr)
			}
			var se *StatusError
			if got := errors.As(err, &se); got != (tt.wantStatus != 0) || got && se.Code != tt.wantStatus {
				t.Errorf("error %v: want status %d", err, tt.wantStatus)
			}
		})
	}
}

func TestWebSocketCheckClosesCleanly(t *testing.T) {
	b := upstreamtest.Start(t)
	c := newChecker(CheckWebSocket, "/health", nil)
	for range 3 {
		if err, _ := runCheck(t, c, b.Addr); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if err := b.WaitConns(ctx, 0); err != nil {
		t.Fatalf("connections left open after checks: %v", err)
	}
	hs := b.Handshakes()
	if len(hs) != 3 || hs[0].Path != "/health" || hs[0].Header.Get("User-Agent") != userAgent {
		t.Errorf("handshakes = %+v, want 3 on /health from %s", hs, userAgent)
	}
}

// tlsBackend serves "ok" over HTTPS and a WebSocket echo on /ws.
func tlsBackend(t *testing.T) (*httptest.Server, *tls.Config) {
	up := websocket.Upgrader{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !websocket.IsWebSocketUpgrade(r) {
			w.Write([]byte("ok"))
			return
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	return srv, &tls.Config{RootCAs: roots, ServerName: "example.com"}
}

func TestChecksOverTLS(t *testing.T) {
	srv, good := tlsBackend(t)
	addr := strings.TrimPrefix(srv.URL, "https://")
	const timeout = 3 * time.Second // handshakes are slow under the race detector
	for _, typ := range []string{CheckHTTP, CheckWebSocket, CheckTCP} {
		t.Run(typ, func(t *testing.T) {
			c := newChecker(typ, "/ws", good)
			defer c.close()
			if err, _ := runCheckWithin(t, c, addr, timeout); err != nil {
				t.Errorf("with the backend's CA: %v", err)
			}
			untrusted := newChecker(typ, "/ws", &tls.Config{})
			defer untrusted.close()
			if err, _ := runCheckWithin(t, untrusted, addr, timeout); err == nil || !strings.Contains(err.Error(), "certificate") {
				t.Errorf("without the backend's CA: %v, want a certificate error", err)
			}
		})
	}
}

func TestParseCheckURL(t *testing.T) {
	tests := []struct {
		give     string
		wantType string
		wantAddr string
		wantPath string
		wantTLS  bool
		wantErr  bool
	}{
		{give: "http://127.0.0.1:9001/healthz", wantType: CheckHTTP, wantAddr: "127.0.0.1:9001", wantPath: "/healthz"},
		{give: "https://app.internal/ready?deep=1", wantType: CheckHTTP, wantAddr: "app.internal:443", wantPath: "/ready?deep=1", wantTLS: true},
		{give: "ws://localhost:3000/socket", wantType: CheckWebSocket, wantAddr: "localhost:3000", wantPath: "/socket"},
		{give: "wss://[::1]/", wantType: CheckWebSocket, wantAddr: "[::1]:443", wantPath: "/", wantTLS: true},
		{give: "http://app", wantType: CheckHTTP, wantAddr: "app:80", wantPath: "/"},
		{give: "tcp://127.0.0.1:5432", wantType: CheckTCP, wantAddr: "127.0.0.1:5432", wantPath: "/"},
		{give: "tcp://db", wantErr: true},
		{give: "udp://127.0.0.1:53", wantErr: true},
		{give: "127.0.0.1:9001", wantErr: true},
		{give: "http:///healthz", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			c, addr, err := parseCheckURL(tt.give)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseCheckURL(%q) = %+v, %s; want an error", tt.give, c, addr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.typ != tt.wantType || addr != tt.wantAddr || c.path != tt.wantPath || (c.tls != nil) != tt.wantTLS {
				t.Errorf("got %s %s %s tls=%v, want %s %s %s tls=%v",
					c.typ, addr, c.path, c.tls != nil, tt.wantType, tt.wantAddr, tt.wantPath, tt.wantTLS)
			}
		})
	}
}
