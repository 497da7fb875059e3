package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"

	"github.com/wsedge/wsedge/cmd/wsedge/internal/bench"
	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

// resources is what a proxy process holds, as its admin listener and /proc
// tell it: what must come back to its baseline after a fault.
type resources struct {
	goroutines int
	fds        int
	heap       int64 // live heap right after a forced garbage collection
	rss        int64
}

func (r resources) String() string {
	return fmt.Sprintf("%d goroutines, %d fds, heap %d KiB, RSS %d KiB", r.goroutines, r.fds, r.heap>>10, r.rss>>10)
}

// adminText GETs path on p's admin listener on a connection of its own,
// closed after, so that measuring leaves nothing behind in the proxy.
func adminText(t *testing.T, p *proc, path string) string {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	c := http.Client{Transport: tr, Timeout: 10 * time.Second}
	res, err := c.Get("http://" + p.admin + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v", path, res.Status, err)
	}
	return string(body)
}

// readResources measures p: goroutines from the profiler's count, the live
// heap from a heap profile taken after a collection, descriptors and RSS
// from /proc.
func readResources(t *testing.T, p *proc) resources {
	t.Helper()
	// Idle keep-alive connections from the test's own admin requests
	// (getJSON) would count as the proxy's.
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	var r resources
	first, _, _ := strings.Cut(adminText(t, p, "/debug/pprof/goroutine?debug=1"), "\n")
	n, err := strconv.Atoi(strings.TrimPrefix(first, "goroutine profile: total "))
	if err != nil {
		t.Fatalf("goroutine profile starts %q", first)
	}
	r.goroutines = n
	// Two collections: the first only moves pooled buffers to sync.Pool's
	// victim cache, the second frees them.
	adminText(t, p, "/debug/pprof/heap?gc=1&debug=1")
	for _, line := range strings.Split(adminText(t, p, "/debug/pprof/heap?gc=1&debug=1"), "\n") {
		if v, ok := strings.CutPrefix(line, "# HeapAlloc = "); ok {
			r.heap, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	r.fds = len(fds)
	r.rss = p.rss(t)
	return r
}

// waitResources waits until p is back to at most base's descriptors and
// goroutines and returns what it holds then. Up to slack goroutines more
// are let pass, with their stacks logged, when they are still there at
// the end of within: a health check or admin request may be in flight.
func waitResources(t *testing.T, p *proc, base resources, slack int, within time.Duration) resources {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		r := readResources(t, p)
		if r.fds <= base.fds && r.goroutines <= base.goroutines {
			return r
		}
		if time.Now().After(deadline) {
			if r.fds > base.fds || r.goroutines > base.goroutines+slack {
				t.Errorf("after %v the proxy holds %v; before: %v", within, r, base)
			}
			t.Logf("%d goroutines more than before:\n%s", r.goroutines-base.goroutines, adminText(t, p, "/debug/pprof/goroutine?debug=1"))
			return r
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitMemoryBack waits, up to 10s, until p's live heap is back within
// margin of base's and its RSS within rssMargin (the runtime returns freed
// pages to the system a moment after a collection), logs where it ended
// and fails if either stayed above.
func waitMemoryBack(t *testing.T, p *proc, what string, base resources, margin, rssMargin int64) {
	t.Helper()
	var now resources
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		now = readResources(t, p)
		if now.heap <= base.heap+margin && now.rss <= base.rss+rssMargin || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("%s: before %v; after %v", what, base, now)
	if now.heap > base.heap+margin {
		t.Errorf("%s: live heap %d KiB after, %d KiB before: more than %d KiB kept", what, now.heap>>10, base.heap>>10, margin>>10)
	}
	if now.rss > base.rss+rssMargin {
		t.Errorf("%s: RSS %d KiB after, %d KiB before: more than %d KiB kept", what, now.rss>>10, base.rss>>10, rssMargin>>10)
	}
}

func jsonOf(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// faultKeyHeader is what the fault tests route clients by, so that a test
// chooses which backend each client lands on.
const faultKeyHeader = "X-User"

// keysOn returns, for each of addrs, n values of faultKeyHeader that p
// routes to it, as /debug/ring?key= says.
func keysOn(t *testing.T, p *proc, addrs []string, n int) map[string][]string {
	t.Helper()
	keys := make(map[string][]string)
	for i := 0; ; i++ {
		full := true
		for _, a := range addrs {
			full = full && len(keys[a]) >= n
		}
		if full {
			return keys
		}
		if i > 100*n*len(addrs) {
			t.Fatalf("no %d keys each for %v after %d tries: %v", n, addrs, i, keys)
		}
		key := fmt.Sprintf("user-%d", i)
		var ex struct{ Backend string }
		if err := jsonOf(adminText(t, p, "/debug/ring?key="+key), &ex); err != nil {
			t.Fatal(err)
		}
		if len(keys[ex.Backend]) < n {
			keys[ex.Backend] = append(keys[ex.Backend], key)
		}
	}
}

// dialAs opens a WebSocket to p as the client with key, failing the test
// unless it is accepted.
func dialAs(t *testing.T, p *proc, key string) *websocket.Conn {
	t.Helper()
	c, _ := wsDial(t, p, "/", http.Header{faultKeyHeader: {key}})
	return c
}

// bystanders are well-behaved clients echoing through the proxy beside a
// fault, each a closed loop of small messages; none may notice the fault.
type bystanders struct {
	stop   chan struct{}
	wg     sync.WaitGroup
	rounds atomic.Int64
	mu     sync.Mutex
	errs   []error
}

func startBystanders(t *testing.T, p *proc, keys []string) *bystanders {
	t.Helper()
	b := &bystanders{stop: make(chan struct{})}
	for i, key := range keys {
		c := dialAs(t, p, key)
		b.wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-b.stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
				msg := fmt.Sprintf("bystander %d message %d", i, n)
				if err := echoOnce(c, msg); err != nil {
					b.mu.Lock()
					b.errs = append(b.errs, fmt.Errorf("bystander %d, message %d: %w", i, n, err))
					b.mu.Unlock()
					return
				}
				b.rounds.Add(1)
			}
		})
	}
	return b
}

// finish stops the bystanders and fails the test if any of them noticed
// anything.
func (b *bystanders) finish(t *testing.T) int64 {
	t.Helper()
	close(b.stop)
	b.wg.Wait()
	for _, err := range b.errs {
		t.Errorf("a well-behaved client noticed: %v", err)
	}
	if b.rounds.Load() == 0 {
		t.Error("the well-behaved clients made no round trip")
	}
	return b.rounds.Load()
}

// echoOnce sends msg and waits for it to come back unchanged.
func echoOnce(c *websocket.Conn, msg string) error {
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, got, err := c.ReadMessage()
	if err != nil {
		return err
	}
	if string(got) != msg {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

// A backend misbehaving at every stage of a WebSocket's life: each fault
// hits 40 clients at once. Every client gets a close code (or HTTP status)
// that says what happened, within a bound; clients on a healthy backend of
// the same proxy notice nothing; and afterwards the proxy holds no more
// goroutines or descriptors than before and its live heap is back.
func TestBackendFaults(t *testing.T) {
	const clients = 40
	tests := []struct {
		name    string
		backend func(t *testing.T) string
		// act is what each client does once connected; nil: just wait.
		act func(c *rawClient)
		// wantCode is the close code each client must get; -1: the
		// connection ends without a close frame. wantStatus, when set, is
		// the handshake's answer instead.
		wantCode   int
		wantStatus int
		within     time.Duration
	}{
		{
			// Control frames may sit between fragments, so the proxy can
			// still say why; the client drops the partial message.
			name: "dies between two fragments of a message",
			backend: scripted(func(conn net.Conn) {
				ws.WriteFrame(conn, ws.NewFrame(ws.OpText, false, []byte("the first half of a message, ")))
				time.Sleep(100 * time.Millisecond)
				upstreamtest.Reset(conn)
			}),
			wantCode: 1012, within: 3 * time.Second,
		},
		{
			// Nothing may be put inside a frame (RFC 6455 section 5.4): the
			// only honest end is to cut the connection, once the proxy has
			// waited out its close linger.
			name: "dies in the middle of a frame",
			backend: scripted(func(conn net.Conn) {
				ws.WriteHeader(conn, ws.Header{Fin: true, OpCode: ws.OpBinary, Length: 64 << 10})
				conn.Write(make([]byte, 1000))
				time.Sleep(100 * time.Millisecond)
				upstreamtest.Reset(conn)
			}),
			wantCode: -1, within: 4 * time.Second,
		},
		{
			name: "stops reading until its TCP window is full",
			backend: func(t *testing.T) string {
				return upstreamtest.Start(t, upstreamtest.WithNeverRead()).Addr
			},
			act:      floodUntilClosed,
			wantCode: 1011, within: 10 * time.Second,
		},
		{
			// The client's close goes to a backend that never answers it:
			// the proxy must not leave the client waiting for ever.
			name:    "answers the upgrade and never sends a byte",
			backend: scripted(nil),
			act: func(c *rawClient) {
				c.send(ws.NewTextFrame([]byte("anyone there?")), time.Second)
				c.send(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye")), time.Second)
			},
			wantCode: 1000, within: 4 * time.Second,
		},
		{
			name: "sends a masked frame",
			backend: scripted(func(conn net.Conn) {
				ws.WriteFrame(conn, ws.MaskFrame(ws.NewTextFrame([]byte("servers never mask"))))
				io.Copy(io.Discard, conn)
			}),
			wantCode: 1014, within: 3 * time.Second,
		},
		{
			name: "sends garbage",
			backend: scripted(func(conn net.Conn) {
				conn.Write([]byte("HTTP/1.1 500 Internal Server Error\r\n\r\nstack trace follows"))
				io.Copy(io.Discard, conn)
			}),
			wantCode: 1014, within: 3 * time.Second,
		},
		{
			name: "sends a message over max_message_bytes",
			backend: scripted(func(conn net.Conn) {
				ws.WriteHeader(conn, ws.Header{Fin: true, OpCode: ws.OpBinary, Length: 8 << 20})
				io.Copy(io.Discard, conn)
			}),
			wantCode: 1009, within: 3 * time.Second,
		},
		{
			name: "resets during the handshake",
			backend: func(t *testing.T) string {
				return upstreamtest.StartScripted(t, upstreamtest.Script{Handshake: upstreamtest.Reset}).Addr
			},
			wantStatus: http.StatusBadGateway, within: 3 * time.Second,
		},
		{
			name: "never answers the handshake",
			backend: func(t *testing.T) string {
				return upstreamtest.StartScripted(t, upstreamtest.Script{Handshake: func(conn net.Conn) { io.Copy(io.Discard, conn) }}).Addr
			},
			wantStatus: http.StatusGatewayTimeout, within: 3 * time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			faulty := tt.backend(t)
			good := upstreamtest.Start(t)
			p := startWsedge(t, fmt.Sprintf(`[affinity]
key = "header"
header = %q
[websocket]
handshake_timeout = "1s"
write_timeout = "1s"
max_message_bytes = "1MiB"
%s`, faultKeyHeader, upstreams(good)+fmt.Sprintf("\n[[upstream]]\naddress = %q\nweight = 1\n", faulty)))
			keys := keysOn(t, p, []string{faulty, good.Addr}, clients)
			by := startBystanders(t, p, keys[good.Addr][:5])
			time.Sleep(200 * time.Millisecond) // a few round trips: the event loops and buffers are warm
			base := readResources(t, p)

			start := time.Now()
			outcomes := make([]string, clients)
			var wg sync.WaitGroup
			for i, key := range keys[faulty] {
				wg.Go(func() { outcomes[i] = faultOutcome(p, key, tt.act, tt.within) })
			}
			wg.Wait()
			took := time.Since(start)
			want := fmt.Sprintf("close %d", tt.wantCode)
			if tt.wantStatus != 0 {
				want = fmt.Sprintf("status %d", tt.wantStatus)
			}
			bad := slices.DeleteFunc(slices.Clone(outcomes), func(o string) bool { return o == want })
			t.Logf("%d clients: %s for %d of them, all within %v", clients, want, clients-len(bad), took.Round(time.Millisecond))
			if len(bad) > 0 {
				t.Errorf("%d clients did not get %s: %q", len(bad), want, bad)
			}

			rounds := by.finish(t)
			t.Logf("5 clients on the healthy backend: %d round trips, none disturbed", rounds)
			waitResources(t, p, base, 2, 10*time.Second)
			waitMemoryBack(t, p, tt.name, base, 1<<20, 8<<20)
		})
	}
}

// scripted starts a scripted backend whose session is session.
func scripted(session func(net.Conn)) func(t *testing.T) string {
	return func(t *testing.T) string {
		return upstreamtest.StartScripted(t, upstreamtest.Script{Session: session}).Addr
	}
}

// faultOutcome connects as key, acts, and says how the connection ended:
// "status N" for a refused handshake, "close N" for a close frame, "close
// -1" for an end without one; anything else is a failure described.
func faultOutcome(p *proc, key string, act func(*rawClient), within time.Duration) string {
	start := time.Now()
	c, err := dialRaw(p, key)
	var se ws.StatusError
	switch {
	case errors.As(err, &se) && time.Since(start) > within:
		return fmt.Sprintf("status %d after %v", se, time.Since(start))
	case errors.As(err, &se):
		return fmt.Sprintf("status %d", se)
	case err != nil:
		return "dial: " + err.Error()
	}
	defer c.conn.Close()
	if act != nil {
		go act(c)
	}
	code, err := c.closeCode(start.Add(within))
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("close %d", code)
}

// rawClient is a WebSocket client at the frame level (gobwas/ws): it
// reports every close code as it came, where gorilla/websocket takes some
// registered ones (1014) for protocol errors.
type rawClient struct {
	conn net.Conn
	r    io.Reader // what the handshake read ahead comes first
}

func dialRaw(p *proc, key string) (*rawClient, error) {
	d := p.gobwasDialer(ws.Dialer{Timeout: 10 * time.Second, Header: ws.HandshakeHeaderHTTP(http.Header{faultKeyHeader: {key}})})
	conn, br, _, err := d.Dial(context.Background(), p.wsURL("/"))
	if err != nil {
		return nil, err
	}
	c := &rawClient{conn: conn, r: conn}
	if br != nil {
		c.r = br
	}
	return c, nil
}

// send writes one masked frame, as a client must.
func (c *rawClient) send(f ws.Frame, timeout time.Duration) error {
	c.conn.SetWriteDeadline(time.Now().Add(timeout))
	return ws.WriteFrame(c.conn, ws.MaskFrame(f))
}

// closeCode reads frames until a close frame, whose code it returns (1005
// when it has none), or the end of the connection (-1). It fails when
// neither comes by deadline.
func (c *rawClient) closeCode(deadline time.Time) (int, error) {
	c.conn.SetReadDeadline(deadline)
	for {
		h, err := ws.ReadHeader(c.r)
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			return 0, errors.New("still open at the deadline")
		case err != nil:
			return -1, nil
		}
		payload := make([]byte, min(h.Length, 1<<20))
		if h.Length > int64(len(payload)) {
			_, err = io.CopyN(io.Discard, c.r, h.Length)
		} else {
			_, err = io.ReadFull(c.r, payload)
		}
		if err != nil {
			if errors.As(err, &ne) && ne.Timeout() {
				return 0, errors.New("still open at the deadline")
			}
			return -1, nil
		}
		if h.OpCode == ws.OpClose {
			code, _ := ws.ParseCloseFrameData(payload)
			if len(payload) < 2 {
				return int(ws.StatusNoStatusRcvd), nil
			}
			return int(code), nil
		}
	}
}

// floodUntilClosed writes 256 KiB messages until a write fails: the proxy
// must stop reading once the backend does, and end the connection. The
// frame is masked once and sent again and again, so that filling the
// buffers on the way costs the test little.
func floodUntilClosed(c *rawClient) {
	frame, err := ws.CompileFrame(ws.MaskFrame(ws.NewBinaryFrame(make([]byte, 256<<10))))
	if err != nil {
		panic(err)
	}
	for range 1024 {
		c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.conn.Write(frame); err != nil {
			return
		}
	}
}

// Clients that vanish without a FIN (their process frozen with SIGSTOP:
// the kernel still acknowledges, but nothing reads and no ping is
// answered) are found by the proxy's heartbeats within ping_interval +
// pong_timeout, and everything they held is freed, on the backend's side
// too.
func TestHalfOpenClientsFoundByHeartbeats(t *testing.T) {
	const conns = 200
	const interval, timeout = time.Second, time.Second
	b := upstreamtest.Start(t)
	p := startWsedge(t, fmt.Sprintf("[websocket]\nping_interval = %q\npong_timeout = %q\n%s", interval, timeout, upstreams(b)))
	warm, _ := wsDial(t, p, "/", nil)
	askName(t, warm)
	warm.Close()
	waitBackendConns(t, b, 0, 5*time.Second)
	base := readResources(t, p)

	// wsedge bench idle holds its connections in a process of its own and
	// answers the proxy's pings, as a browser tab does.
	gen := runWsedge(t, append([]string{"bench", "idle", "--conns", strconv.Itoa(conns), "--hold", "1m", "--ramp", "2000/s"},
		p.benchFlags()...)...)
	t.Cleanup(func() {
		gen.cmd.Process.Kill()
		<-gen.exited
	})
	waitBackendConns(t, b, conns, 20*time.Second)
	holding := readResources(t, p)
	time.Sleep(2*interval + timeout)
	if n := p.logs.count(`"cause":"pong_timeout"`); n != 0 || b.Conns() != conns {
		t.Fatalf("%d of %d answering clients closed for not answering pings", n, conns)
	}

	gen.signal(t, syscall.SIGSTOP)
	frozen := time.Now()
	waitBackendConns(t, b, 0, interval+timeout+5*time.Second)
	took := time.Since(frozen)
	// The backend may see its close a moment before the proxy's log line
	// for it is read: wait for the lines too.
	timeouts := 0
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if timeouts = p.logs.count(`"cause":"pong_timeout"`, `"close_code":1008`); timeouts >= conns {
			break
		}
	}
	t.Logf("%d clients frozen: all found and closed after %v (ping_interval %v + pong_timeout %v); %d logged as pong timeouts",
		conns, took.Round(time.Millisecond), interval, timeout, timeouts)
	// The slack is for the two cores this machine shares among the proxy,
	// the frozen process's kernel side and the test.
	if took > interval+timeout+1500*time.Millisecond {
		t.Errorf("frozen clients closed %v after they froze, want within ping_interval + pong_timeout (+1.5s)", took)
	}
	if timeouts != conns {
		t.Errorf("%d pong timeouts logged, want %d", timeouts, conns)
	}
	waitResources(t, p, base, 2, 10*time.Second)
	t.Logf("holding %d connections: %v", conns, holding)
	waitMemoryBack(t, p, "half-open clients", base, 1<<20, 8<<20)
}

// waitBackendConns waits until b has n live WebSocket connections.
func waitBackendConns(t *testing.T, b *upstreamtest.Backend, n int, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if err := b.WaitConns(ctx, n); err != nil {
		t.Fatal(err)
	}
}

// latencyProbe is a handful of well-behaved clients measuring what users
// feel while the proxy is abused: round trips of small messages on open
// connections, and new connections (connect, upgrade, first answer).
type latencyProbe struct {
	p     *proc
	conns []*websocket.Conn
}

func startLatencyProbe(t *testing.T, p *proc, n int) *latencyProbe {
	t.Helper()
	lp := &latencyProbe{p: p}
	for range n {
		c, _ := wsDial(t, p, "/", nil)
		lp.conns = append(lp.conns, c)
	}
	return lp
}

// probeResult is what a probe measured over one window.
type probeResult struct {
	rtt, handshake []time.Duration
	errs           []error
}

func (r probeResult) String() string {
	return fmt.Sprintf("round trip p50 %v p99 %v (%d), new connection p50 %v p99 %v (%d), %d errors",
		percentile(r.rtt, 50), percentile(r.rtt, 99), len(r.rtt),
		percentile(r.handshake, 50), percentile(r.handshake, 99), len(r.handshake), len(r.errs))
}

// measure runs the probe until done is closed: each open connection sends
// a message every 10ms and waits for its echo, and a new connection is
// made every 50ms.
func (lp *latencyProbe) measure(done <-chan struct{}) probeResult {
	var mu sync.Mutex
	var r probeResult
	note := func(rtt, hs time.Duration, err error) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			r.errs = append(r.errs, err)
		case rtt > 0:
			r.rtt = append(r.rtt, rtt)
		default:
			r.handshake = append(r.handshake, hs)
		}
	}
	var wg sync.WaitGroup
	for i, c := range lp.conns {
		wg.Go(func() {
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-done:
					return
				case <-tick.C:
				}
				start := time.Now()
				err := echoOnce(c, fmt.Sprintf("probe %d message %d", i, n))
				note(time.Since(start), 0, err)
				if err != nil {
					return
				}
			}
		})
	}
	wg.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			start := time.Now()
			d := lp.p.wsDialer(websocket.Dialer{HandshakeTimeout: 10 * time.Second})
			c, _, err := d.Dial(lp.p.wsURL("/"), nil)
			if err == nil {
				err = echoOnce(c, "hello")
				c.Close()
			}
			note(0, time.Since(start), err)
		}
	})
	wg.Wait()
	return r
}

