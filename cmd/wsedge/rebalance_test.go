package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsedge/wsedge/affinity"
	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

// The tests in this file run clients that behave like browser apps (see
// roamer): when the proxy closes them they reconnect at once, and every
// backend they land on and every close they get is recorded, so a test can
// say who moved, when, where to, and who was left alone.

const (
	// keyHeader carries each client's session key; headerAffinity routes
	// by it, so one test process can be many sticky clients.
	keyHeader      = "X-Session-ID"
	headerAffinity = "[affinity]\nkey = \"header\"\nheader = \"X-Session-ID\"\n"
	// fastHealth takes a failing static backend out of the ring after
	// interval × fall = 900ms.
	fastHealth     = "[health]\ninterval = \"300ms\"\ntimeout = \"250ms\"\nrise = 2\nfall = 3\n"
	fastHealthFall = 3 * 300 * time.Millisecond
	// retryGap is how long a client waits before dialing again when the
	// proxy could not place it.
	retryGap = 50 * time.Millisecond
	// dialsAtOnce bounds the handshakes (or requests) a test has under way
	// at once, as clients arriving at a busy site do.
	dialsAtOnce = 32
)

// visit is one stay of a client on a backend, from the backend's first
// answer until the connection ended.
type visit struct {
	backend string // the backend's name, as it answered "whoami"
	at      time.Time
	code    int // close code received; -1: dropped without one; 0: still live
	closed  time.Time
}

func (v visit) String() string {
	if v.code == 0 {
		return v.backend + " (live)"
	}
	return fmt.Sprintf("%s (closed %d)", v.backend, v.code)
}

// roamer is one client of a fleet.
type roamer struct {
	key     string
	answers chan string // replies on the current connection

	mu      sync.Mutex // guards the fields below
	visits  []visit
	conn    *websocket.Conn
	dialErr error // why the latest dial failed, if it did
}

// history returns a copy of r's visits, in order.
func (r *roamer) history() []visit {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.visits)
}

// ask sends "whoami" on r's current connection and returns the answer.
func (r *roamer) ask(t *testing.T) string {
	t.Helper()
	r.mu.Lock()
	c := r.conn
	r.mu.Unlock()
	if c == nil {
		t.Fatalf("client %s has no connection", r.key)
	}
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := c.WriteMessage(websocket.TextMessage, []byte("whoami")); err != nil {
		t.Fatalf("client %s: %v", r.key, err)
	}
	select {
	case name := <-r.answers:
		return name
	case <-time.After(5 * time.Second):
		t.Fatalf("client %s: no answer within 5s", r.key)
		return ""
	}
}

// fleet is a set of roamers connected to one proxy.
type fleet struct {
	p       *proc
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	dialing chan struct{} // a slot per handshake under way
	roamers []*roamer
}

// startFleet connects a client for each key to the proxy p, each
// sending its key in keyHeader, and waits until every one has been
// answered by a backend. A client the proxy closes dials again at once,
// retrying every retryGap until a backend answers. The fleet is closed at
// cleanup.
func startFleet(t *testing.T, p *proc, keys []string) *fleet {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &fleet{p: p, ctx: ctx, cancel: cancel, dialing: make(chan struct{}, dialsAtOnce)}
	t.Cleanup(f.stop)
	start := time.Now()
	for _, k := range keys {
		r := &roamer{key: k, answers: make(chan string, 1)}
		f.roamers = append(f.roamers, r)
		f.wg.Go(func() { f.run(r) })
	}
	waitVisits(t, f.roamers, 1, 30*time.Second)
	t.Logf("%d clients connected in %v", len(keys), time.Since(start).Round(time.Millisecond))
	return f
}

// stop closes every client and waits for their goroutines.
func (f *fleet) stop() {
	f.cancel()
	for _, r := range f.roamers {
		r.mu.Lock()
		if r.conn != nil {
			r.conn.Close()
		}
		r.mu.Unlock()
	}
	f.wg.Wait()
}

// run is one client's life: connect, wait to be closed, and reconnect.
func (f *fleet) run(r *roamer) {
	for {
		c, name := f.connect(r)
		if c == nil || !f.arrive(r, c, name) {
			return
		}
		code := readUntilClosed(c, r.answers)
		now := time.Now()
		if f.ctx.Err() != nil {
			return
		}
		r.mu.Lock()
		v := &r.visits[len(r.visits)-1]
		v.code, v.closed = code, now
		r.mu.Unlock()
	}
}

// arrive records a new visit, unless the fleet is stopping: then it closes
// c and reports false.
func (f *fleet) arrive(r *roamer, c *websocket.Conn, name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f.ctx.Err() != nil {
		c.Close()
		return false
	}
	r.conn = c
	r.visits = append(r.visits, visit{backend: name, at: time.Now()})
	return true
}

// connect dials until a backend answers "whoami" or the fleet stops.
func (f *fleet) connect(r *roamer) (*websocket.Conn, string) {
	for {
		select {
		case f.dialing <- struct{}{}:
		case <-f.ctx.Done():
			return nil, ""
		}
		c, name, err := dialKey(f.ctx, f.p, r.key)
		<-f.dialing
		if err == nil {
			return c, name
		}
		r.mu.Lock()
		r.dialErr = err
		r.mu.Unlock()
		select {
		case <-f.ctx.Done():
			return nil, ""
		case <-time.After(retryGap):
		}
	}
}

// dialKey opens a WebSocket through the proxy p with key in keyHeader and
// asks the backend its name.
func dialKey(ctx context.Context, p *proc, key string) (*websocket.Conn, string, error) {
	d := p.wsDialer(websocket.Dialer{HandshakeTimeout: 5 * time.Second})
	c, _, err := d.DialContext(ctx, p.wsURL("/"), http.Header{keyHeader: {key}})
	if err != nil {
		return nil, "", err
	}
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := c.WriteMessage(websocket.TextMessage, []byte("whoami")); err != nil {
		c.Close()
		return nil, "", err
	}
	_, msg, err := c.ReadMessage()
	if err != nil {
		c.Close()
		return nil, "", err
	}
	c.SetReadDeadline(time.Time{})
	return c, string(msg), nil
}

