package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

const (
	// soakDefault is how long TestSoak churns unless WSEDGE_SOAK says
	// otherwise: long enough for many reload and membership cycles, short
	// enough for CI.
	soakDefault = 60 * time.Second
	// soakWorkers is how many clients churn at once.
	soakWorkers = 150
	// soakChurnEvery is the time between two changes to the backends or
	// the config.
	soakChurnEvery = 2 * time.Second
)

// soakDuration is WSEDGE_SOAK (a Go duration, e.g. "10m") or soakDefault.
func soakDuration(t *testing.T) time.Duration {
	v := os.Getenv("WSEDGE_SOAK")
	if v == "" {
		return soakDefault
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("WSEDGE_SOAK=%q: want a positive duration such as 10m", v)
	}
	return d
}

// soakFleet is the soak's backends and the config that lists them. Only
// the churn goroutine changes it.
type soakFleet struct {
	t       *testing.T
	p       *proc
	live    []*upstreamtest.Backend // in the config and alive
	dead    []*upstreamtest.Backend // killed, still in the config until removed
	all     []*upstreamtest.Backend // every backend started, for their counters
	next    int
	variant int // which of the reloadable settings is in force

	mu     sync.Mutex
	killed []time.Time // when backends were killed: connections cut then may end without a close frame
}

func (f *soakFleet) start() *upstreamtest.Backend {
	b := upstreamtest.Start(f.t, upstreamtest.WithName(fmt.Sprintf("soak%d", f.next)))
	f.next++
	f.all = append(f.all, b)
	return b
}

// config renders the proxy's config for the listed backends and the
// current variant of the reloadable settings.
func (f *soakFleet) config() string {
	variants := []string{
		"[websocket]\nping_interval = \"1s\"\npong_timeout = \"2s\"\n[rebalance]\non_add = \"keep\"\nmigrate_rate = 1000\n",
		"[websocket]\nping_interval = \"3s\"\npong_timeout = \"2s\"\n[rebalance]\non_add = \"migrate\"\nmigrate_rate = 300\n",
	}
	cfg := fmt.Sprintf("[affinity]\nkey = \"header\"\nheader = %q\n", faultKeyHeader) + variants[f.variant%len(variants)] +
		"[health]\ntype = \"http\"\npath = \"/healthz\"\ninterval = \"300ms\"\ntimeout = \"250ms\"\nrise = 1\nfall = 2\n"
	return cfg + upstreams(append(slices.Clone(f.live), f.dead...)...)
}

func (f *soakFleet) reload() {
	writeConfig(f.t, f.p.cfgPath, f.config())
	f.p.signal(f.t, syscall.SIGHUP)
}

// churn makes the next change: a backend joins, the settings change, a
// backend is removed from the config (a dead one first), a backend is
// killed; between two and five stay alive.
func (f *soakFleet) churn(step int, stop <-chan struct{}) string {
	switch step % 4 {
	case 0:
		if len(f.live) < 5 {
			b := f.start()
			f.live = append(f.live, b)
			f.reload()
			return "added " + b.Name
		}
	case 1:
		f.variant++
		f.reload()
		return "reloaded settings"
	case 2:
		if len(f.dead) > 0 {
			b := f.dead[0]
			f.dead = f.dead[1:]
			f.reload()
			return "removed dead " + b.Name
		}
		if len(f.live) > 2 {
			b := f.live[0]
			f.live = f.live[1:]
			f.reload()
			// Its clients are moved at migrate_rate; then it goes.
			go func() {
				select {
				case <-stop:
				case <-time.After(3 * time.Second):
				}
				b.Close()
			}()
			return "removed " + b.Name
		}
	case 3:
		if len(f.live) > 2 {
			b := f.live[len(f.live)-1]
			f.live = f.live[:len(f.live)-1]
			f.dead = append(f.dead, b)
			f.mu.Lock()
			f.killed = append(f.killed, time.Now())
			f.mu.Unlock()
			b.Kill()
			return "killed " + b.Name
		}
	}
	return "nothing"
}

// killedAround reports whether a backend was killed within d before at.
func (f *soakFleet) killedAround(at time.Time, d time.Duration) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range f.killed {
		if !k.After(at) && at.Sub(k) <= d {
			return true
		}
	}
	return false
}