// measureFor runs the probe for d.
func (lp *latencyProbe) measureFor(d time.Duration) probeResult {
	done := make(chan struct{})
	time.AfterFunc(d, func() { close(done) })
	return lp.measure(done)
}

// percentile returns the p-th percentile of ds; 0 for none.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)].Round(10 * time.Microsecond)
}

// holdSlowloris opens n connections that send a request head a byte at a
// time, one byte every 500ms, and never finish it. It returns once all
// are open, and a channel that yields each connection's life, from open
// until the proxy hung up on it (-1 for one that could not connect or was
// still open when stop closed).
func holdSlowloris(p *proc, n int, stop <-chan struct{}) <-chan time.Duration {
	lives := make(chan time.Duration, n)
	var opened sync.WaitGroup
	for i := range n {
		opened.Add(1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			conn, err := p.dialRaw(ctx, netip.Addr{})
			if tc, ok := conn.(*tls.Conn); ok && err == nil {
				// Over TLS the client is through its handshake before it
				// dribbles: open means ready to dribble, as on a plain
				// connection.
				if err = tc.HandshakeContext(ctx); err != nil {
					conn.Close()
				}
			}
			cancel()
			opened.Done()
			if err != nil {
				lives <- -1
				return
			}
			defer conn.Close()
			start := time.Now()
			cut := make(chan time.Duration, 1)
			go func() {
				io.Copy(io.Discard, conn) // whatever the proxy says (408), then its hang-up
				cut <- time.Since(start)
			}()
			head := fmt.Sprintf("GET /slow-%d HTTP/1.1\r\nHost: wsedge.test\r\nX-Padding: %s", i, strings.Repeat("a", 1000))
			for j := 0; ; j = (j + 1) % len(head) {
				conn.SetWriteDeadline(time.Now().Add(time.Second))
				conn.Write([]byte{head[j]}) // fails once cut; the reader says when
				select {
				case life := <-cut:
					lives <- life
					return
				case <-stop:
					lives <- -1
					return
				case <-time.After(500 * time.Millisecond):
				}
			}
		}()
	}
	opened.Wait()
	return lives
}

