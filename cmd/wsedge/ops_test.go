package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pires/go-proxyproto"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

// dialMany opens n WebSockets to p, a few at a time, the i-th with
// header(i), and closes them at cleanup. It fails the test on the first
// handshake that does not succeed.
func dialMany(t *testing.T, p *proc, n int, header func(i int) http.Header) []*websocket.Conn {
	t.Helper()
	conns := make([]*websocket.Conn, n)
	errs := make([]error, n)
	d := p.wsDialer(websocket.Dialer{HandshakeTimeout: 10 * time.Second})
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			c, res, err := d.Dial(p.wsURL("/"), header(i))
			if err != nil {
				if res != nil {
					err = fmt.Errorf("%w (status %d)", err, res.StatusCode)
				}
				errs[i] = err
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("client %d of %d: %v", i, n, err)
		}
	}
	return conns
}

// userHeader is the routing key of client i when affinity.key = "header".
func userHeader(i int) http.Header {
	return http.Header{"X-User": {fmt.Sprintf("user-%d", i)}}
}

// echoer keeps one connection busy with rounds of numbered messages, a few
// in flight at once, and checks that every echo comes back whole and in
// order.
type echoer struct {
	c      *websocket.Conn
	id     int
	sent   int
	echoed int
	maxRTT time.Duration // longest wait for a round's echoes
	pings  atomic.Int64  // the proxy's pings seen
	err    error
}

// echoPipeline is how many messages a client has in flight per round.
const echoPipeline = 3

func newEchoer(c *websocket.Conn, id int) *echoer {
	e := &echoer{c: c, id: id}
	c.SetPingHandler(func(data string) error {
		e.pings.Add(1)
		return c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(5*time.Second))
	})
	return e
}

func (e *echoer) message(seq int) string { return fmt.Sprintf("client %d message %d", e.id, seq) }

// run sends rounds every pace until stop is closed, and returns after the
// last round's echoes are in, or at the first error.
func (e *echoer) run(stop <-chan struct{}, pace time.Duration) {
	for {
		start := time.Now()
		e.c.SetWriteDeadline(start.Add(10 * time.Second))
		for range echoPipeline {
			if err := e.c.WriteMessage(websocket.TextMessage, []byte(e.message(e.sent))); err != nil {
				e.err = fmt.Errorf("client %d: sending message %d: %w", e.id, e.sent, err)
				return
			}
			e.sent++
		}
		e.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for e.echoed < e.sent {
			_, got, err := e.c.ReadMessage()
			if err != nil {
				e.err = fmt.Errorf("client %d: echo of message %d: %w", e.id, e.echoed, err)
				return
			}
			if want := e.message(e.echoed); string(got) != want {
				e.err = fmt.Errorf("client %d: got %q, want %q: a message was lost or reordered", e.id, got, want)
				return
			}
			e.echoed++
		}
		e.maxRTT = max(e.maxRTT, time.Since(start))
		select {
		case <-stop:
			return
		case <-time.After(pace):
		}
	}
}