// soakCounts is what the clients did, summed over all of them.
type soakCounts struct {
	conns, refused           atomic.Int64 // connections opened; handshakes refused (no backend yet, one just died)
	sent, echoed             atomic.Int64 // messages
	moved, cut, abrupt, done atomic.Int64 // connections closed by the proxy with 1012 or 1001; cut without a close frame after a kill; dropped by the client; closed normally
	unconfirmed              atomic.Int64 // messages sent on a connection that ended before their echo
	mu                       sync.Mutex
	errs                     []error
}

func (c *soakCounts) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs = append(c.errs, err)
}

// soakClient connects, sends a few messages and checks their echoes, and
// closes, normally or by dropping the connection, until stop.
func soakClient(p *proc, fleet *soakFleet, w int, counts *soakCounts, stop <-chan struct{}) {
	rng := rand.New(rand.NewPCG(uint64(w), 42))
	d := p.wsDialer(websocket.Dialer{HandshakeTimeout: 10 * time.Second})
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		key := fmt.Sprintf("soak-%d-%d", w, rng.IntN(1000))
		c, res, err := d.Dial(p.wsURL("/"), http.Header{faultKeyHeader: {key}})
		if err != nil {
			if res != nil {
				counts.refused.Add(1) // 502/503 while the ring catches up with a death
				time.Sleep(10 * time.Millisecond)
				continue
			}
			counts.fail(fmt.Errorf("client %d: dial: %w", w, err))
			return
		}
		counts.conns.Add(1)
		ended := false
		for m := range 1 + rng.IntN(20) {
			msg := make([]byte, 1+rng.IntN(2048))
			for i := range msg {
				msg[i] = 'a' + byte(rng.IntN(26))
			}
			copy(msg, fmt.Sprintf("%d/%d/%d:", w, n, m))
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if err := c.WriteMessage(websocket.TextMessage, msg); err != nil {
				ended = soakEnded(fleet, counts, w, err, false)
				break
			}
			counts.sent.Add(1)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, got, err := c.ReadMessage()
			if err != nil {
				ended = soakEnded(fleet, counts, w, err, true)
				break
			}
			if string(got) != string(msg) {
				counts.fail(fmt.Errorf("client %d: echo of %d bytes differs from what was sent", w, len(msg)))
			}
			counts.echoed.Add(1)
			time.Sleep(time.Duration(rng.IntN(5)) * time.Millisecond)
		}
		switch {
		case ended:
		case rng.IntN(5) == 0:
			c.Close() // dropped without a close frame
			counts.abrupt.Add(1)
		default:
			c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(5*time.Second))
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, _, err := c.ReadMessage()
			if websocket.IsCloseError(err, websocket.CloseNormalClosure) {
				counts.done.Add(1)
			} else {
				soakEnded(fleet, counts, w, err, false)
			}
		}
		c.Close()
	}
}

// soakEnded sorts out a connection the proxy ended: moved (1012, 1001) is
// expected during churn, cut without a close frame only just after a
// backend was killed; anything else fails the soak. pending says a
// message was awaiting its echo.
func soakEnded(fleet *soakFleet, counts *soakCounts, w int, err error, pending bool) bool {
	if pending {
		counts.unconfirmed.Add(1)
	}
	var ce *websocket.CloseError
	var ne net.Error
	switch {
	case errors.As(err, &ce) && (ce.Code == websocket.CloseServiceRestart || ce.Code == websocket.CloseGoingAway):
		counts.moved.Add(1)
	case !(errors.As(err, &ne) && ne.Timeout()) && fleet.killedAround(time.Now(), 3*time.Second):
		counts.cut.Add(1)
	default:
		counts.fail(fmt.Errorf("client %d: connection ended: %w", w, err))
	}
	return true
}