// benchHandshakes runs `wsedge bench handshake` against p with workers
// connecting at the same instant and looping for d, and returns its
// report.
func benchHandshakes(p *proc, workers int, d time.Duration) (handshakeReport, error) {
	var rep handshakeReport
	out, err := exec.Command(binary, append([]string{"bench", "handshake", "--workers", strconv.Itoa(workers),
		"--duration", d.String(), "--warmup", "0s", "--json"}, p.benchFlags()...)...).Output()
	if err != nil {
		return rep, fmt.Errorf("bench handshake: %w: %s", err, out)
	}
	return rep, json.Unmarshal(out, &rep)
}

// handshakeReport is what `wsedge bench handshake --json` reports.
type handshakeReport struct {
	Handshakes int64   `json:"handshakes"`
	PerSec     float64 `json:"handshakes_per_s"`
	Failures   int64   `json:"failures"`
	FirstError string  `json:"first_error"`
	Latency    struct {
		P50 time.Duration `json:"p50_ns"`
		P99 time.Duration `json:"p99_ns"`
		Max time.Duration `json:"max_ns"`
	} `json:"latency"`
}

// silentClients is a child process holding connections that never send a
// byte: it has descriptors of its own, so that 10,000 of them fit beside
// everything this process holds.
type silentClients struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