// waitPing reads c until the proxy pings it, and reports whether that
// happened within d. It closes c.
func waitPing(c *websocket.Conn, d time.Duration) bool {
	pinged := make(chan struct{}, 1)
	c.SetPingHandler(func(data string) error {
		select {
		case pinged <- struct{}{}:
		default:
		}
		return c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	c.SetReadDeadline(time.Now().Add(d))
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	}()
	defer func() { c.Close(); <-ended }()
	select {
	case <-pinged:
		return true
	case <-ended:
		return false
	}
}

// A thousand connections relay numbered messages while SIGHUP applies a
// config with a new ping_interval and an added backend: none is dropped,
// no message is lost or reordered, the live connections stay where they
// are (on_add = "keep") and keep their settings, new clients reach the new
// backend and get the new settings. A broken file then changes nothing,
// and says so in the log and in the metrics.
func TestReloadUnderLoad(t *testing.T) {
	const clients = 1000
	first := upstreamtest.Start(t, upstreamtest.WithName("first"))
	second := upstreamtest.Start(t, upstreamtest.WithName("second"))
	cfg := func(ping string, bs ...*upstreamtest.Backend) string {
		return fmt.Sprintf("[affinity]\nkey = \"header\"\nheader = \"X-User\"\n"+
			"[rebalance]\non_add = \"keep\"\nmigrate_rate = 5000\n"+
			"[websocket]\nping_interval = %q\npong_timeout = \"5s\"\n%s", ping, upstreams(bs...))
	}
	p := startWsedge(t, cfg("0s", first))

	start := time.Now()
	conns := dialMany(t, p, clients, userHeader)
	t.Logf("%d connections open in %v", clients, time.Since(start).Round(time.Millisecond))
	echoers := make([]*echoer, clients)
	for i, c := range conns {
		echoers[i] = newEchoer(c, i)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, e := range echoers {
		wg.Go(func() { e.run(stop, 200*time.Millisecond) })
	}
	// Whatever happens below, the clients stop before the test ends.
	stopped := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopped()

	traffic := time.Now()
	time.Sleep(500 * time.Millisecond)
	writeConfig(t, p.cfgPath, cfg("200ms", first, second))
	hup := time.Now()
	p.signal(t, syscall.SIGHUP)
	p.logs.wait(t, `"msg":"config reloaded"`, 10*time.Second)
	t.Logf("SIGHUP to \"config reloaded\" under load: %v", time.Since(hup).Round(time.Millisecond))
	time.Sleep(time.Second)
	stopped()

	sent, maxRTT, pinged := 0, time.Duration(0), 0
	for _, e := range echoers {
		if e.err != nil {
			t.Errorf("%v", e.err)
		}
		sent += e.sent
		maxRTT = max(maxRTT, e.maxRTT)
		if e.pings.Load() > 0 {
			pinged++
		}
	}
	t.Logf("%d messages echoed over %d connections across the reload (%.0f/s each way); slowest round %v",
		sent, clients, float64(sent)/time.Since(traffic).Seconds(), maxRTT.Round(time.Millisecond))
	t.Logf("live connections pinged after ping_interval went from 0s to 200ms: %d of %d", pinged, clients)
	if pinged > 0 {
		t.Errorf("%d live connections pinged after the reload: a reload applies to new connections only", pinged)
	}
	if t.Failed() {
		t.FailNow()
	}
	if n := first.Conns(); n != clients {
		t.Fatalf("first backend has %d connections after the reload, want all %d", n, clients)
	}
	for _, i := range []int{0, clients / 2, clients - 1} {
		if got := askName(t, conns[i]); got != "first" {
			t.Fatalf("live client %d now on %q: on_add = \"keep\" must leave it on first", i, got)
		}
	}

	// New clients: about half of them own the added backend now, and
	// they are pinged at the new interval.
	onSecond := 0
	for i := clients; i < clients+40; i++ {
		c, _ := wsDial(t, p, "/", userHeader(i))
		if askName(t, c) == "second" {
			onSecond++
		}
		c.Close()
	}
	t.Logf("new clients on the added backend: %d of 40", onSecond)
	if onSecond == 0 {
		t.Fatal("no new client reached the added backend")
	}
	fresh, _ := wsDial(t, p, "/", userHeader(-1))
	if !waitPing(fresh, 2*time.Second) {
		t.Fatal("a new client was not pinged within 2s: the reloaded ping_interval (200ms) does not apply")
	}

	// A broken file: the reload fails, is logged and counted, and the
	// running config stays, ping_interval and both backends included.
	writeConfig(t, p.cfgPath, cfg("soon", second))
	p.signal(t, syscall.SIGHUP)
	p.logs.wait(t, `"msg":"config reload failed; keeping the running config"`, 10*time.Second, "websocket.ping_interval")
	// The only connections that ended are the new clients, which this
	// test closed itself; the proxy may take a moment to notice the last.
	const ended = 40 + 1
	fams := scrape(t, p)
	for deadline := time.Now().Add(5 * time.Second); sumOf(fams, "wsedge_closes_total") < ended && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		fams = scrape(t, p)
	}
	if got := sumOf(fams, "wsedge_closes_total"); got != ended {
		t.Errorf("wsedge_closes_total adds up to %v, want %d: live connections ended", got, ended)
	}
	if got := counterValue(t, fams, "wsedge_config_reloads_total", "result", "failed"); got != 1 {
		t.Errorf("wsedge_config_reloads_total{result=\"failed\"} = %v, want 1", got)
	}
	if got := counterValue(t, fams, "wsedge_config_reloads_total", "result", "ok"); got != 1 {
		t.Errorf("wsedge_config_reloads_total{result=\"ok\"} = %v, want 1", got)
	}
	if got := gaugeValue(t, fams, "wsedge_connections", "backend", first.Addr); got != clients {
		t.Errorf("wsedge_connections{backend=first} = %v, want %d", got, clients)
	}
	if got := ringOf(t, p); !slices.Equal(got, slices.Sorted(slices.Values([]string{first.Addr, second.Addr}))) {
		t.Errorf("ring after a broken reload = %v, want both backends still", got)
	}
	if n := first.Conns(); n != clients {
		t.Errorf("first backend has %d connections after a broken reload, want %d", n, clients)
	}
	for _, i := range []int{1, clients / 3, clients - 2} {
		if got := askName(t, conns[i]); got != "first" {
			t.Errorf("live client %d on %q after a broken reload", i, got)
		}
	}
	fresh, _ = wsDial(t, p, "/", userHeader(-2))
	if !waitPing(fresh, 2*time.Second) {
		t.Error("after a broken reload new clients are no longer pinged: the running config changed")
	}
}

// clientEnd says how a client's connection ended, as the client saw it: a
// close code, "reset" for a bare TCP reset, or the error.
func clientEnd(err error) string {
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce):
		return fmt.Sprint(ce.Code) // 1006: the connection ended without a close frame
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "still open"
	}
	return err.Error()
}