// readUntilClosed reads c until it ends, passing data messages to
// answers, and returns the close code received (-1 for none). Reading also
// answers the proxy's pings and returns its close frames, as a browser
// does.
func readUntilClosed(c *websocket.Conn, answers chan<- string) int {
	defer c.Close()
	for {
		_, msg, err := c.ReadMessage()
		if err == nil {
			select {
			case answers <- string(msg):
			default:
			}
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure {
			return ce.Code
		}
		return -1
	}
}

// on returns the roamers whose first visit was to the backend named name.
func (f *fleet) on(name string) []*roamer {
	var out []*roamer
	for _, r := range f.roamers {
		if r.history()[0].backend == name {
			out = append(out, r)
		}
	}
	return out
}

// except returns the roamers not in rs.
func (f *fleet) except(rs []*roamer) []*roamer {
	return slices.DeleteFunc(slices.Clone(f.roamers), func(r *roamer) bool { return slices.Contains(rs, r) })
}

// waitVisits waits until every roamer of rs has made at least n visits and
// returns when the last of those n-th visits began.
func waitVisits(t *testing.T, rs []*roamer, n int, within time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var last time.Time
		short := 0
		var why error
		for _, r := range rs {
			h := r.history()
			if len(h) < n {
				short++
				r.mu.Lock()
				why = cmp.Or(why, r.dialErr)
				r.mu.Unlock()
				continue
			}
			if h[n-1].at.After(last) {
				last = h[n-1].at
			}
		}
		if short == 0 {
			return last
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d clients had not made %d visits within %v; a dial failed with: %v", short, len(rs), n, within, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkUntouched fails the test for each roamer of rs that was closed or
// moved, and asks each of them that was not where it is.
func checkUntouched(t *testing.T, rs []*roamer) {
	t.Helper()
	bad := 0
	for _, r := range rs {
		h := r.history()
		if len(h) != 1 || h[0].code != 0 {
			if bad++; bad <= 5 {
				t.Errorf("client %s should not have been touched; its visits: %+v", r.key, h)
			}
			continue
		}
		if got := r.ask(t); got != h[0].backend {
			t.Errorf("client %s answered by %s, want %s", r.key, got, h[0].backend)
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d clients that should have been left alone were closed or moved", bad, len(rs))
	}
}

// checkSettled fails the test unless each roamer of rs was moved once and
// is still live on the backend newOwner names for its key.
func checkSettled(t *testing.T, rs []*roamer, newOwner func(key string) string) {
	t.Helper()
	var wrong []string
	for _, r := range rs {
		h := r.history()
		if want := newOwner(r.key); len(h) != 2 || h[1].code != 0 || h[1].backend != want {
			wrong = append(wrong, fmt.Sprintf("%s, whose new owner is %s: %+v", r.key, want, h))
		}
	}
	if len(wrong) > 0 {
		t.Errorf("%d of %d moved clients did not settle on their key's new owner, e.g.\n%s",
			len(wrong), len(rs), strings.Join(wrong[:min(5, len(wrong))], "\n"))
	}
}

// firstCloses returns when each roamer's first connection was closed,
// sorted, and counts the close codes.
func firstCloses(rs []*roamer) ([]time.Time, map[int]int) {
	var at []time.Time
	codes := make(map[int]int)
	for _, r := range rs {
		if h := r.history(); h[0].code != 0 {
			at = append(at, h[0].closed)
			codes[h[0].code]++
		}
	}
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	return at, codes
}

// maxInASecond is the most of the sorted times that fall within any one
// second.
func maxInASecond(at []time.Time) int {
	most, lo := 0, 0
	for hi := range at {
		for at[hi].Sub(at[lo]) >= time.Second {
			lo++
		}
		most = max(most, hi-lo+1)
	}
	return most
}

// checkPace fails the test unless the closes came no faster than rate a
// second over any one-second window, give or take what scheduling on a
// shared machine bunches up, and were not dragged out either.
func checkPace(t *testing.T, closes []time.Time, rate int) {
	t.Helper()
	if len(closes) == 0 {
		t.Fatal("no closes to measure")
	}
	most := maxInASecond(closes)
	took := closes[len(closes)-1].Sub(closes[0])
	t.Logf("%d closes over %v (%.0f/s on average), at most %d in any 1s window; rate %d/s",
		len(closes), took.Round(time.Millisecond), float64(len(closes)-1)/max(took.Seconds(), 1e-3), most, rate)
	if limit := rate + rate/4 + 2; most > limit {
		t.Errorf("%d closes within one second, want at most about %d (rate %d/s)", most, limit, rate)
	}
	ideal := time.Duration(len(closes)-1) * time.Second / time.Duration(rate)
	if took > ideal*3/2+2*time.Second {
		t.Errorf("closes took %v, want about %v at %d/s", took, ideal, rate)
	}
}

// keysOwned picks session keys by their owner on the ring of addrs: want[i]
// keys owned by addrs[i].
func keysOwned(t *testing.T, prefix string, addrs []string, want []int) [][]string {
	t.Helper()
	ring := plainRing(addrs)
	out := make([][]string, len(addrs))
	left := 0
	for _, n := range want {
		left += n
	}
	for i := 0; left > 0; i++ {
		if i > 100*left+100000 {
			t.Fatalf("could not find keys for %v", want)
		}
		k := fmt.Sprintf("%s-%d", prefix, i)
		j := slices.Index(addrs, ring.Member(ring.Lookup(affinity.HashString(k))).Addr)
		if len(out[j]) < want[j] {
			out[j] = append(out[j], k)
			left--
		}
	}
	return out
}

// plainRing is the ring a proxy builds from addrs of weight 1 with the
// default vnodes.
func plainRing(addrs []string) *affinity.Ring {
	members := make([]affinity.Member, len(addrs))
	for i, a := range addrs {
		members[i] = affinity.Member{Addr: a, Weight: 1}
	}
	return affinity.NewRing(members, affinity.DefaultVNodes)
}

// owner is the address of the backend r gives the session key to.
func owner(r *affinity.Ring, key string) string {
	return r.Member(r.Lookup(affinity.HashString(key))).Addr
}

// ipOwner is the address of the backend r gives the client IP ip to.
func ipOwner(r *affinity.Ring, ip string) string {
	return r.Member(r.Lookup(affinity.HashAddr(netip.MustParseAddr(ip)))).Addr
}

func sessionKeys(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return keys
}

func addrsOf(bs ...*upstreamtest.Backend) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.Addr
	}
	return out
}

// nameOf maps backend addresses to names.
func nameOf(bs ...*upstreamtest.Backend) map[string]string {
	m := make(map[string]string, len(bs))
	for _, b := range bs {
		m[b.Addr] = b.Name
	}
	return m
}

func keysOf(rs []*roamer) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.key
	}
	return out
}

