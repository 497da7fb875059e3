package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// closeRecorder is a WebSocket backend that echoes, answers "whoami" with
// its name, and records the close code each connection ended with.
type closeRecorder struct {
	name  string
	srv   *httptest.Server
	mu    sync.Mutex
	codes map[int]int
}

func startCloseRecorder(t *testing.T, name string) *closeRecorder {
	t.Helper()
	r := &closeRecorder{name: name, codes: map[int]int{}}
	up := websocket.Upgrader{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !websocket.IsWebSocketUpgrade(req) {
			fmt.Fprintln(w, "ok") // health checks
			return
		}
		c, err := up.Upgrade(w, req, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			op, msg, err := c.ReadMessage()
			if err != nil {
				code := -1
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					code = ce.Code
				}
				r.mu.Lock()
				r.codes[code]++
				r.mu.Unlock()
				return
			}
			if string(msg) == "whoami" {
				msg = []byte(r.name)
			}
			c.WriteMessage(op, msg)
		}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *closeRecorder) addr() string { return strings.TrimPrefix(r.srv.URL, "http://") }

func (r *closeRecorder) closed(code int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.codes[code]
}

// closeOf waits for c to be closed and returns the code and reason it got,
// and when.
func closeOf(c *websocket.Conn, within time.Duration) (int, string, time.Time) {
	c.SetReadDeadline(time.Now().Add(within))
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code, ce.Text, time.Now()
			}
			return -1, err.Error(), time.Now()
		}
	}
}