// SIGTERM with a thousand live connections: /readyz turns 503 at once,
// every client gets a 1001 close frame (none a bare reset), paced at
// migrate_rate, and the process exits 0 within shutdown_timeout.
func TestGracefulShutdownOf1000Connections(t *testing.T) {
	const (
		clients = 1000
		rate    = 500
	)
	b := upstreamtest.Start(t)
	p := startWsedge(t, fmt.Sprintf("shutdown_timeout = \"20s\"\n[rebalance]\nmigrate_rate = %d\n%s", rate, upstreams(b)))
	conns := dialMany(t, p, clients, func(int) http.Header { return nil })
	for _, c := range conns[:10] {
		askName(t, c)
	}
	if status, _ := adminGet(t, p, "/readyz"); status != http.StatusOK {
		t.Fatalf("/readyz %d before shutdown, want 200", status)
	}

	type end struct {
		how string
		at  time.Time
	}
	ends := make([]end, clients)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					ends[i] = end{clientEnd(err), time.Now()}
					return
				}
			}
		})
	}
	sigterm := time.Now()
	p.signal(t, syscall.SIGTERM)

	// A load balancer polls /readyz; it must see 503 while the
	// connections are still being closed.
	var status int
	var body string
	for range 100 {
		if status, body = adminGet(t, p, "/readyz"); status != http.StatusOK {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	notReady := time.Now()
	code := p.waitExit(t, 25*time.Second)
	exited := time.Since(sigterm)
	wg.Wait()

	hows := map[string]int{}
	first, last := ends[0].at, ends[0].at
	for _, e := range ends {
		hows[e.how]++
		first, last = minTime(first, e.at), maxTime(last, e.at)
	}
	t.Logf("/readyz answered %d %q %v after SIGTERM, %v before the last client was closed",
		status, strings.TrimSpace(body), notReady.Sub(sigterm).Round(time.Millisecond), last.Sub(notReady).Round(time.Millisecond))
	if status != http.StatusServiceUnavailable || !notReady.Before(last) {
		t.Errorf("/readyz during shutdown: %d, want 503 while connections are being closed", status)
	}
	t.Logf("%d clients ended: %v; closes spread over %v (migrate_rate %d/s); exit code %d after %v",
		clients, hows, last.Sub(first).Round(time.Millisecond), rate, code, exited.Round(time.Millisecond))
	if hows["1001"] != clients {
		t.Errorf("clients ended %v, want all %d with 1001", hows, clients)
	}
	if hows["reset"] > 0 {
		t.Errorf("%d clients saw a bare TCP reset", hows["reset"])
	}
	if spread, want := last.Sub(first), time.Duration(clients/rate-1)*time.Second; spread < want {
		t.Errorf("closes spread over %v, want at least %v: migrate_rate %d/s paces shutdown", spread, want, rate)
	}
	if code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if exited > 20*time.Second {
		t.Errorf("exited %v after SIGTERM, beyond shutdown_timeout 20s", exited)
	}
	if n := p.logs.count(`"msg":"connection closed"`, `"close_code":1001`, `"cause":"proxy_shutting_down"`); n != clients {
		t.Errorf("%d access log lines with 1001 proxy_shutting_down, want %d", n, clients)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.WaitConns(ctx, 0); err != nil {
		t.Errorf("backend connections left after shutdown: %v", err)
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Shutdown is bounded: clients that never answer the close handshake are
// cut when shutdown_timeout runs out, even with closes paced slowly; a
// second signal does not wait at all and exits 1.
func TestShutdownBounded(t *testing.T) {
	tests := []struct {
		name       string
		secondSig  bool
		wantCode   int
		wantWithin time.Duration
	}{
		{"shutdown_timeout cuts the rest", false, 0, 2*time.Second + 2*time.Second},
		{"second signal exits at once", true, 1, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := upstreamtest.Start(t)
			p := startWsedge(t, "shutdown_timeout = \"2s\"\n[rebalance]\nmigrate_rate = 5\n"+upstreams(b))
			// 50 clients at 5 closes a second would take 10s; none of
			// them reads, so none answers a close frame either.
			dialMany(t, p, 50, func(int) http.Header { return nil })
			p.signal(t, syscall.SIGTERM)
			p.logs.wait(t, `"msg":"shutting down"`, 5*time.Second)
			start := time.Now()
			if tt.secondSig {
				time.Sleep(200 * time.Millisecond) // the handler is armed once "shutting down" is logged
				start = time.Now()
				p.signal(t, syscall.SIGTERM)
			}
			code := p.waitExit(t, 10*time.Second)
			took := time.Since(start)
			t.Logf("exit code %d %v after the last signal", code, took.Round(time.Millisecond))
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d", code, tt.wantCode)
			}
			if took > tt.wantWithin {
				t.Errorf("exited %v after the last signal, want within %v", took, tt.wantWithin)
			}
		})
	}
}

// adminGet fetches path from p's admin listener and returns the status and
// body.
func adminGet(t *testing.T, p *proc, path string) (int, string) {
	t.Helper()
	return httpGet(t, "http://"+p.admin+path, nil)
}

// httpGet fetches url with header h and returns the status and body.
func httpGet(t *testing.T, url string, h http.Header) (int, string) {
	t.Helper()
	res := httpDo(t, url, h)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return res.StatusCode, string(body)
}

// httpDo sends a GET to url with header h, on a connection of its own.
func httpDo(t *testing.T, url string, h http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h
	req.Close = true
	c := http.Client{Timeout: 5 * time.Second}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return res
}

// scrape reads p's /metrics with the Prometheus text parser.
func scrape(t *testing.T, p *proc) map[string]*dto.MetricFamily {
	t.Helper()
	res := httpDo(t, "http://"+p.admin+"/metrics", nil)
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", res.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// sampleOf returns the value of the sample of family name whose labels
// include labels (name, value pairs), and whether there is one.
func sampleOf(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	mf, ok := fams[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			if !hasLabel(m, labels[i], labels[i+1]) {
				continue next
			}
		}
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		case m.GetUntyped() != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// sumOf adds up every sample of a counter family.
func sumOf(fams map[string]*dto.MetricFamily, name string) float64 {
	sum := 0.0
	for _, m := range fams[name].GetMetric() {
		sum += m.GetCounter().GetValue()
	}
	return sum
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue() == value
		}
	}
	return false
}

// counterValue is a labelled counter's value; a label combination never
// counted reads 0, as Prometheus's rate() treats it.
func counterValue(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	if _, ok := fams[name]; !ok {
		t.Fatalf("/metrics has no %s", name)
	}
	v, _ := sampleOf(fams, name, labels...)
	return v
}

// gaugeValue is a gauge's value; it must be there.
func gaugeValue(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	v, ok := sampleOf(fams, name, labels...)
	if !ok {
		t.Fatalf("/metrics has no %s with labels %v", name, labels)
	}
	return v
}

// rawExchange writes head on a fresh connection to p and returns the
// status line of the answer ("" when the connection ended without one).
func rawExchange(t *testing.T, p *proc, head string) string {
	t.Helper()
	conn, err := p.dialRaw(t.Context(), netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	// The proxy may answer and hang up before the whole head is in (one
	// too large, say), and the write fail: over TLS the head goes in
	// records, and the connection can end between two. The answer, if
	// any, is there to read all the same.
	io.WriteString(conn, head)
	line, _ := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimSpace(line)
}

// A scrape of /metrics, parsed as Prometheus parses it, adds up to what the
// clients did: handshakes by result, live connections per backend, closes
// by code and cause, frames and bytes relayed each way, the ring.
func TestMetricsMatchTraffic(t *testing.T) {
	first := upstreamtest.Start(t, upstreamtest.WithName("first"))
	second := upstreamtest.Start(t, upstreamtest.WithName("second"))
	p := startWsedge(t, "[affinity]\nkey = \"header\"\nheader = \"X-User\"\n"+
		"[websocket]\nping_interval = \"0s\"\nallowed_origins = [\"https://app.example\"]\n"+upstreams(first, second))

	const opened, closed, messages = 10, 6, 5
	conns := dialMany(t, p, opened, userHeader)
	payload := 0
	for i, c := range conns {
		for m := range messages {
			// Under 126 bytes: a 2-byte frame header, plus the 4-byte
			// mask key on frames from the client (RFC 6455 section 5.2).
			msg := strings.Repeat("x", 10*i+m+1)
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			if _, got, err := c.ReadMessage(); err != nil || string(got) != msg {
				t.Fatalf("echo %q, %v", got, err)
			}
			payload += len(msg)
		}
	}
	for _, c := range conns[:closed] {
		c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"), time.Now().Add(time.Second))
		if got := closeCodeOf(t, c, 5*time.Second); got != websocket.CloseNormalClosure {
			t.Fatalf("close answered with %d, want 1000", got)
		}
	}
	const denied = 2
	for range denied {
		_, res, err := p.wsDialer(*websocket.DefaultDialer).Dial(p.wsURL("/"), http.Header{"Origin": {"https://evil.example"}})
		if err == nil || res == nil || res.StatusCode != http.StatusForbidden {
			t.Fatalf("foreign origin: %v, %v", err, res)
		}
	}
	if got := rawExchange(t, p, upgradeHead("Sec-WebSocket-Version: 7\r\n")); !strings.HasPrefix(got, "HTTP/1.1 426") {
		t.Fatalf("version 7 answered %q, want 426", got)
	}
	for deadline := time.Now().Add(5 * time.Second); first.Conns()+second.Conns() != opened-closed; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("backends hold %d connections 5s after %d of %d closed", first.Conns()+second.Conns(), closed, opened)
		}
	}

	fams := scrape(t, p)
	tests := []struct {
		name   string
		got    float64
		want   float64
		labels []string
	}{
		{"wsedge_handshakes_total", counterValue(t, fams, "wsedge_handshakes_total", "result", "ok"), opened, []string{"result", "ok"}},
		{"wsedge_handshakes_total", counterValue(t, fams, "wsedge_handshakes_total", "result", "origin_denied"), denied, []string{"result", "origin_denied"}},
		{"wsedge_handshakes_total", counterValue(t, fams, "wsedge_handshakes_total", "result", "bad_request"), 1, []string{"result", "bad_request"}},
		{"wsedge_handshakes_total", counterValue(t, fams, "wsedge_handshakes_total", "result", "over_limit"), 0, []string{"result", "over_limit"}},
		{"wsedge_connections", gaugeValue(t, fams, "wsedge_connections", "backend", first.Addr), float64(first.Conns()), []string{"backend", "first"}},
		{"wsedge_connections", gaugeValue(t, fams, "wsedge_connections", "backend", second.Addr), float64(second.Conns()), []string{"backend", "second"}},
		{"wsedge_closes_total", counterValue(t, fams, "wsedge_closes_total", "code", "1000", "cause", "client_closed"), closed, []string{"code", "1000", "cause", "client_closed"}},
		// Every message and the client's close frame go up; every echo
		// and the backend's answering close come down.
		{"wsedge_frames_relayed_total", counterValue(t, fams, "wsedge_frames_relayed_total", "direction", "client_to_backend"), opened*messages + closed, []string{"direction", "client_to_backend"}},
		{"wsedge_frames_relayed_total", counterValue(t, fams, "wsedge_frames_relayed_total", "direction", "backend_to_client"), opened*messages + closed, []string{"direction", "backend_to_client"}},
		// Client close frames: 6 header bytes, code and "bye"; backend
		// close frames: 2 header bytes and the code alone.
		{"wsedge_bytes_relayed_total", counterValue(t, fams, "wsedge_bytes_relayed_total", "direction", "client_to_backend"), float64(payload + opened*messages*6 + closed*(6+2+3)), []string{"direction", "client_to_backend"}},
		{"wsedge_bytes_relayed_total", counterValue(t, fams, "wsedge_bytes_relayed_total", "direction", "backend_to_client"), float64(payload + opened*messages*2 + closed*(2+2)), []string{"direction", "backend_to_client"}},
		{"wsedge_ring_backends", gaugeValue(t, fams, "wsedge_ring_backends"), 2, nil},
		{"wsedge_backend_up", gaugeValue(t, fams, "wsedge_backend_up", "backend", first.Addr, "state", "healthy"), 1, []string{"backend", "first"}},
		{"wsedge_backend_up", gaugeValue(t, fams, "wsedge_backend_up", "backend", second.Addr, "state", "healthy"), 1, []string{"backend", "second"}},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, tt.got, tt.want)
		}
	}
	t.Logf("live: first %d, second %d; %d payload bytes echoed", first.Conns(), second.Conns(), payload)
	if v, ok := sampleOf(fams, "wsedge_affinity_misses_total"); ok && v != 0 {
		t.Errorf("wsedge_affinity_misses_total = %v with no route cookie in play", v)
	}
	for _, name := range []string{"wsedge_handshakes_total", "wsedge_closes_total", "wsedge_frames_relayed_total", "wsedge_bytes_relayed_total"} {
		if typ := fams[name].GetType(); typ != dto.MetricType_COUNTER {
			t.Errorf("%s is a %v, want a counter", name, typ)
		}
	}
	if _, ok := fams["process_open_fds"]; !ok {
		t.Error("/metrics lacks the process collector (process_open_fds)")
	}
}