// startSilentClients runs this test binary again as TestSilentClientsProcess,
// which opens n silent connections to addr.
func startSilentClients(t *testing.T, addr string, n int) *silentClients {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSilentClientsProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "WSEDGE_SILENT_TARGET="+addr, "WSEDGE_SILENT_CONNS="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := &silentClients{cmd: cmd, stdin: stdin, lines: make(chan string, 16)}
	go func() {
		defer close(sc.lines)
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			sc.lines <- s.Text()
		}
	}()
	t.Cleanup(func() {
		stdin.Close() // the child closes its connections and exits
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Error("the silent clients' process did not exit")
		}
	})
	return sc
}

// await returns the first line from the child that starts with prefix.
func (sc *silentClients) await(t *testing.T, prefix string, within time.Duration) string {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case line, ok := <-sc.lines:
			if !ok {
				t.Fatalf("the silent clients' process ended before saying %q", prefix)
			}
			if strings.HasPrefix(line, prefix) {
				return line
			}
		case <-deadline:
			t.Fatalf("the silent clients' process did not say %q within %v", prefix, within)
		}
	}
}

// TestSilentClientsProcess is the child process of
// TestAbuseLeavesLatencyAlone: it opens WSEDGE_SILENT_CONNS connections to
// WSEDGE_SILENT_TARGET that never send a byte, says "opened N" on stdout,
// then "closed N after D" once the proxy has cut them all, and closes what
// is left when its stdin ends.
func TestSilentClientsProcess(t *testing.T) {
	target := os.Getenv("WSEDGE_SILENT_TARGET")
	if target == "" {
		t.Skip("runs only as the child process of TestAbuseLeavesLatencyAlone")
	}
	n, err := strconv.Atoi(os.Getenv("WSEDGE_SILENT_CONNS"))
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, n)
	var failed atomic.Int64
	var dialing sync.WaitGroup
	for w := range 64 {
		dialing.Go(func() {
			for i := w; i < n; i += 64 {
				// Sources spread over 127.1.x.y, so that ports to the one
				// target never run short. Behind a balancer, the
				// balancer's PROXY header is all that is sent; over TLS,
				// not even a ClientHello.
				src := netip.AddrFrom4([4]byte{127, 1, byte(i / 250), byte(1 + i%250)})
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				c, err := e2e.dial(ctx, target, src)
				cancel()
				if err != nil {
					failed.Add(1)
					continue
				}
				conns[i] = c
			}
		})
	}
	dialing.Wait()
	opened := time.Now()
	fmt.Printf("opened %d failed %d\n", n-int(failed.Load()), failed.Load())

	var cut sync.WaitGroup
	for _, c := range conns {
		if c == nil {
			continue
		}
		cut.Go(func() { io.Copy(io.Discard, c) }) // ends when the proxy cuts it
	}
	allCut := make(chan struct{})
	go func() { cut.Wait(); close(allCut) }()
	select {
	case <-allCut:
		fmt.Printf("closed %d after %v\n", n-int(failed.Load()), time.Since(opened).Round(time.Millisecond))
		io.Copy(io.Discard, os.Stdin)
	case <-waitEOF(os.Stdin):
	}
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	<-allCut
}