// max_connection_age: clients that all connected within a second are
// closed with 1012 "max age" over the jitter window, never more than
// migrate_rate in any second, their backend told 1001; each reconnects to
// where the ring says (here, the backend it had).
func TestMaxConnectionAge(t *testing.T) {
	const n, rate = 300, 100
	a, b := startCloseRecorder(t, "a"), startCloseRecorder(t, "b")
	p := startWsedge(t, fmt.Sprintf("[health]\ntype = \"tcp\"\n[websocket]\nping_interval = \"0s\"\nmax_connection_age = \"4s\"\n"+
		"max_connection_age_jitter = 0.25\n[rebalance]\nmigrate_rate = %d\n[affinity]\nkey = \"header\"\nheader = \"X-User\"\n"+
		"[[upstream]]\naddress = %q\n[[upstream]]\naddress = %q\n", rate, a.addr(), b.addr()))
	start := time.Now()
	conns := dialMany(t, p, n, userHeader)
	owners := make([]string, n)
	for i, c := range conns {
		owners[i] = askName(t, c)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Logf("connecting took %v", took)
	}
	times := make([]time.Time, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	for i, c := range conns {
		wg.Go(func() {
			code, reason, at := closeOf(c, 20*time.Second)
			times[i] = at
			if code != 1012 || reason != "max age" {
				mu.Lock()
				bad = append(bad, fmt.Sprintf("client %d: %d %q", i, code, reason))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("%d clients not closed with 1012 \"max age\", e.g. %v", len(bad), bad[0])
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	first, last := times[0].Sub(start), times[n-1].Sub(start)
	t.Logf("%d closes from %v to %v after the first connect", n, first.Round(time.Millisecond), last.Round(time.Millisecond))
	if first < 2500*time.Millisecond {
		t.Errorf("first close %v after connecting: before its age (4s, -25%%)", first)
	}
	if last-first < 2*time.Second {
		t.Errorf("closes within %v: not spread over the jitter window", last-first)
	}
	// No second holds more than migrate_rate closes, give or take the
	// pacing's two ticks.
	for i, j := 0, 0; i < n; i++ {
		for times[i].Sub(times[j]) >= time.Second {
			j++
		}
		// Closes are timed as the clients see them, on a loaded machine:
		// a tenth more is scheduling, not pacing.
		if k := i - j + 1; k > rate+rate/10 {
			t.Fatalf("%d closes within one second, over migrate_rate %d", k, rate)
		}
	}
	waitUntil(t, 5*time.Second, func() bool { return a.closed(1001)+b.closed(1001) == n },
		"backends told 1001 for every aged connection")
	// The clients reconnect and land where the ring says: their backend.
	again := dialMany(t, p, n, userHeader)
	for i, c := range again[:50] {
		if got := askName(t, c); got != owners[i] {
			t.Errorf("client %d reconnected to %s, had %s and the ring did not change", i, got, owners[i])
		}
	}
	if v := counterValue(t, scrape(t, p), "wsedge_limits_total", "limit", "max_connection_age"); v < n {
		t.Errorf("wsedge_limits_total{limit=max_connection_age} = %v, want at least %d", v, n)
	}
}

// idle_timeout: a client that only answers the proxy's pings is closed
// with 1001 "idle", its backend too; one that sends data stays.
func TestIdleTimeout(t *testing.T) {
	r := startCloseRecorder(t, "r")
	p := startWsedge(t, fmt.Sprintf("[health]\ntype = \"tcp\"\n[websocket]\nping_interval = \"200ms\"\npong_timeout = \"150ms\"\n"+
		"idle_timeout = \"1500ms\"\n[[upstream]]\naddress = %q\n", r.addr()))
	d := p.wsDialer(websocket.Dialer{HandshakeTimeout: 5 * time.Second})
	quiet, _, err := d.Dial(p.wsURL("/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	busy, _, err := d.Dial(p.wsURL("/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	// The busy client sends a message every 300ms and reads all the while
	// (answering the proxy's pings as it does).
	stop := make(chan struct{})
	done := make(chan error, 2)
	go func() {
		for {
			busy.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, _, err := busy.ReadMessage(); err != nil {
				select {
				case <-stop:
				default:
					done <- err
				}
				return
			}
		}
	}()
	go func() {
		for {
			select {
			case <-stop:
				done <- nil
				return
			case <-time.After(300 * time.Millisecond):
			}
			busy.SetWriteDeadline(time.Now().Add(2 * time.Second))
			if err := busy.WriteMessage(websocket.TextMessage, []byte("still here")); err != nil {
				done <- err
				return
			}
		}
	}()
	pings := 0
	quiet.SetPingHandler(func(data string) error {
		pings++
		return quiet.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	started := time.Now()
	code, reason, at := closeOf(quiet, 10*time.Second)
	took := at.Sub(started)
	if code != 1001 || reason != "idle" {
		t.Fatalf("quiet client closed with %d %q after %v, want 1001 \"idle\"", code, reason, took)
	}
	if took < 1400*time.Millisecond || pings < 3 {
		t.Errorf("closed after %v and %d pings answered: the pongs should not count as activity, yet the close comes after idle_timeout", took, pings)
	}
	time.Sleep(time.Second) // the busy client lives on past the quiet one's end
	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("the client sending data was closed too: %v", err)
	}
	waitUntil(t, 5*time.Second, func() bool { return r.closed(1001) >= 1 }, "the backend told 1001")
}

// Client rate limits: a client over client_messages_per_second is slowed
// (its echoes come at about the rate), then, over it for rate_limit_grace,
// closed with 1008 "rate limit"; a client within it is left alone, and
// what the backend sends is never limited.
func TestClientRateLimit(t *testing.T) {
	r := startCloseRecorder(t, "r")
	p := startWsedge(t, fmt.Sprintf("[health]\ntype = \"tcp\"\n[websocket]\nping_interval = \"0s\"\n"+
		"[limits]\nclient_messages_per_second = 20\nclient_message_burst = 20\nrate_limit_grace = \"2s\"\n[[upstream]]\naddress = %q\n", r.addr()))
	d := p.wsDialer(websocket.Dialer{HandshakeTimeout: 5 * time.Second})
	fast, _, err := d.Dial(p.wsURL("/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	slow, _, err := d.Dial(p.wsURL("/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()

	// The fast client writes 1 KiB messages as fast as it can; count its
	// echoes.
	echoes := make(chan time.Time, 100000)
	msg := make([]byte, 1024)
	go func() {
		for {
			fast.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if fast.WriteMessage(websocket.BinaryMessage, msg) != nil {
				return
			}
		}
	}()
	start := time.Now()
	code, reason := 0, ""
	for {
		fast.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _, err := fast.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				code, reason = ce.Code, ce.Text
			}
			break
		}
		echoes <- time.Now()
	}
	took := time.Since(start)
	n := len(echoes)
	t.Logf("the fast client got %d echoes in %v before its close (%d %q)", n, took.Round(time.Millisecond), code, reason)
	if code != 1008 || reason != "rate limit" {
		t.Fatalf("fast client closed with %d %q, want 1008 \"rate limit\"", code, reason)
	}
	if took < 1800*time.Millisecond {
		t.Errorf("closed after %v, before rate_limit_grace (2s)", took)
	}
	// 20 of burst plus 20 a second, and what one read (32 KiB, 32
	// messages) took in beyond the bucket after each pause.
	if limit := 20 + int(took.Seconds()*20) + 4*32; n > limit {
		t.Errorf("%d echoes in %v: not slowed to about 20 a second", n, took)
	}
	// The slow client, within its rate, is untouched.
	for i := range 10 {
		slow.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if err := slow.WriteMessage(websocket.TextMessage, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		slow.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, _, err := slow.ReadMessage(); err != nil {
			t.Fatalf("slow client, message %d: %v", i, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	fams := scrape(t, p)
	if v := counterValue(t, fams, "wsedge_limits_total", "limit", "client_rate_closed"); v != 1 {
		t.Errorf("wsedge_limits_total{limit=client_rate_closed} = %v, want 1", v)
	}
	if v := counterValue(t, fams, "wsedge_limits_total", "limit", "client_rate_slowed"); v < 1 {
		t.Errorf("wsedge_limits_total{limit=client_rate_slowed} = %v, want at least 1", v)
	}
}

// handshakes_per_second_per_ip: a client address opening WebSockets in a
// loop gets 429 with Retry-After beyond its burst, others do not; the
// limit comes with a reload, for new handshakes.
func TestHandshakeRateLimit(t *testing.T) {
	r := startCloseRecorder(t, "r")
	base := fmt.Sprintf("[health]\ntype = \"tcp\"\n[[upstream]]\naddress = %q\n", r.addr())
	p := startWsedge(t, base)
	d := p.wsDialer(websocket.Dialer{HandshakeTimeout: 5 * time.Second})
	dial := func() int {
		c, res, err := d.Dial(p.wsURL("/"), nil)
		if err == nil {
			c.Close()
			return http.StatusSwitchingProtocols
		}
		if res == nil {
			t.Fatal(err)
		}
		if res.StatusCode == http.StatusTooManyRequests && res.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
		return res.StatusCode
	}
	for range 10 {
		if got := dial(); got != http.StatusSwitchingProtocols {
			t.Fatalf("without a limit: %d", got)
		}
	}
	writeConfig(t, p.cfgPath, base+"[limits]\nhandshakes_per_second_per_ip = 2\nhandshake_burst_per_ip = 5\n")
	p.signal(t, syscall.SIGHUP)
	p.logs.wait(t, "config reloaded", 5*time.Second)
	statuses := map[int]int{}
	for range 12 {
		statuses[dial()]++
	}
	if statuses[http.StatusSwitchingProtocols] < 5 || statuses[http.StatusSwitchingProtocols] > 7 || statuses[http.StatusTooManyRequests] < 5 {
		t.Errorf("12 quick handshakes after the reload: %v; want the burst of 5 (and a token or two) through, the rest 429", statuses)
	}
	if v := counterValue(t, scrape(t, p), "wsedge_limits_total", "limit", "handshakes_per_second_per_ip"); v < 5 {
		t.Errorf("wsedge_limits_total{limit=handshakes_per_second_per_ip} = %v", v)
	}
}

// waitUntil polls cond until it holds or within passes.
func waitUntil(t *testing.T, within time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