// upgradeHead is a WebSocket upgrade request head for "/" with extra header
// lines, which replace the default version line when they set one.
func upgradeHead(extra string) string {
	version := "Sec-WebSocket-Version: 13\r\n"
	if strings.Contains(extra, "Sec-WebSocket-Version") {
		version = ""
	}
	return "GET / HTTP/1.1\r\nHost: wsedge.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" + version + extra + "\r\n"
}

// max_connections answers 503 and max_connections_per_ip 429, both with a
// Retry-After; the refused handshakes never reach a backend, and a slot
// freed by a closed connection is taken again.
func TestConnectionLimits(t *testing.T) {
	b := upstreamtest.Start(t)
	p := startWsedge(t, "[affinity]\ntrusted_proxies = [\"127.0.0.1/32\"]\n"+
		"[limits]\nmax_connections = 3\nmax_connections_per_ip = 2\n"+upstreams(b))
	steps := []struct {
		name string
		give string // the client's IP, by X-Forwarded-For from a trusted peer
		want int
	}{
		{"first from A", "198.51.100.1", http.StatusSwitchingProtocols},
		{"second from A", "198.51.100.1", http.StatusSwitchingProtocols},
		{"third from A, over the per-IP limit", "198.51.100.1", http.StatusTooManyRequests},
		{"first from B", "198.51.100.2", http.StatusSwitchingProtocols},
		{"first from C, over the total limit", "198.51.100.3", http.StatusServiceUnavailable},
	}
	var live []*websocket.Conn
	for _, tt := range steps {
		c, res, err := p.wsDialer(*websocket.DefaultDialer).Dial(p.wsURL("/"), http.Header{"X-Forwarded-For": {tt.give}})
		if res == nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if c != nil {
			t.Cleanup(func() { c.Close() })
			live = append(live, c)
		}
		if res.StatusCode != tt.want {
			t.Fatalf("%s: status %d, want %d", tt.name, res.StatusCode, tt.want)
		}
		if tt.want != http.StatusSwitchingProtocols {
			if ra := res.Header.Get("Retry-After"); ra == "" || strings.Trim(ra, "0123456789") != "" {
				t.Errorf("%s: Retry-After %q, want a number of seconds", tt.name, ra)
			}
		}
	}
	if n := len(b.Handshakes()); n != 3 {
		t.Errorf("backend saw %d handshakes, want only the 3 admitted", n)
	}

	live[0].WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	closeCodeOf(t, live[0], 5*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for {
		var conns []json.RawMessage
		getJSON(t, "http://"+p.admin+"/debug/connections", &conns)
		if len(conns) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d live connections listed 5s after one of 3 closed", len(conns))
		}
		time.Sleep(20 * time.Millisecond)
	}
	c, _ := wsDial(t, p, "/", http.Header{"X-Forwarded-For": {"198.51.100.3"}})
	if got := askName(t, c); got != b.Name {
		t.Fatalf("client C on %q after a slot freed", got)
	}
	if got := counterValue(t, scrape(t, p), "wsedge_handshakes_total", "result", "over_limit"); got != 2 {
		t.Errorf("wsedge_handshakes_total{result=\"over_limit\"} = %v, want 2", got)
	}
}