// waitEOF returns a channel closed once r ends.
func waitEOF(r io.Reader) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, r)
		close(done)
	}()
	return done
}

// Three kinds of abuse, one after the other: 1,000 slowloris handshakes,
// 10,000 connections that never send a byte, and 2,000 clients (1,000 over
// TLS) starting handshakes at the same instant (and going on for a few
// seconds). Well-behaved
// clients keep working throughout, with their round-trip and handshake
// latency logged beside an unabused baseline; abusive connections are cut
// at handshake_timeout, a silent connection costs the proxy little
// memory, and the proxy ends where it began.
func TestAbuseLeavesLatencyAlone(t *testing.T) {
	const (
		slowlorisConns = 1000
		silentConns    = 10000
		window         = 2 * time.Second
		handshake      = 4 * time.Second
	)
	// An echo server in a process of its own, built without the race
	// detector: what the abuse costs is the proxy's, not the backend's.
	_, backend := echoProcess(t)
	p := startWsedge(t, fmt.Sprintf("[websocket]\nhandshake_timeout = %q\n\n[[upstream]]\naddress = %q\nweight = 1\n", handshake, backend))
	probe := startLatencyProbe(t, p, 8)
	probe.measureFor(200 * time.Millisecond) // warm up
	base := readResources(t, p)

	results := map[string]probeResult{}
	results["no abuse"] = probe.measureFor(window)

	stop := make(chan struct{})
	defer close(stop)
	lives := holdSlowloris(p, slowlorisConns, stop)
	results["1,000 slowloris"] = probe.measureFor(window)
	var longest time.Duration
	for range slowlorisConns {
		select {
		case life := <-lives:
			if life < 0 {
				t.Fatal("a slowloris connection could not connect")
			}
			longest = max(longest, life)
		case <-time.After(handshake + 5*time.Second):
			t.Fatalf("slowloris connections still open %v after handshake_timeout %v", handshake+5*time.Second, handshake)
		}
	}
	t.Logf("1,000 slowloris handshakes cut at most %v after they connected (handshake_timeout %v)", longest.Round(time.Millisecond), handshake)
	if longest > handshake+time.Second {
		t.Errorf("a slowloris connection lived %v, want about handshake_timeout (%v)", longest, handshake)
	}

	silent := startSilentClients(t, p.listen, silentConns)
	t.Logf("silent clients: %s", silent.await(t, "opened ", 60*time.Second))
	silentAt := time.Now()
	holding := readResources(t, p)
	results["10,000 silent"] = probe.measureFor(window)
	closed := silent.await(t, "closed ", handshake+15*time.Second)
	perConn := (holding.heap - base.heap) / silentConns
	t.Logf("silent clients: %s; the proxy held %v with them open, %d bytes of heap each", closed, holding, perConn)
	if !strings.HasPrefix(closed, fmt.Sprintf("closed %d ", silentConns)) {
		t.Errorf("silent clients: %s, want all %d opened and cut", closed, silentConns)
	}
	if took := time.Since(silentAt); took > handshake+5*time.Second {
		t.Errorf("silent connections cut %v after they were all open, want about handshake_timeout (%v)", took, handshake)
	}
	// A connection that has sent nothing needs no read buffer yet; the
	// net/http path holds 4 KiB and a goroutine for one.
	if perConn > 8<<10 {
		t.Errorf("each silent connection costs the proxy %d KiB of heap, want at most 8 KiB", perConn>>10)
	}

	// The first 2,000 handshakes start at the same instant; each client
	// then loops, so the proxy stays under that load for the whole window.
	done := make(chan struct{})
	burst := make(chan probeResult, 1)
	go func() { burst <- probe.measure(done) }()
	// Over TLS each handshake costs the proxy, and the clients beside it on
	// the same two cores, several times the CPU (about 600 a second here
	// in all): half the burst queues as long there as the whole one does
	// in plain TCP, well inside handshake_timeout.
	burstConns, burstWindow := 2000, 4*time.Second
	if e2e.name == modeTLS {
		burstConns = 1000
	}
	rep, err := benchHandshakes(p, burstConns, burstWindow)
	close(done)
	results["2,000 handshaking"] = <-burst
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d clients handshaking at once for %v: %d handshakes (%.0f/s), p50 %v, p99 %v, slowest %v; %d failed %s",
		burstConns, burstWindow, rep.Handshakes, rep.PerSec, rep.Latency.P50, rep.Latency.P99, rep.Latency.Max, rep.Failures, rep.FirstError)
	if rep.Failures > 0 || rep.Handshakes < int64(burstConns) {
		t.Errorf("%d handshakes, %d failed: want at least the first %d, and none failed", rep.Handshakes, rep.Failures, burstConns)
	}

	// Generous bounds: the abusers share the two cores with the proxy and
	// the probe, so some queueing is physics; a stall is not. Under 2,000
	// clients handshaking in a loop, a new connection waits its turn
	// behind them.
	baseRTT, baseHS := percentile(results["no abuse"].rtt, 99), percentile(results["no abuse"].handshake, 99)
	for _, ph := range []struct {
		name            string
		rttBound, hsMin time.Duration
	}{
		{"no abuse", time.Hour, time.Hour},
		{"1,000 slowloris", 100 * time.Millisecond, 250 * time.Millisecond},
		{"10,000 silent", 100 * time.Millisecond, 250 * time.Millisecond},
		{"2,000 handshaking", time.Second, 3 * time.Second},
	} {
		r := results[ph.name]
		t.Logf("well-behaved clients, %-19s %v", ph.name+":", r)
		for _, err := range r.errs[:min(len(r.errs), 3)] {
			t.Errorf("%s: a well-behaved client failed: %v", ph.name, err)
		}
		if got, bound := percentile(r.rtt, 99), max(10*baseRTT, ph.rttBound); got > bound {
			t.Errorf("%s: round-trip p99 %v, over %v (baseline p99 %v)", ph.name, got, bound, baseRTT)
		}
		if got, bound := percentile(r.handshake, 99), max(10*baseHS, ph.hsMin); got > bound {
			t.Errorf("%s: new-connection p99 %v, over %v (baseline p99 %v)", ph.name, got, bound, baseHS)
		}
	}
	waitResources(t, p, base, 2, 15*time.Second)
	waitMemoryBack(t, p, "after the abuse", base, 2<<20, 16<<20)
}