// A bounded soak: 150 clients churn (connect, exchange a few messages,
// close or drop, reconnect) while backends join, leave and die and the
// config is reloaded every few seconds. At the end the proxy has not
// panicked or logged an error, holds no more goroutines or descriptors
// than before, its heap and RSS are back within stated margins, and every
// count agrees: each message sent was echoed, or was in flight on a
// connection the churn ended, and the proxy counted the handshakes the
// clients made. WSEDGE_SOAK=10m runs it longer.
func TestSoak(t *testing.T) {
	d := soakDuration(t)
	fleet := &soakFleet{t: t}
	for range 3 {
		fleet.live = append(fleet.live, fleet.start())
	}
	p := startWsedge(t, fleet.config())
	fleet.p = p
	warm, _ := wsDial(t, p, "/", nil)
	askName(t, warm)
	warm.Close()
	time.Sleep(500 * time.Millisecond)
	base := readResources(t, p)

	stop := make(chan struct{})
	counts := &soakCounts{}
	var clients sync.WaitGroup
	for w := range soakWorkers {
		clients.Go(func() { soakClient(p, fleet, w, counts, stop) })
	}
	start := time.Now()
	var changes []string
	var peak resources
	for step := 0; time.Since(start) < d; step++ {
		time.Sleep(soakChurnEvery)
		changes = append(changes, fleet.churn(step, stop))
		if step%5 == 0 {
			if r := readResources(t, p); r.rss > peak.rss {
				peak = r
			}
		}
	}
	close(stop)
	clients.Wait()
	took := time.Since(start)

	// Back to three live backends, as at the start, so that the health
	// checkers are as many as then.
	fleet.dead = nil
	for len(fleet.live) < 3 {
		fleet.live = append(fleet.live, fleet.start())
	}
	fleet.live = fleet.live[:3]
	fleet.reload()
	waitRings(t, []*proc{p}, addrsOfBackends(fleet.live), 10*time.Second)
	waitResources(t, p, base, 2, 20*time.Second)

	t.Logf("soak of %v: %d connections (%.0f/s), %d handshakes refused while the ring caught up; %d closed normally, %d dropped by the client, %d moved by the proxy (1012/1001), %d cut by a backend's death",
		took.Round(time.Second), counts.conns.Load(), float64(counts.conns.Load())/took.Seconds(), counts.refused.Load(),
		counts.done.Load(), counts.abrupt.Load(), counts.moved.Load(), counts.cut.Load())
	t.Logf("changes: %d (%s ...)", len(changes), strings.Join(changes[:min(len(changes), 8)], ", "))
	t.Logf("peak while churning: %v", peak)
	for _, err := range counts.errs[:min(len(counts.errs), 10)] {
		t.Error(err)
	}

	// The counts agree.
	var received int64
	var accepted int
	for _, b := range fleet.all {
		received += b.Messages()
		accepted += b.Accepted()
	}
	sent, echoed, unconfirmed := counts.sent.Load(), counts.echoed.Load(), counts.unconfirmed.Load()
	t.Logf("messages: %d sent, %d echoed, %d in flight when their connection ended; backends read %d; upgrades: clients %d, backends %d",
		sent, echoed, unconfirmed, received, counts.conns.Load(), accepted)
	if sent != echoed+unconfirmed {
		t.Errorf("%d messages sent, but %d echoed and %d in flight", sent, echoed, unconfirmed)
	}
	if received < echoed || received > sent {
		t.Errorf("backends read %d messages: fewer than the %d echoed or more than the %d sent", received, echoed, sent)
	}
	// The warm-up connection is one more on every side. A backend killed
	// just after it sent a 101 counted an upgrade the proxy never saw.
	hs := proxyHandshakesOK(t, p)
	if hs != counts.conns.Load()+1 || int64(accepted) < hs || int64(accepted) > hs+int64(len(fleet.killed)) {
		t.Errorf("clients opened %d connections, the proxy counted %d accepted handshakes, the backends %d (%d backends killed)",
			counts.conns.Load()+1, hs, accepted, len(fleet.killed))
	}
	for _, line := range p.logs.all() {
		if strings.Contains(line, "panic") || strings.Contains(line, `"level":"error"`) {
			t.Errorf("proxy log: %s", line)
		}
	}
	var conns []struct{ ID uint64 }
	getJSON(t, "http://"+p.admin+"/debug/connections", &conns)
	if len(conns) != 0 {
		t.Errorf("%d connections still live after every client left", len(conns))
	}
	waitMemoryBack(t, p, "soak", base, 4<<20, 16<<20)

	p.signal(t, syscall.SIGTERM)
	if code := p.waitExit(t, 10*time.Second); code != 0 {
		t.Errorf("exit code %d after the soak", code)
	}
}

// addrsOfBackends lists the addresses of bs.
func addrsOfBackends(bs []*upstreamtest.Backend) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.Addr
	}
	return out
}

// proxyHandshakesOK reads wsedge_handshakes_total{result="ok"}.
func proxyHandshakesOK(t *testing.T, p *proc) int64 {
	t.Helper()
	for _, line := range strings.Split(adminText(t, p, "/metrics"), "\n") {
		if v, ok := strings.CutPrefix(line, `wsedge_handshakes_total{result="ok"} `); ok {
			var n float64
			fmt.Sscanf(v, "%g", &n)
			return int64(n)
		}
	}
	t.Fatal("no wsedge_handshakes_total{result=\"ok\"} in the metrics")
	return 0
}