// echoName is what a `wsedge bench backend` answers to "whoami": it echoes.
const echoName = "whoami"

// echoProcess runs `wsedge bench backend`, an echo server in a process of
// its own, on a free loopback port, and waits until it accepts. It is
// stopped at cleanup unless killed before.
func echoProcess(t *testing.T) (*proc, string) {
	t.Helper()
	addr := freePort(t)
	p := runWsedge(t, "bench", "backend", "--listen", addr, "--duration", "10m")
	t.Cleanup(func() { p.stop(t) })
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return p, addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("bench backend not accepting on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// upstreamAddrs renders [[upstream]] entries for addrs.
func upstreamAddrs(addrs ...string) string {
	var b strings.Builder
	for _, a := range addrs {
		fmt.Fprintf(&b, "\n[[upstream]]\naddress = %q\nweight = 1\n", a)
	}
	return b.String()
}

// 300 clients over 3 backends; one backend dies, as a process SIGKILLed
// or as a crash that resets its connections. Its clients are told (1012)
// or dropped, and each is back on a survivor, its key's new owner, within
// interval × fall + 2s; the other 200 clients see nothing.
func TestBackendDeathReroutesOnlyItsClients(t *testing.T) {
	tests := []struct {
		name    string
		process bool // the victim is a process of its own, SIGKILLed; else in-process, its connections reset
	}{
		{"process SIGKILLed", true},
		{"connections reset", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, c := upstreamtest.Start(t, upstreamtest.WithName("app0")), upstreamtest.Start(t, upstreamtest.WithName("app2"))
			names := nameOf(a, c)
			var victim string
			var kill func()
			if tt.process {
				p, addr := echoProcess(t)
				victim, names[addr] = addr, echoName
				kill = func() {
					if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
						t.Fatal(err)
					}
				}
			} else {
				b := upstreamtest.Start(t, upstreamtest.WithName("app1"))
				victim, names[b.Addr], kill = b.Addr, b.Name, b.Kill
			}
			p := startWsedge(t, headerAffinity+fastHealth+upstreamAddrs(a.Addr, victim, c.Addr))
			f := startFleet(t, p, sessionKeys("death", 300))
			orphans := f.on(names[victim])
			if len(orphans) < 50 {
				t.Fatalf("only %d of 300 clients on the backend about to die", len(orphans))
			}

			killed := time.Now()
			kill()
			bound := fastHealthFall + 2*time.Second
			back := waitVisits(t, orphans, 2, bound+10*time.Second).Sub(killed)
			_, codes := firstCloses(orphans)
			t.Logf("backend death: %d clients told %v (-1: dropped), all back on a survivor %v after the kill (bound %v)",
				len(orphans), codes, back.Round(time.Millisecond), bound)
			if back > bound {
				t.Errorf("clients of the dead backend back after %v, want within interval × fall + 2s = %v", back, bound)
			}
			for code := range codes {
				if code != 1012 && code != -1 {
					t.Errorf("clients of the dead backend got close code %d, want 1012 (or a dropped connection)", code)
				}
			}
			waitInRing(t, p, addrsOf(a, c), time.Until(killed.Add(bound)))
			time.Sleep(time.Second) // for any close still coming
			survivors := plainRing(addrsOf(a, c))
			checkSettled(t, orphans, func(k string) string { return names[owner(survivors, k)] })
			checkUntouched(t, f.except(orphans))
		})
	}
}

