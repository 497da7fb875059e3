package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/wsedge/wsedge/proxy/wsframe"
	"github.com/wsedge/wsedge/upstream"
)

// The rig of the package's fuzz targets (FuzzRelay, FuzzHandshake,
// FuzzProxyHeader in fuzz_*_test.go). They drive a whole Server over
// loopback sockets, as a client and a backend would, rather than one
// function: what they guard is the interplay of the handshake, the relay
// with and without io_uring, the close logic and the registry. Each input
// costs a connection through the proxy, so they run slower than
// wsframe's FuzzFramer; testdata/fuzz/run.sh gives each a few seconds in
// CI.

const (
	// fuzzWait bounds every blocking step of one input.
	fuzzWait = 5 * time.Second
	// fuzzQuiet is how long a peer must have received nothing, once both
	// peers have written everything, before its view is taken as final.
	fuzzQuiet = 20 * time.Millisecond
	// fuzzAllocBound is the most one input may make the process allocate.
	// A relay that sized a buffer from a declared frame length would
	// allocate gigabytes for the headers the inputs carry.
	fuzzAllocBound = 64 << 20
	// fuzzSmallLimit is the message limit of half the relay servers, low
	// enough for inputs to cross it.
	fuzzSmallLimit = 4096
)

// fuzzServer is a Server serving a loopback listener, as the binary runs
// it, with its log observed: the access log says how each connection
// ended, and net/http's "http: panic serving" line, which it writes when it
// recovers a handler's panic, would otherwise let a panic pass for a
// dropped connection. Panics on the event loops crash the process.
type fuzzServer struct {
	srv  *Server
	addr string
	logs *observer.ObservedLogs
}

// startFuzzServer serves cfg in front of backends on a loopback port, its
// clients speaking what opts say before HTTP. Without ring, the event
// loops make a system call per read and write (WithoutIOUring).
func startFuzzServer(tb testing.TB, cfg Config, backends []string, ring bool, opts ...ListenOption) *fuzzServer {
	tb.Helper()
	var list []upstream.Backend
	for _, b := range backends {
		list = append(list, upstream.Backend{Addr: b, Weight: 1})
	}
	core, logs := observer.New(zapcore.InfoLevel)
	srvOpts := []Option{WithLogger(zap.New(core))}
	if !ring {
		srvOpts = append(srvOpts, WithoutIOUring())
	}
	srv := New(cfg, upstream.NewSet(list), srvOpts...)
	srv.closeWait = 200 * time.Millisecond // uncooperative peers are the rule here
	ln, err := ListenTCP("127.0.0.1:0", 0, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	served, watched := make(chan struct{}), make(chan struct{})
	go func() { defer close(served); srv.Serve(ln) }()
	go func() { defer close(watched); srv.WatchMembers(ctx) }()
	tb.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), fuzzWait)
		defer scancel()
		srv.Shutdown(sctx)
		cancel()
		<-served
		<-watched
	})
	return &fuzzServer{srv: srv, addr: addr, logs: logs}
}

// settle waits for the access log lines of the connections an input
// upgraded, then takes everything logged for the input and fails tb on a
// recovered panic or on a close code no close frame may carry (1005, a
// close without a code, and 1006, none at all, are what the client saw
// in those cases).
func (fs *fuzzServer) settle(tb testing.TB, upgraded int) {
	tb.Helper()
	deadline := time.Now().Add(fuzzWait)
	for fs.logs.FilterMessage("connection closed").Len() < upgraded {
		if time.Now().After(deadline) {
			tb.Fatalf("%d of %d relayed connections logged their end within %v; live: %v",
				fs.logs.FilterMessage("connection closed").Len(), upgraded, fuzzWait, fs.srv.reg.counts())
		}
		time.Sleep(time.Millisecond)
	}
	for _, e := range fs.logs.TakeAll() {
		if strings.Contains(e.Message, "panic") {
			tb.Fatalf("the server panicked: %s", e.Message)
		}
		if e.Message != "connection closed" {
			continue
		}
		code, _ := e.ContextMap()["close_code"].(int64)
		if c := ws.StatusCode(code); !wsframe.ValidCloseCode(c) && c != ws.StatusNoStatusRcvd && c != ws.StatusAbnormalClosure {
			tb.Fatalf("connection closed with code %d in the log: %v", code, e.ContextMap())
		}
	}
}

// fuzzKey is the client's Sec-WebSocket-Key, the sample of RFC 6455.
const fuzzKey = "dGhlIHNhbXBsZSBub25jZQ=="

func clip(p []byte) []byte { return p[:min(len(p), 32)] }

// handshakeBackend is a backend for the handshake targets: it accepts every
// upgrade and answers every other request 200, and remembers the
// X-Forwarded-For of the last upgrade, which is what it was told of the
// client.
type handshakeBackend struct {
	addr string
	mu   sync.Mutex
	xff  string
}

func startHandshakeBackend(tb testing.TB) *handshakeBackend {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	hb := &handshakeBackend{addr: ln.Addr().String()}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	var conns sync.WaitGroup
	srv := &http.Server{
		ErrorLog: log.New(io.Discard, "", 0),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !websocket.IsWebSocketUpgrade(r) {
				io.WriteString(w, "ok")
				return
			}
			hb.mu.Lock()
			hb.xff = r.Header.Get("X-Forwarded-For")
			hb.mu.Unlock()
			c, err := up.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			conns.Add(1)
			defer conns.Done()
			defer c.Close()
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
			}
		}),
	}
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(ln) }()
	tb.Cleanup(func() {
		srv.Close()
		<-served
		conns.Wait()
	})
	return hb
}

func (hb *handshakeBackend) lastXFF() string {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	return hb.xff
}

// upgrades is how many relayed connections a status started.
func upgrades(status int) int {
	if status == http.StatusSwitchingProtocols {
		return 1
	}
	return 0
}

// errNoAnswer is a connection closed before any status line.
var errNoAnswer = errors.New("connection closed without an answer")

// statusOf sends raw to the proxy at addr and returns the status of the
// first status line that comes back; the connection is closed after.
func statusOf(addr string, raw []byte) (int, error) {
	conn, err := net.DialTimeout("tcp", addr, fuzzWait)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(fuzzWait))
	if _, err := conn.Write(raw); err != nil {
		return 0, errNoAnswer // the proxy hung up on the first bytes
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return 0, fmt.Errorf("no answer within %v", fuzzWait)
	case err != nil && line == "":
		return 0, errNoAnswer
	case err != nil:
		return 0, fmt.Errorf("status line %q cut short: %v", line, err)
	}
	proto, rest, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
	code, _, _ := strings.Cut(rest, " ")
	status, err := strconv.Atoi(code)
	if (proto != "HTTP/1.1" && proto != "HTTP/1.0") || err != nil {
		return 0, fmt.Errorf("status line %q", line)
	}
	return status, nil
}