// gossipMembers is the proxy's count of live gossip members, from its
// metrics.
func gossipMembers(t *testing.T, p *proc) int {
	t.Helper()
	for _, line := range strings.Split(adminText(t, p, "/metrics"), "\n") {
		if v, ok := strings.CutPrefix(line, "wsedge_gossip_members "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metrics line %q", line)
			}
			return int(n)
		}
	}
	t.Fatal("no wsedge_gossip_members in the metrics")
	return 0
}

// waitGossipMembers waits until p counts n live gossip members and returns
// how long that took.
func waitGossipMembers(t *testing.T, p *proc, n int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := gossipMembers(t, p)
		if got == n {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%d gossip members after %v, want %d", got, within, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A proxy frozen long enough for the cluster to declare it dead (SIGSTOP:
// to the others it looks like a partition or a very long pause) misses a
// backend joining and another leaving. Thawed, it rejoins the cluster and
// converges to the ring of the proxy that never left, routing every key
// as it does.
func TestGossipPartitionedProxyRejoins(t *testing.T) {
	ports := []int{gossipPort(t), gossipPort(t)}
	frozen := gossipProxy(t, ports[0], "", ports[1])
	stayed := gossipProxy(t, ports[1], "", ports[0])
	proxies := []*proc{frozen, stayed}
	var addrs []string
	var agents []*proc
	for i := range 3 {
		b := upstreamtest.Start(t, upstreamtest.WithName(fmt.Sprintf("app%d", i)))
		addrs = append(addrs, b.Addr)
		agents = append(agents, startAgent(t, b.Addr, ports[i%2], "--health", b.URL()+"/healthz"))
	}
	waitRings(t, proxies, addrs, clusterWait)
	waitGossipMembers(t, stayed, 5, clusterWait)
	before := routes(t, proxies, clusterKeys(500))

	frozen.signal(t, syscall.SIGSTOP)
	t.Cleanup(func() { frozen.cmd.Process.Signal(syscall.SIGCONT) }) // so that it can be stopped
	took := waitGossipMembers(t, stayed, 4, clusterWait)
	t.Logf("frozen proxy declared dead by the cluster after %v", took.Round(time.Millisecond))

	// While it is away: a backend joins through the proxy that stayed, and
	// one leaves.
	late := upstreamtest.Start(t, upstreamtest.WithName("app3"))
	startAgent(t, late.Addr, ports[1], "--health", late.URL()+"/healthz")
	agents[0].signal(t, syscall.SIGTERM)
	if code := agents[0].waitExit(t, 10*time.Second); code != 0 {
		t.Fatalf("agent exit code %d", code)
	}
	want := []string{addrs[1], addrs[2], late.Addr}
	waitRings(t, []*proc{stayed}, want, clusterWait)

	frozen.signal(t, syscall.SIGCONT)
	thawed := time.Now()
	took = waitRings(t, proxies, want, 30*time.Second)
	waitGossipMembers(t, stayed, 5, 30*time.Second)
	back := time.Since(thawed)
	t.Logf("thawed proxy: same ring as the cluster after %v, counted alive again after %v", took.Round(time.Millisecond), back.Round(time.Millisecond))
	after := routes(t, proxies, clusterKeys(500))
	moved := 0
	for k, was := range before {
		if after[k] != was {
			moved++
			if was != addrs[0] && after[k] != late.Addr {
				t.Errorf("key %s moved from %s to %s: only the leaver's keys and the joiner's may move", k, was, after[k])
			}
		}
	}
	t.Logf("both proxies route 500 keys alike; %d moved (the leaver's, and the joiner's share)", moved)
}

// An agent that advertises a wrong address (another service's port, or
// one where nothing listens) while its own local check passes never
// brings clients there: the proxy's own health checks keep the address
// out of the ring, every client lands on the real backend, and the other
// service only ever sees health checks.
func TestGossipWrongAddressNeverGetsTraffic(t *testing.T) {
	port := gossipPort(t)
	p := gossipProxy(t, port, "")
	good := upstreamtest.Start(t, upstreamtest.WithName("good"))
	startAgent(t, good.Addr, port, "--health", good.URL()+"/healthz")
	waitRings(t, []*proc{p}, []string{good.Addr}, clusterWait)

	var mu sync.Mutex
	var seen []string // what reached the other service
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+" upgrade="+r.Header.Get("Upgrade"))
		mu.Unlock()
		http.NotFound(w, r) // another app: it has no /healthz
	}))
	defer other.Close()
	nothing := freePort(t)
	wrong := []string{strings.TrimPrefix(other.URL, "http://"), nothing}
	for _, addr := range wrong {
		// The agent checks the real backend, so it advertises itself alive.
		startAgent(t, addr, port, "--health", good.URL()+"/healthz")
	}

	// Known to the proxy, kept out of its ring.
	deadline := time.Now().Add(5 * time.Second)
	known := map[string]string{}
	for time.Now().Before(deadline) {
		if got := ringOf(t, p); !slices.Equal(got, []string{good.Addr}) {
			t.Fatalf("ring %v: a wrongly advertised address got in", got)
		}
		var ring struct {
			Members []struct {
				Addr, State string
				LastError   string `json:"last_error"`
			}
		}
		getJSON(t, "http://"+p.admin+"/debug/ring", &ring)
		for _, m := range ring.Members {
			if slices.Contains(wrong, m.Addr) {
				known[m.Addr] = m.State + ": " + m.LastError
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(known) != len(wrong) {
		t.Fatalf("the proxy knows %v of the wrong addresses %v: gossip did not reach it", known, wrong)
	}
	t.Logf("wrong addresses known and out of the ring for 5s: %v", known)

	for i := range 50 {
		c, _ := wsDial(t, p, "/", http.Header{"X-Client": {strconv.Itoa(i)}})
		if got := askName(t, c); got != "good" {
			t.Fatalf("client %d reached %q, want the real backend", i, got)
		}
		c.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	for _, s := range seen {
		if s != "GET /healthz upgrade=" {
			t.Errorf("the other service got %q: only health checks may reach it", s)
		}
	}
	t.Logf("the other service saw %d requests, all health checks", len(seen))
}

// A proxy out of file descriptors stops accepting for a moment rather than
// spinning on the error, keeps relaying for the clients it has, and takes
// the clients that queued meanwhile once descriptors are free again.
func TestOutOfDescriptorsRecovers(t *testing.T) {
	const live, queued = 10, 5
	b := upstreamtest.Start(t)
	p := startWsedge(t, upstreams(b))
	pid := p.cmd.Process.Pid
	warm, _ := wsDial(t, p, "/", nil)
	askName(t, warm)
	warm.Close()
	waitBackendConns(t, b, 0, 5*time.Second)

	var clients []*websocket.Conn
	for range live {
		c, _ := wsDial(t, p, "/", nil)
		askName(t, c)
		clients = append(clients, c)
	}
	// No descriptor to spare from now on: the limit bounds descriptor
	// numbers, and a new one takes the lowest free.
	var limit unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &limit); err != nil {
		t.Fatal(err)
	}
	limit.Cur = uint64(lowestFreeFD(t, pid))
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &limit, nil); err != nil {
		t.Fatal(err)
	}

	// These queue in the kernel: the proxy has no descriptor to take them.
	results := make(chan error, queued)
	for range queued {
		go func() {
			d := p.wsDialer(websocket.Dialer{HandshakeTimeout: 20 * time.Second})
			c, _, err := d.Dial(p.wsURL("/"), nil)
			if err != nil {
				results <- err
				return
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if err := c.WriteMessage(websocket.TextMessage, []byte("whoami")); err != nil {
				results <- err
				return
			}
			_, _, err = c.ReadMessage()
			results <- err
		}()
	}
	proxyCPU := func() time.Duration {
		d, err := bench.PIDs{pid}.CPU()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	before := proxyCPU()
	time.Sleep(1500 * time.Millisecond)
	spent := proxyCPU() - before
	t.Logf("out of descriptors for 1.5s with %d clients queued: %v of proxy CPU", queued, spent)
	if spent > 500*time.Millisecond {
		t.Errorf("the proxy used %v of CPU in 1.5s while out of descriptors: spinning on accept", spent)
	}
	if n := p.logs.count(`accept failed; retrying`); n == 0 {
		t.Error("no warning logged for the failing accepts")
	}
	select {
	case err := <-results:
		t.Fatalf("a queued client finished while the proxy had no descriptor: %v", err)
	default:
	}
	for _, c := range clients {
		askName(t, c) // the live clients go on
	}

	for _, c := range clients[:queued] {
		c.Close()
	}
	for range queued {
		select {
		case err := <-results:
			if err != nil {
				t.Errorf("queued client: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("queued clients were not served after descriptors came free")
		}
	}
	for _, c := range clients[queued:] {
		askName(t, c)
		c.Close()
	}
}

// lowestFreeFD is the descriptor number process pid would get next.
func lowestFreeFD(t *testing.T, pid int) int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	taken := map[int]bool{}
	for _, fd := range fds {
		n, _ := strconv.Atoi(fd.Name())
		taken[n] = true
	}
	n := 0
	for taken[n] {
		n++
	}
	return n
}