// allowed_origins turns away, with 403, browsers from any other origin;
// such a handshake never reaches the backend. Non-browser clients, which
// send no Origin, are not concerned.
func TestAllowedOrigins(t *testing.T) {
	b := upstreamtest.Start(t)
	p := startWsedge(t, "[websocket]\nallowed_origins = [\"https://app.example\", \"https://admin.app.example\"]\n"+upstreams(b))
	tests := []struct {
		name string
		give string // Origin
		want int
	}{
		{"listed", "https://app.example", http.StatusSwitchingProtocols},
		{"second listed", "https://admin.app.example", http.StatusSwitchingProtocols},
		{"no Origin", "", http.StatusSwitchingProtocols},
		{"foreign", "https://evil.example", http.StatusForbidden},
		{"other scheme", "http://app.example", http.StatusForbidden},
		{"listed as a prefix", "https://app.example.evil.example", http.StatusForbidden},
		{"other port", "https://app.example:8443", http.StatusForbidden},
		{"null", "null", http.StatusForbidden},
	}
	admitted := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.give != "" {
				h.Set("Origin", tt.give)
			}
			c, res, err := p.wsDialer(*websocket.DefaultDialer).Dial(p.wsURL("/"), h)
			if res == nil {
				t.Fatalf("dial: %v", err)
			}
			if c != nil {
				defer c.Close()
				admitted++
			}
			if res.StatusCode != tt.want {
				t.Errorf("Origin %q: status %d, want %d", tt.give, res.StatusCode, tt.want)
			}
		})
	}
	if n := len(b.Handshakes()); n != admitted {
		t.Errorf("backend saw %d handshakes, want only the %d admitted", n, admitted)
	}
}