// A backend leaves the ring while alive: removed from the config, failing
// its health check, or drained by an operator. With on_remove = "close" its
// clients are closed with 1012 no faster than the rate, each reconnects to
// its key's new owner and stays; with "keep" they stay where they are
// while new clients go to the new owners. Nobody else is touched.
func TestLiveBackendLeaving(t *testing.T) {
	tests := []struct {
		name     string
		onRemove string
		leave    string // "config", "health" or "drain"
		wantMove bool
	}{
		{"removed from config", "close", "config", true},
		{"removed from config, on_remove keep", "keep", "config", false},
		{"failing its health check", "close", "health", true},
		{"drained at the endpoint's rate", "close", "drain", true},
	}
	const rate = 40
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs := threeBackends(t)
			leaving := bs[2]
			cfgRate := rate
			if tt.leave == "drain" {
				cfgRate = 1000 // the endpoint's own rate must win
			}
			cfg := fmt.Sprintf("%s%s[rebalance]\non_remove = %q\nmigrate_rate = %d\n", headerAffinity, fastHealth, tt.onRemove, cfgRate)
			p := startWsedge(t, cfg+upstreams(bs...))
			f := startFleet(t, p, sessionKeys("leave", 240))
			movers := f.on(leaving.Name)
			if len(movers) < 40 {
				t.Fatalf("only %d of 240 clients on %s", len(movers), leaving.Name)
			}
			remaining, names := plainRing(addrsOf(bs[0], bs[1])), nameOf(bs...)
			newOwner := func(k string) string { return names[owner(remaining, k)] }

			switch tt.leave {
			case "config":
				writeConfig(t, p.cfgPath, cfg+upstreams(bs[0], bs[1]))
				p.signal(t, syscall.SIGHUP)
				p.logs.wait(t, "config reloaded", 5*time.Second)
			case "health":
				leaving.SetHealthy(false)
			case "drain":
				drainAt(t, p, leaving.Addr, rate, len(movers))
			}
			if !tt.wantMove {
				time.Sleep(1500 * time.Millisecond) // long enough for dozens of closes at the rate
				checkUntouched(t, f.roamers)
				for _, k := range keysOf(movers)[:10] {
					c, name, err := dialKey(t.Context(), p, k)
					if err != nil {
						t.Fatal(err)
					}
					c.Close()
					if name != newOwner(k) {
						t.Errorf("new client with key %s went to %s, want its new owner %s", k, name, newOwner(k))
					}
				}
				return
			}

			waitVisits(t, movers, 2, time.Duration(len(movers))*time.Second/rate+10*time.Second)
			closes, codes := firstCloses(movers)
			if codes[1012] != len(movers) {
				t.Errorf("clients of the leaving backend got close codes %v, want 1012 for all %d", codes, len(movers))
			}
			checkPace(t, closes, rate)
			time.Sleep(time.Second) // for any close still coming
			checkSettled(t, movers, newOwner)
			checkUntouched(t, f.except(movers))
		})
	}
}