// slowloris sends a request head a byte every 100ms, never finishing it,
// and returns how long the proxy let it go on before ending the connection
// (10s when it never did), and the status line it answered with, if any.
func slowloris(t *testing.T, p *proc) (time.Duration, string) {
	t.Helper()
	conn, err := p.dialRaw(t.Context(), netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	done := make(chan struct{})
	dribbled := make(chan struct{})
	go func() {
		defer close(dribbled)
		head := upgradeHead("")
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < len(head)-2; i++ { // never the final CRLF
			if _, err := conn.Write([]byte{head[i]}); err != nil {
				return
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	defer func() { close(done); <-dribbled }()
	conn.SetReadDeadline(start.Add(10 * time.Second))
	answer, _ := io.ReadAll(conn)
	status, _, _ := strings.Cut(string(answer), "\r\n")
	return time.Since(start), status
}

// A client dribbling its request head is cut at handshake_timeout while
// another client is served; a reload that changes handshake_timeout
// applies to the next ones.
func TestSlowlorisCutAtHandshakeTimeout(t *testing.T) {
	b := upstreamtest.Start(t)
	cfg := func(timeout string) string {
		return fmt.Sprintf("[websocket]\nhandshake_timeout = %q\n%s", timeout, upstreams(b))
	}
	p := startWsedge(t, cfg("1s"))
	good, _ := wsDial(t, p, "/", nil)

	measure := func() []time.Duration {
		cuts := make([]time.Duration, 3)
		answers := make([]string, len(cuts))
		var wg sync.WaitGroup
		for i := range cuts {
			wg.Go(func() { cuts[i], answers[i] = slowloris(t, p) })
		}
		wg.Wait()
		for _, a := range answers {
			// Being cut without a word is fine; being answered anything
			// but a client error is not.
			if a != "" && !strings.HasPrefix(a, "HTTP/1.1 4") {
				t.Errorf("unfinished request head answered %q", a)
			}
		}
		t.Logf("answers: %q", answers)
		return cuts
	}
	cuts := measure()
	t.Logf("handshake_timeout 1s: slowloris connections cut after %v", cuts)
	for _, d := range cuts {
		if d < 900*time.Millisecond || d > 2500*time.Millisecond {
			t.Errorf("slowloris cut after %v, want about handshake_timeout (1s)", d)
		}
	}
	if askName(t, good) != b.Name {
		t.Fatal("the well-behaved client lost its backend")
	}

	writeConfig(t, p.cfgPath, cfg("3s"))
	p.signal(t, syscall.SIGHUP)
	p.logs.wait(t, `"msg":"config reloaded"`, 5*time.Second)
	cuts = measure()
	t.Logf("handshake_timeout reloaded to 3s: slowloris connections cut after %v", cuts)
	for _, d := range cuts {
		if d < 2700*time.Millisecond || d > 4500*time.Millisecond {
			t.Errorf("after a reload to handshake_timeout 3s, slowloris cut after %v, want about 3s", d)
		}
	}
}

// Request heads over max_header_bytes get 431, on an upgrade and on plain
// HTTP alike, and never reach a backend; a reload that raises the limit
// lets them through.
func TestRequestHeadTooLarge(t *testing.T) {
	b := upstreamtest.Start(t)
	cfg := func(limit string) string {
		return fmt.Sprintf("[limits]\nmax_header_bytes = %q\n%s", limit, upstreams(b))
	}
	p := startWsedge(t, cfg("4KiB"))
	filler := func(n int) string { return "X-Filler: " + strings.Repeat("a", n) + "\r\n" }
	plain := func(extra string) string { return "GET /page HTTP/1.1\r\nHost: wsedge.test\r\n" + extra + "\r\n" }
	tests := []struct {
		name string
		give string
		want string
	}{
		{"upgrade, 1 KiB of headers", upgradeHead(filler(1 << 10)), "HTTP/1.1 101"},
		{"upgrade, 16 KiB of headers", upgradeHead(filler(16 << 10)), "HTTP/1.1 431"},
		{"upgrade, 64 KiB of headers", upgradeHead(strings.Repeat(filler(1<<10), 64)), "HTTP/1.1 431"},
		{"plain GET, 1 KiB of headers", plain(filler(1 << 10)), "HTTP/1.1 200"},
		{"plain GET, 16 KiB of headers", plain(filler(16 << 10)), "HTTP/1.1 431"},
	}
	for _, tt := range tests {
		if got := rawExchange(t, p, tt.give); !strings.HasPrefix(got, tt.want) {
			t.Errorf("%s: answer %q, want %q", tt.name, got, tt.want)
		}
	}
	pages := 0
	for _, r := range b.Requests() {
		if r.Path == "/page" {
			pages++
		}
	}
	if hs := len(b.Handshakes()); hs != 1 || pages != 1 {
		t.Errorf("backend saw %d handshakes and %d requests for /page, want only the small ones", hs, pages)
	}
	// net/http reads up to 4 KiB past its MaxHeaderBytes before it
	// refuses; log where the limit really falls.
	accepted := 0
	for n := 4 << 10; n <= 12<<10; n += 512 {
		if strings.HasPrefix(rawExchange(t, p, plain(filler(n))), "HTTP/1.1 200") {
			accepted = n
		}
	}
	t.Logf("max_header_bytes 4KiB: largest filler header accepted %d bytes", accepted)

	writeConfig(t, p.cfgPath, cfg("64KiB"))
	p.signal(t, syscall.SIGHUP)
	p.logs.wait(t, `"msg":"config reloaded"`, 5*time.Second)
	if got := rawExchange(t, p, upgradeHead(filler(16<<10))); !strings.HasPrefix(got, "HTTP/1.1 101") {
		t.Errorf("after a reload to max_header_bytes 64KiB, a 16 KiB head answered %q, want 101", got)
	}
}

// A route cookie naming a backend that left the ring lands on a new owner,
// marked with X-Wsedge-Affinity-Miss, counted in
// wsedge_affinity_misses_total and logged; a valid cookie is not a miss.
func TestAffinityMissOnStaleCookie(t *testing.T) {
	first := upstreamtest.Start(t, upstreamtest.WithName("first"))
	second := upstreamtest.Start(t, upstreamtest.WithName("second"))
	cfg := "[affinity]\nkey = \"cookie\"\ncookie = \"route\"\n"
	p := startWsedge(t, cfg+upstreams(first, second))

	c, res := wsDial(t, p, "/", nil)
	owner := askName(t, c)
	cookie := routeCookie(t, res)
	c.Close()
	withCookie := http.Header{"Cookie": {"route=" + cookie}}
	c, res = wsDial(t, p, "/", withCookie)
	if got := askName(t, c); got != owner {
		t.Fatalf("with its route cookie the client went to %q, want %q", got, owner)
	}
	if v := res.Header.Get("X-Wsedge-Affinity-Miss"); v != "" {
		t.Fatalf("a valid route cookie marked as a miss: %q", v)
	}
	c.Close()

	other := first
	if owner == "first" {
		other = second
	}
	writeConfig(t, p.cfgPath, cfg+upstreams(other))
	p.signal(t, syscall.SIGHUP)
	p.logs.wait(t, `"msg":"config reloaded"`, 5*time.Second)

	c, res = wsDial(t, p, "/", withCookie)
	if got := askName(t, c); got != other.Name {
		t.Fatalf("stale cookie led to %q, want the remaining backend %q", got, other.Name)
	}
	if v := res.Header.Get("X-Wsedge-Affinity-Miss"); v != "stale_cookie" {
		t.Errorf("WebSocket with a stale cookie: X-Wsedge-Affinity-Miss %q, want stale_cookie", v)
	}
	if fresh := routeCookie(t, res); fresh == cookie {
		t.Error("the stale route cookie was not replaced")
	}
	hres := proxyGet(t, p, "/poll", withCookie)
	hres.Body.Close()
	if v := hres.Header.Get("X-Wsedge-Affinity-Miss"); v != "stale_cookie" {
		t.Errorf("HTTP request with a stale cookie: X-Wsedge-Affinity-Miss %q, want stale_cookie", v)
	}
	if got := hres.Header.Get("X-Backend"); got != other.Name {
		t.Errorf("HTTP request with a stale cookie went to %q", got)
	}
	if got := counterValue(t, scrape(t, p), "wsedge_affinity_misses_total", "kind", "stale_cookie"); got != 2 {
		t.Errorf("wsedge_affinity_misses_total{kind=\"stale_cookie\"} = %v, want 2", got)
	}
	p.logs.wait(t, `"msg":"affinity miss"`, time.Second, `"kind":"stale_cookie"`)
}

// routeCookie returns the route cookie res sets.
func routeCookie(t *testing.T, res *http.Response) string {
	t.Helper()
	for _, c := range res.Cookies() {
		if c.Name == "route" && c.Value != "" {
			return c.Value
		}
	}
	t.Fatalf("no route cookie set; Set-Cookie: %q", res.Header.Values("Set-Cookie"))
	return ""
}

// X-Request-ID reaches the backend, the client's own when it sent a usable
// one, else one the proxy made, and the access log line carries the same.
func TestRequestID(t *testing.T) {
	b := upstreamtest.Start(t)
	p := startWsedge(t, upstreams(b))
	tests := []struct {
		name string
		give string
		kept bool
	}{
		{"client's own", "req-7f3a9c", true},
		{"none", "", false},
		{"with a space", "not valid", false},
		{"too long", strings.Repeat("r", 200), false},
	}
	seen := map[string]bool{}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.give != "" {
				h.Set("X-Request-ID", tt.give)
			}
			c, _ := wsDial(t, p, "/", h)
			askName(t, c)
			got := b.Handshakes()[i].Header.Get("X-Request-ID")
			switch {
			case tt.kept && got != tt.give:
				t.Errorf("backend saw X-Request-ID %q, want the client's %q", got, tt.give)
			case !tt.kept && (got == "" || got == tt.give):
				t.Errorf("backend saw X-Request-ID %q, want one the proxy made", got)
			case seen[got]:
				t.Errorf("X-Request-ID %q given twice", got)
			}
			seen[got] = true
			c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			closeCodeOf(t, c, 5*time.Second)
			p.logs.wait(t, `"msg":"connection closed"`, 5*time.Second, fmt.Sprintf(`"request_id":%q`, got))
		})
	}
	for _, give := range []string{"http-req-1", ""} {
		h := http.Header{}
		if give != "" {
			h.Set("X-Request-ID", give)
		}
		res := proxyGet(t, p, "/page", h)
		res.Body.Close()
		got := ""
		for _, r := range b.Requests() { // the last request for /page: health checks come and go
			if r.Path == "/page" {
				got = r.Header.Get("X-Request-ID")
			}
		}
		if give != "" && got != give || got == "" || seen[got] {
			t.Errorf("plain request with X-Request-ID %q: backend saw %q", give, got)
		}
		seen[got] = true
	}
}

// The profiler, the metrics and the ring are on the admin listener only: on
// the client listener those paths are the application's.
func TestAdminEndpointsOnAdminListenerOnly(t *testing.T) {
	b := upstreamtest.Start(t)
	p := startWsedge(t, upstreams(b))
	tests := []struct {
		path string
		want string // in the admin listener's answer
	}{
		{"/debug/pprof/", "goroutine"},
		{"/debug/pprof/goroutine?debug=1", "goroutine profile"},
		{"/metrics", "wsedge_handshakes_total"},
		{"/debug/ring", b.Addr},
		{"/healthz", "ok"},
		{"/readyz", "ready"},
	}
	for _, tt := range tests {
		res := httpDo(t, "http://"+p.admin+tt.path, nil)
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || res.Header.Get("X-Backend") != "" || !strings.Contains(string(body), tt.want) {
			t.Errorf("admin listener %s: %d %.60q, want 200 with %q", tt.path, res.StatusCode, body, tt.want)
		}
		res = proxyGet(t, p, tt.path, nil)
		body, _ = io.ReadAll(res.Body)
		res.Body.Close()
		if res.Header.Get("X-Backend") != b.Name || string(body) != b.Name {
			t.Errorf("client listener %s: %d %.60q, want the backend's own page", tt.path, res.StatusCode, body)
		}
	}
	reached := map[string]bool{}
	for _, r := range b.Requests() {
		reached[r.Path] = true
	}
	for _, tt := range tests {
		if !reached[tt.path] {
			t.Errorf("the backend never got %s from the client listener", tt.path)
		}
	}
}

// PROXY protocol v1 and v2 headers from a trusted proxy give the client
// address the backend, the routing and the access log see. A header from
// any other peer is refused, so that nobody chooses their own address;
// either kind of peer may still connect without one.
func TestProxyProtocol(t *testing.T) {
	b := upstreamtest.Start(t)
	// Loopback is 127.0.0.0/8: the trusted proxy connects from 127.0.0.2,
	// everyone else from 127.0.0.1.
	p := startWsedge(t, "proxy_protocol = true\n[affinity]\ntrusted_proxies = [\"127.0.0.2/32\"]\n"+upstreams(b))
	tests := []struct {
		name    string
		from    string // the connecting peer's address
		version byte   // of the PROXY header sent; 0: none
		claim   string // the client address the header states
		want    string // X-Real-IP at the backend; "" when refused
	}{
		{"v1 from the trusted proxy", "127.0.0.2", 1, "198.51.100.7", "198.51.100.7"},
		{"v2 from the trusted proxy", "127.0.0.2", 2, "198.51.100.8", "198.51.100.8"},
		{"v2 with IPv6 from the trusted proxy", "127.0.0.2", 2, "2001:db8::9", "2001:db8::9"},
		{"none from the trusted proxy", "127.0.0.2", 0, "", "127.0.0.2"},
		{"v1 from an untrusted peer", "127.0.0.1", 1, "198.51.100.66", ""},
		{"v2 from an untrusted peer", "127.0.0.1", 2, "198.51.100.67", ""},
		{"none from an untrusted peer", "127.0.0.1", 0, "", "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.wsDialer(websocket.Dialer{
				HandshakeTimeout: 5 * time.Second,
				NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
					nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(tt.from)}}
					conn, err := nd.DialContext(ctx, network, addr)
					if err != nil || tt.version == 0 {
						return conn, err
					}
					src := &net.TCPAddr{IP: net.ParseIP(tt.claim), Port: 40000}
					h := proxyproto.HeaderProxyFromAddrs(tt.version, src, conn.RemoteAddr())
					if _, err := h.WriteTo(conn); err != nil {
						conn.Close()
						return nil, err
					}
					return conn, nil
				},
			})
			c, res, err := d.Dial(p.wsURL("/"), nil)
			if tt.want == "" {
				if err == nil {
					c.Close()
					t.Fatalf("a PROXY header from an untrusted peer was accepted: backend saw %q", res.Header.Get("X-Seen-Real-Ip"))
				}
				return
			}
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			if got := res.Header.Get("X-Seen-Real-Ip"); got != tt.want {
				t.Errorf("backend saw X-Real-IP %q, want %q", got, tt.want)
			}
			if got := res.Header.Get("X-Seen-Forwarded-For"); got != tt.want {
				t.Errorf("backend saw X-Forwarded-For %q, want %q", got, tt.want)
			}
			askName(t, c)
			c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			closeCodeOf(t, c, 5*time.Second)
			p.logs.wait(t, `"msg":"connection closed"`, 5*time.Second, fmt.Sprintf(`"client":%q`, tt.want))
		})
	}
	for _, h := range b.Handshakes() {
		if ip := h.Header.Get("X-Real-Ip"); strings.HasPrefix(ip, "198.51.100.6") {
			t.Errorf("an untrusted peer's claimed address %s reached the backend", ip)
		}
	}
}