// drainAt asks p to drain backend at rate and checks the answer.
func drainAt(t *testing.T, p *proc, backend string, rate, want int) {
	t.Helper()
	url := fmt.Sprintf("http://%s/debug/drain?backend=%s&rate=%d", p.admin, backend, rate)
	req, _ := http.NewRequest(http.MethodPost, url, nil)
	req.Header.Set("X-Wsedge-Admin", "1")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var got struct {
		Backend string
		Closing int
		Rate    int
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s", url, res.Status)
	}
	if err := json.NewDecoder(res.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.Backend != backend || got.Closing != want || got.Rate != rate {
		t.Errorf("drain answered %+v, want backend %s, closing %d, rate %d", got, backend, want, rate)
	}
}

// A backend joins. With on_add = "keep" no live client moves while new
// clients reach it; with "migrate" exactly the clients whose key it now
// owns are closed with 1012, no faster than the rate, and reconnect to it.
// Either way no other key changes hands.
func TestBackendJoining(t *testing.T) {
	tests := []struct {
		onAdd    string
		wantMove bool
	}{
		{"keep", false},
		{"migrate", true},
	}
	const rate = 40
	for _, tt := range tests {
		t.Run("on_add "+tt.onAdd, func(t *testing.T) {
			bs := threeBackends(t)
			joining := bs[2]
			cfg := fmt.Sprintf("%s[rebalance]\non_add = %q\nmigrate_rate = %d\n", headerAffinity, tt.onAdd, rate)
			p := startWsedge(t, cfg+upstreams(bs[0], bs[1]))
			f := startFleet(t, p, sessionKeys("join", 240))

			writeConfig(t, p.cfgPath, cfg+upstreams(bs...))
			p.signal(t, syscall.SIGHUP)
			waitInRing(t, p, addrsOf(bs...), 5*time.Second)
			now := routes(t, []*proc{p}, keysOf(f.roamers))
			names := nameOf(bs...)
			var movers []*roamer
			for _, r := range f.roamers {
				switch to := names[now[r.key]]; {
				case to == joining.Name:
					movers = append(movers, r)
				case to != r.history()[0].backend:
					t.Errorf("key %s moved from %s to %s: only moves to the new backend are allowed", r.key, r.history()[0].backend, to)
				}
			}
			ring := plainRing(addrsOf(bs...))
			i, _ := ring.Index(joining.Addr)
			share := ring.Share(i)
			t.Logf("adding a third backend gives it %d of %d keys (%.1f%%; it owns %.1f%% of the ring)",
				len(movers), len(f.roamers), 100*float64(len(movers))/float64(len(f.roamers)), 100*share)
			if len(movers) < 40 {
				t.Fatalf("only %d of 240 keys moved to the new backend", len(movers))
			}

			if !tt.wantMove {
				time.Sleep(1500 * time.Millisecond) // long enough for dozens of closes at the rate
				checkUntouched(t, f.roamers)
				for _, k := range keysOf(movers)[:10] {
					c, name, err := dialKey(t.Context(), p, k)
					if err != nil {
						t.Fatal(err)
					}
					c.Close()
					if name != joining.Name {
						t.Errorf("new client with key %s went to %s, want the new owner %s", k, name, joining.Name)
					}
				}
				return
			}

			waitVisits(t, movers, 2, time.Duration(len(movers))*time.Second/rate+10*time.Second)
			closes, codes := firstCloses(movers)
			if codes[1012] != len(movers) {
				t.Errorf("clients whose key moved got close codes %v, want 1012 for all %d", codes, len(movers))
			}
			checkPace(t, closes, rate)
			time.Sleep(time.Second) // for any close still coming
			checkSettled(t, movers, func(string) string { return joining.Name })
			checkUntouched(t, f.except(movers))
		})
	}
}

// SIGTERM to the agent of a backend with 1,000 clients, migrate_rate 200:
// the proxy closes them with 1012 no faster than 200 a second, each is back
// on its key's new owner before the agent's grace period is over, and the
// 200 clients of the other two backends are not touched.
func TestAgentDrainMigratesAtRate(t *testing.T) {
	const (
		rate   = 200
		moving = 1000
		others = 100
		grace  = 8 * time.Second
	)
	port := gossipPort(t)
	p := gossipProxy(t, port, fmt.Sprintf("%s[rebalance]\nmigrate_rate = %d\n", headerAffinity, rate))
	bs := threeBackends(t)
	var agents []*proc
	for i, b := range bs {
		args := []string{"--health", b.URL() + "/healthz"}
		if i == 1 {
			args = append(args, "--grace", grace.String())
		}
		agents = append(agents, startAgent(t, b.Addr, port, args...))
	}
	waitInRing(t, p, addrsOf(bs...), clusterWait)
	keys := keysOwned(t, "agent", addrsOf(bs...), []int{others, moving, others})
	f := startFleet(t, p, slices.Concat(keys...))
	victim := bs[1]
	movers := f.on(victim.Name)
	if len(movers) != moving {
		t.Fatalf("%d clients on %s, want the %d whose keys it owns", len(movers), victim.Name, moving)
	}

	agents[1].signal(t, syscall.SIGTERM)
	term := time.Now()
	drain := moving * time.Second / rate
	back := waitVisits(t, movers, 2, grace+10*time.Second).Sub(term)
	closes, codes := firstCloses(movers)
	t.Logf("agent SIGTERM: first close after %v, every client back on its new owner after %v (%d at %d/s take %v; grace %v)",
		closes[0].Sub(term).Round(time.Millisecond), back.Round(time.Millisecond), moving, rate, drain, grace)
	checkPace(t, closes, rate)
	if codes[1012] != moving {
		t.Errorf("clients of the draining backend got close codes %v, want 1012 for all %d", codes, moving)
	}
	if back > grace {
		t.Errorf("clients of the draining backend all back after %v, want within its grace period %v", back, grace)
	}
	survivors, names := plainRing(addrsOf(bs[0], bs[2])), nameOf(bs...)
	checkSettled(t, movers, func(k string) string { return names[owner(survivors, k)] })
	checkUntouched(t, f.except(movers))
	if code := agents[1].waitExit(t, grace+5*time.Second); code != 0 {
		t.Errorf("agent exit code %d after SIGTERM, want 0", code)
	}
}

// each runs do(0) ... do(n-1) on dialsAtOnce goroutines. It returns nil
// when every call succeeded, else how many failed and the first error.
func each(n int, do func(i int) error) error {
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range dialsAtOnce {
		wg.Go(func() {
			for i := range next {
				errs[i] = do(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	var first error
	failed := 0
	for _, err := range errs {
		if err != nil {
			first = cmp.Or(first, err)
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d failed, the first: %w", failed, n, first)
	}
	return nil
}

// pollClient makes plain HTTP requests, as a long-polling transport does,
// connecting as the mode does. Its idle connections are closed at
// cleanup.
func pollClient(t *testing.T) *http.Client {
	tr := e2e.transport()
	tr.MaxIdleConnsPerHost = dialsAtOnce
	c := &http.Client{Timeout: 5 * time.Second, Transport: tr}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// poll sends a plain request through the proxy p with h and returns the
// name of the backend that answered.
func poll(c *http.Client, p *proc, h http.Header) (string, error) {
	req, err := http.NewRequest(http.MethodGet, p.httpURL("/poll"), nil)
	if err != nil {
		return "", err
	}
	req.Header = h
	res, err := c.Do(req)
	if err != nil {
		return "", err
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("poll: %s", res.Status)
	}
	return res.Header.Get("X-Backend"), nil
}

// countBy counts how many of names are each name.
func countBy(names []string) map[string]int {
	m := make(map[string]int)
	for _, n := range names {
		m[n]++
	}
	return m
}

// Keys skewed so that one of three equal backends would own 60% of 3,000
// clients. With load_factor 1.25 no backend holds more than 1.25 × the
// mean (+1), each client's long-polling requests and WebSocket meet on one
// backend whichever comes first, and a key placed away from its owner goes
// on landing there when the load is gone; with load_factor 0 the plain
// ring's placement is unchanged.
func TestBoundedLoads(t *testing.T) {
	const (
		clients = 3000
		factor  = 1.25
	)
	bs := threeBackends(t)
	addrs, names := addrsOf(bs...), nameOf(bs...)
	ring := plainRing(addrs)
	keys := slices.Concat(keysOwned(t, "bounded", addrs, []int{clients * 6 / 10, clients * 2 / 10, clients * 2 / 10})...)
	// Arrivals interleave the owners, as real clients do.
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	header := func(i int) http.Header { return http.Header{keyHeader: {keys[i]}} }
	p := startWsedge(t, fmt.Sprintf("%s[ring]\nload_factor = %v\n", headerAffinity, factor)+upstreams(bs...))
	hc := pollClient(t)

	conns := make([]*websocket.Conn, clients)
	landed := make([]string, clients)
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	start := time.Now()
	err := each(clients, func(i int) error {
		// Half the clients poll before they upgrade, as Socket.IO does,
		// and half after.
		var polled string
		var err error
		if i%2 == 0 {
			if polled, err = poll(hc, p, header(i)); err != nil {
				return err
			}
		}
		c, name, err := dialKey(t.Context(), p, keys[i])
		if err != nil {
			return fmt.Errorf("client %s: %w", keys[i], err)
		}
		conns[i], landed[i] = c, name
		if i%2 == 1 {
			if polled, err = poll(hc, p, header(i)); err != nil {
				return err
			}
		}
		if polled != name {
			return fmt.Errorf("client %s: WebSocket on %s, long-polling on %s", keys[i], name, polled)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	count := countBy(landed)
	mean := float64(clients) / float64(len(bs))
	limit := int(factor*mean) + 1
	most := 0
	for _, n := range count {
		most = max(most, n)
	}
	var away []int // clients placed away from their key's owner
	for i, k := range keys {
		if landed[i] != names[owner(ring, k)] {
			away = append(away, i)
		}
	}
	t.Logf("%d clients (60%% of keys owned by %s) in %v: %v; max/mean %.3f (bound %.2f, at most %d); %d placed away from their owner",
		clients, bs[0].Name, time.Since(start).Round(time.Millisecond), count, float64(most)/mean, factor, limit, len(away))
	for _, b := range bs {
		if count[b.Name] > limit {
			t.Errorf("%s holds %d connections, want at most %.2f × the mean + 1 = %d", b.Name, count[b.Name], factor, limit)
		}
		if b.Conns() != count[b.Name] {
			t.Errorf("%s has %d live WebSockets, but %d clients reached it", b.Name, b.Conns(), count[b.Name])
		}
	}
	if want := clients*6/10 - limit; len(away) < want {
		t.Fatalf("%d keys placed away from their owner, want at least %d", len(away), want)
	}
	// Load never moves an established connection.
	if err := each(clients, func(i int) error { return askConn(conns[i], landed[i]) }); err != nil {
		t.Error(err)
	}

	// With every connection gone, the displaced keys still land where they
	// were placed, not on their now idle owner.
	for i, c := range conns {
		c.Close()
		conns[i] = nil
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	for _, b := range bs {
		if err := b.WaitConns(ctx, 0); err != nil {
			t.Fatal(err)
		}
	}
	err = each(len(away), func(j int) error {
		i := away[j]
		c, name, err := dialKey(t.Context(), p, keys[i])
		if err != nil {
			return err
		}
		conns[i] = c
		polled, err := poll(hc, p, header(i))
		if err != nil {
			return err
		}
		if name != landed[i] || polled != landed[i] {
			return fmt.Errorf("key %s was placed on %s; reconnecting it reached %s (WebSocket) and %s (polling)", keys[i], landed[i], name, polled)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}

	// The proxy explains a placed key's route as it routes it.
	var wrong []string
	for _, i := range away[:20] {
		var ex struct{ Backend, Why string }
		getJSON(t, "http://"+p.admin+"/debug/ring?key="+keys[i], &ex)
		if names[ex.Backend] != landed[i] {
			wrong = append(wrong, fmt.Sprintf("%s: says %s (%q), goes to %s", keys[i], names[ex.Backend], ex.Why, landed[i]))
		}
	}
	if len(wrong) > 0 {
		t.Errorf("/debug/ring?key= misroutes %d of 20 keys placed by bounded loads, e.g. %s", len(wrong), wrong[0])
	}

	// Without bounded loads every key goes to its owner; a third of the
	// keys, sampled evenly, show it.
	p0 := startWsedge(t, headerAffinity+upstreams(bs...))
	sample := make([]string, clients/3)
	err = each(len(sample), func(j int) error {
		i := 3 * j
		got, err := poll(hc, p0, header(i))
		if err != nil {
			return err
		}
		if want := names[owner(ring, keys[i])]; got != want {
			return fmt.Errorf("load_factor 0: key %s reached %s, want its owner %s", keys[i], got, want)
		}
		sample[j] = got
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	t.Logf("%d keys placed away from their owner reconnected to the same backend after their owner emptied; "+
		"load_factor 0: %v of a sample of %d keys, each on its owner; %v in all",
		len(away), countBy(sample), len(sample), time.Since(start).Round(time.Millisecond))
}

// askConn asks c's backend its name and checks it is want.
func askConn(c *websocket.Conn, want string) error {
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := c.WriteMessage(websocket.TextMessage, []byte("whoami")); err != nil {
		return err
	}
	_, msg, err := c.ReadMessage()
	if err != nil {
		return fmt.Errorf("connection to %s: %w", want, err)
	}
	if string(msg) != want {
		return fmt.Errorf("connection placed on %s now answered by %s", want, msg)
	}
	return nil
}

// ipsOwned picks client IPs by their owner on the ring of addrs: want[i]
// IPs owned by addrs[i], in the order found, so owners interleave.
func ipsOwned(t *testing.T, addrs []string, want []int) []string {
	t.Helper()
	ring := plainRing(addrs)
	left := slices.Clone(want)
	total := 0
	for _, n := range want {
		total += n
	}
	var out []string
	for i := 0; len(out) < total; i++ {
		if i >= 1<<16 {
			t.Fatalf("could not find client IPs for %v", want)
		}
		ip := netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})
		j := slices.Index(addrs, ring.Member(ring.Lookup(affinity.HashAddr(ip))).Addr)
		if left[j] > 0 {
			left[j]--
			out = append(out, ip.String())
		}
	}
	return out
}

// In cookie mode the route token carries a placement made by bounded
// loads: a client placed away from its IP's owner gets a cookie naming the
// backend it reached, and another proxy of the cluster, which has never
// seen the client, sends it there too.
func TestBoundedLoadsRouteCookie(t *testing.T) {
	const (
		clients = 300
		factor  = 1.25
	)
	bs := threeBackends(t)
	addrs, names := addrsOf(bs...), nameOf(bs...)
	ring := plainRing(addrs)
	ips := ipsOwned(t, addrs, []int{clients * 6 / 10, clients * 2 / 10, clients * 2 / 10})
	cfg := fmt.Sprintf("[affinity]\nkey = \"cookie\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n[ring]\nload_factor = %v\n", factor) + upstreams(bs...)
	p := startWsedge(t, cfg)
	other := startWsedge(t, cfg)

	landed := make([]string, clients)
	tokens := make([]string, clients)
	conns := make([]*websocket.Conn, clients)
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	d := p.wsDialer(websocket.Dialer{HandshakeTimeout: 5 * time.Second})
	err := each(clients, func(i int) error {
		c, res, err := d.DialContext(t.Context(), p.wsURL("/"), http.Header{"X-Forwarded-For": {ips[i]}})
		if err != nil {
			return fmt.Errorf("client %s: %w", ips[i], err)
		}
		conns[i] = c
		for _, ck := range res.Cookies() {
			if ck.Name == "wsedge_route" {
				tokens[i] = ck.Value
			}
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if err := c.WriteMessage(websocket.TextMessage, []byte("whoami")); err != nil {
			return err
		}
		_, msg, err := c.ReadMessage()
		landed[i] = string(msg)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	count := countBy(landed)
	limit := int(factor*float64(clients)/float64(len(bs))) + 1
	t.Logf("cookie mode, %d clients (60%% of IPs owned by %s): %v, at most %d allowed", clients, bs[0].Name, count, limit)
	for _, b := range bs {
		if count[b.Name] > limit {
			t.Errorf("%s holds %d connections, want at most %d", b.Name, count[b.Name], limit)
		}
	}

	hc := pollClient(t)
	displaced := 0
	for i, ip := range ips {
		addr := ""
		for a, n := range names {
			if n == landed[i] {
				addr = a
			}
		}
		if tokens[i] != affinity.Token(addr) {
			t.Errorf("client %s reached %s but its route cookie is %q, want %q", ip, landed[i], tokens[i], affinity.Token(addr))
			continue
		}
		if addr == ipOwner(ring, ip) {
			continue
		}
		displaced++
		h := http.Header{"X-Forwarded-For": {ip}, "Cookie": {"wsedge_route=" + tokens[i]}}
		got, err := poll(hc, other, h)
		if err != nil {
			t.Fatal(err)
		}
		if got != landed[i] {
			t.Errorf("client %s placed on %s: another proxy sent its cookie to %s", ip, landed[i], got)
		}
	}
	t.Logf("%d clients placed away from their IP's owner; another proxy honoured every one of their cookies", displaced)
	if want := clients*6/10 - limit; displaced < want {
		t.Errorf("%d clients placed away from their owner, want at least %d", displaced, want)
	}
}

// adminStatus is the status of GET path on p's admin listener.
func adminStatus(t *testing.T, p *proc, path string) int {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	res, err := c.Get("http://" + p.admin + path)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// waitStatus waits until GET path on p's admin listener answers want.
func waitStatus(t *testing.T, p *proc, path string, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := adminStatus(t, p, path)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s answered %d for %v, want %d", path, got, within, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A proxy is alive from the start and ready once its ring has a member:
// a gossip proxy waits for its first agent, and is not ready again when
// the ring empties.
func TestReadyOnceRingHasMember(t *testing.T) {
	port := gossipPort(t)
	p := gossipProxy(t, port, "")
	if got := adminStatus(t, p, "/healthz"); got != http.StatusOK {
		t.Errorf("/healthz %d with an empty ring, want 200: the process is alive", got)
	}
	if got := adminStatus(t, p, "/readyz"); got != http.StatusServiceUnavailable {
		t.Errorf("/readyz %d with an empty ring, want 503", got)
	}
	b := upstreamtest.Start(t)
	url, healthy := switchableHealth(t)
	startAgent(t, b.Addr, port, "--health", url)
	waitStatus(t, p, "/readyz", http.StatusOK, clusterWait)
	if got := inRing(t, p); !slices.Equal(got, []string{b.Addr}) {
		t.Errorf("ready with ring %v, want the agent's backend", got)
	}
	healthy.Store(false)
	waitStatus(t, p, "/readyz", http.StatusServiceUnavailable, clusterWait)
	if got := inRing(t, p); len(got) != 0 {
		t.Errorf("not ready with ring %v, want it empty", got)
	}
}

// inRing returns the addresses of the healthy members of p's ring, sorted.
func inRing(t *testing.T, p *proc) []string {
	t.Helper()
	var ring struct{ Members []ringMember }
	getJSON(t, "http://"+p.admin+"/debug/ring", &ring)
	var out []string
	for _, m := range ring.Members {
		if m.State == "healthy" {
			out = append(out, m.Addr)
		}
	}
	slices.Sort(out)
	return out
}

// waitInRing waits until the healthy members of p's ring are want.
func waitInRing(t *testing.T, p *proc, want []string, within time.Duration) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	deadline := time.Now().Add(within)
	for {
		got := inRing(t, p)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ring %v after %v, want %v", got, within, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ringMember is a member of /debug/ring as an operator reads it.
type ringMember struct {
	Addr      string
	Weight    int
	State     string
	Share     float64
	Live      int
	LastError string `json:"last_error"`
}

// /debug/ring shows every member with its state, weight, share of the
// ring and live connections, and explains where a key goes;
// /debug/connections lists each live connection of a backend with its
// client, age, bytes and last pong. A backend failing its checks shows up
// as unhealthy, with why.
func TestDebugRingAndConnections(t *testing.T) {
	bs := threeBackends(t)
	weights := []int{1, 2, 1}
	var ups strings.Builder
	for i, b := range bs {
		fmt.Fprintf(&ups, "\n[[upstream]]\naddress = %q\nweight = %d\n", b.Addr, weights[i])
	}
	p := startWsedge(t, headerAffinity+fastHealth+
		"[websocket]\nping_interval = \"200ms\"\npong_timeout = \"2s\"\n"+ups.String())
	start := time.Now()
	f := startFleet(t, p, sessionKeys("admin", 60))
	for _, r := range f.roamers {
		r.ask(t) // bytes both ways
	}
	time.Sleep(500 * time.Millisecond) // pings answered

	var ring struct{ Members []ringMember }
	getJSON(t, "http://"+p.admin+"/debug/ring", &ring)
	if len(ring.Members) != len(bs) {
		t.Fatalf("/debug/ring lists %d members, want %d: %+v", len(ring.Members), len(bs), ring)
	}
	shares := 0.0
	for _, m := range ring.Members {
		i := slices.Index(addrsOf(bs...), m.Addr)
		if i < 0 {
			t.Fatalf("/debug/ring lists %s, not a backend", m.Addr)
		}
		shares += m.Share
		if m.State != "healthy" || m.Weight != weights[i] || m.Live != bs[i].Conns() || m.Live != len(f.on(bs[i].Name)) {
			t.Errorf("member %+v: want healthy, weight %d, live %d", m, weights[i], bs[i].Conns())
		}
		if want := float64(weights[i]) / 4; m.Share < want-0.1 || m.Share > want+0.1 {
			t.Errorf("%s of weight %d owns %.3f of the ring, want about %.2f", m.Addr, m.Weight, m.Share, want)
		}
	}
	if shares < 0.999 || shares > 1.001 {
		t.Errorf("shares add up to %f, want 1", shares)
	}

	names := nameOf(bs...)
	for _, r := range f.roamers {
		var ex struct{ Key, By, Backend, Why string }
		getJSON(t, "http://"+p.admin+"/debug/ring?key="+r.key, &ex)
		if names[ex.Backend] != r.history()[0].backend || ex.By != "header" || !strings.Contains(ex.Why, ex.Backend) {
			t.Errorf("explanation of %s: %+v; the client is on %s", r.key, ex, r.history()[0].backend)
		}
	}

	for _, b := range bs {
		var conns []struct {
			Client, Backend, Age string
			BytesIn              int64     `json:"bytes_in"`
			BytesOut             int64     `json:"bytes_out"`
			LastPong             time.Time `json:"last_pong"`
		}
		getJSON(t, "http://"+p.admin+"/debug/connections?backend="+b.Addr, &conns)
		if len(conns) != len(f.on(b.Name)) {
			t.Errorf("/debug/connections lists %d connections of %s, want %d", len(conns), b.Name, len(f.on(b.Name)))
		}
		for _, c := range conns {
			age, err := time.ParseDuration(c.Age)
			if c.Client != "127.0.0.1" || c.Backend != b.Addr || err != nil || age <= 0 || age > time.Since(start) ||
				c.BytesIn == 0 || c.BytesOut == 0 || time.Since(c.LastPong) > 2*time.Second {
				t.Errorf("connection of %s: %+v", b.Name, c)
			}
		}
	}

	bs[0].SetHealthy(false)
	deadline := time.Now().Add(5 * time.Second)
	for {
		getJSON(t, "http://"+p.admin+"/debug/ring", &ring)
		i := slices.IndexFunc(ring.Members, func(m ringMember) bool { return m.Addr == bs[0].Addr })
		if i < 0 {
			t.Fatalf("/debug/ring no longer lists %s, which failed its checks: %+v", bs[0].Addr, ring)
		}
		if m := ring.Members[i]; m.State == "unhealthy" {
			if m.Share != 0 || !strings.Contains(m.LastError, "503") {
				t.Errorf("unhealthy member %+v: want no share and a last error saying 503", m)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend failing its checks still %+v after 5s", ring.Members[i])
		}
		time.Sleep(20 * time.Millisecond)
	}

	bad := []struct {
		name, method, query string
		want                int
	}{
		{"no backend", http.MethodPost, "", http.StatusBadRequest},
		{"zero rate", http.MethodPost, "?backend=" + bs[1].Addr + "&rate=0", http.StatusBadRequest},
		{"rate not a number", http.MethodPost, "?backend=" + bs[1].Addr + "&rate=fast", http.StatusBadRequest},
		{"GET", http.MethodGet, "?backend=" + bs[1].Addr, http.StatusMethodNotAllowed},
	}
	for _, tt := range bad {
		req, _ := http.NewRequest(tt.method, "http://"+p.admin+"/debug/drain"+tt.query, nil)
		req.Header.Set("X-Wsedge-Admin", "1")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tt.want {
			t.Errorf("drain, %s: %d, want %d", tt.name, res.StatusCode, tt.want)
		}
	}
	checkUntouched(t, f.except(f.on(bs[0].Name)))
}

// routeConfig writes a config for `wsedge route` routing by keyHeader over
// bs, whose admin_listen is admin, and returns its path.
func routeConfig(t *testing.T, admin string, bs ...*upstreamtest.Backend) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "route.toml")
	cfg := fmt.Sprintf("listen = \"127.0.0.1:0\"\nadmin_listen = %q\n%s%s", admin, headerAffinity, upstreams(bs...))
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// runRoute runs `wsedge route --config cfg key` and returns what it printed.
func runRoute(t *testing.T, cfg, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "route", "--config", cfg, key).Output()
	if err != nil {
		t.Fatalf("wsedge route %s: %v", key, err)
	}
	return string(out)
}

// `wsedge route` answers as the running proxy routes, reading its live ring
// from the admin endpoint: a backend failing its checks is out of the
// answer although the config lists it. With no proxy answering, it routes
// over the config's static backends and says so.
func TestRouteCommand(t *testing.T) {
	bs := threeBackends(t)
	p := startWsedge(t, headerAffinity+fastHealth+upstreams(bs...))
	bs[0].SetHealthy(false)
	waitInRing(t, p, addrsOf(bs[1], bs[2]), 5*time.Second)

	nobody := freePort(t)
	live, static := routeConfig(t, p.admin, bs...), routeConfig(t, nobody, bs...)

	byOwner := keysOwned(t, "route", addrsOf(bs...), []int{4, 2, 2})
	names := nameOf(bs...)
	for _, k := range slices.Concat(byOwner...) {
		want := routes(t, []*proc{p}, []string{k})[k]
		got := runRoute(t, live, k)
		if !strings.HasPrefix(got, k+" -> "+want+"\n") || !strings.Contains(got, "from the running proxy at "+p.admin) {
			t.Errorf("route %s from the running proxy printed:\n%s\nwant %s -> %s, from the running proxy", k, got, k, want)
		}
		c, name, err := dialKey(t.Context(), p, k)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if name != names[want] {
			t.Errorf("route said %s goes to %s, but a client with it reached %s", k, names[want], name)
		}
		want = owner(plainRing(addrsOf(bs...)), k)
		got = runRoute(t, static, k)
		if !strings.HasPrefix(got, k+" -> "+want+"\n") || !strings.Contains(got, "from the static backends of "+static) {
			t.Errorf("route %s with no proxy running printed:\n%s\nwant %s -> %s, from the static backends", k, got, k, want)
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("wsedge route, e.g.:\n%s", runRoute(t, live, byOwner[0][0]))
}
