package upstream

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

// dnsHealth brings a new backend into the ring within about 100ms.
var dnsHealth = HealthConfig{Interval: 50 * time.Millisecond, Timeout: 40 * time.Millisecond, Rise: 2, Fall: 3}

// runDNS runs a Set from New over cfg, checks answered by sc, lookups
// given up after 200ms, until cleanup. floor, when not 0, replaces the
// one-second floor under TTLs. It returns the Set and its log.
func runDNS(t *testing.T, cfg Config, sc *script, floor time.Duration) (*Set, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	s, err := New(cfg, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	s.check = sc.check
	s.dns.client.timeout = 200 * time.Millisecond
	if floor > 0 {
		s.dns.floor = floor
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	return s, logs
}

// waitSnap waits until the Set's snapshot satisfies ok and returns it.
func waitSnap(t *testing.T, s *Set, within time.Duration, what string, ok func(*Snapshot) bool) *Snapshot {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		snap := s.Snapshot()
		if ok(snap) {
			return snap
		}
		if time.Now().After(deadline) {
			t.Fatalf("not %s within %v: backends %v, members %+v", what, within, snap.Backends, snap.Members)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ringIs says whether the ring holds exactly want.
func ringIs(want ...string) func(*Snapshot) bool {
	return func(s *Snapshot) bool { return slices.Equal(addrs(s.Backends), want) }
}

// waitCount waits until the name's count of kind reaches n.
func waitCount(t *testing.T, s *Set, name, kind string, n uint64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for s.DNSErrors()[name][kind] < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d lookups failed with %s within %v, want %d", name, s.DNSErrors()[name][kind], kind, within, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDNSState(t *testing.T) {
	a := dnsAnswer{backends: []Backend{{"a:1", 1}}, ttl: -1}
	ab := dnsAnswer{backends: []Backend{{"a:1", 1}, {"b:1", 1}}, ttl: -1}
	none := dnsAnswer{ttl: -1}
	fail := &lookupError{kind: kindServfail, err: errors.New("answered SERVFAIL")}
	type step struct {
		a    dnsAnswer
		err  error
		want []Backend // believed after the step
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"first answer believed", []step{{a: ab, want: ab.backends}}},
		{"first answer empty believed", []step{{a: none, want: nil}, {a: a, want: a.backends}}},
		{"failures keep the backends", []step{{a: ab, want: ab.backends}, {err: fail, want: ab.backends},
			{err: fail, want: ab.backends}, {a: a, want: a.backends}}},
		{"empty believed the second time", []step{{a: ab, want: ab.backends}, {a: none, want: ab.backends},
			{a: none, want: nil}}},
		{"failures between empty answers do not reset the count", []step{{a: ab, want: ab.backends},
			{a: none, want: ab.backends}, {err: fail, want: ab.backends}, {a: none, want: nil}}},
		{"an answer between empty ones does", []step{{a: ab, want: ab.backends}, {a: none, want: ab.backends},
			{a: a, want: a.backends}, {a: none, want: a.backends}, {a: none, want: nil}}},
		{"a name that had nothing believes nothing at once", []step{{a: a, want: a.backends},
			{a: none, want: a.backends}, {a: none, want: nil}, {a: none, want: nil}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st dnsState
			for i, s := range tt.steps {
				st.observe(s.a, s.err)
				if !slices.Equal(st.backends, s.want) {
					t.Fatalf("after step %d: believed %v, want %v", i, st.backends, s.want)
				}
			}
		})
	}
}

func TestDNSStateOutcome(t *testing.T) {
	var st dnsState
	ab := dnsAnswer{backends: []Backend{{"a:1", 1}, {"b:1", 1}}}
	fail := &lookupError{kind: kindTimeout, err: errors.New("i/o timeout")}
	tests := []struct {
		a    dnsAnswer
		err  error
		want dnsOutcome
	}{
		{a: ab, want: dnsOutcome{changed: true}},
		{a: ab, want: dnsOutcome{}},
		{err: fail, want: dnsOutcome{failing: true, count: kindTimeout}},
		{err: fail, want: dnsOutcome{count: kindTimeout}},
		{a: ab, want: dnsOutcome{recovered: 2}},
		{a: dnsAnswer{}, want: dnsOutcome{doubted: true, count: kindNoRecords}},
		{a: dnsAnswer{}, want: dnsOutcome{emptied: true, changed: true, count: kindNoRecords}},
		{a: dnsAnswer{}, want: dnsOutcome{count: kindNoRecords}},
	}
	for i, tt := range tests {
		if got := st.observe(tt.a, tt.err); got != tt.want {
			t.Errorf("step %d: %+v, want %+v", i, got, tt.want)
		}
	}
}

func TestResolveWait(t *testing.T) {
	const floor = time.Second
	tests := []struct {
		interval, ttl, want time.Duration
	}{
		{5 * time.Second, 30 * time.Second, 5 * time.Second}, // the interval when records live longer
		{5 * time.Second, 2 * time.Second, 2 * time.Second},  // the TTL when shorter
		{5 * time.Second, 0, floor},                          // never sooner than the floor for a TTL
		{5 * time.Second, -1, 5 * time.Second},               // no records: the interval
		{200 * time.Millisecond, 0, 200 * time.Millisecond},  // an interval shorter than the floor is kept
		{time.Minute, 1500 * time.Millisecond, 1500 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := resolveWait(tt.interval, tt.ttl, floor); got != tt.want {
			t.Errorf("resolveWait(%v, %v) = %v, want %v", tt.interval, tt.ttl, got, tt.want)
		}
	}
}

// The first answer stands for the config's list and is trusted, as static
// backends are; an address that appears later is a pod joining and must
// rise, as gossiped backends must.
func TestDNSFirstAnswerTrusted(t *testing.T) {
	d := upstreamtest.StartDNS(t)
	d.SetAddrs("chat.test", 30, "127.0.1.1", "127.0.1.2")
	slow := HealthConfig{Interval: time.Hour, Timeout: time.Second, Rise: 2, Fall: 3} // no second check in this test
	s, _ := runDNS(t, Config{DNS: []DNSName{{Addr: "chat.test:8080", Weight: 3, Interval: 50 * time.Millisecond,
		Resolver: d.Addr}}, Health: slow}, newScript(), 0)
	snap := waitSnap(t, s, 5*time.Second, "listing the records", func(s *Snapshot) bool { return len(s.Members) > 0 })
	want := []Backend{{"127.0.1.1:8080", 3}, {"127.0.1.2:8080", 3}}
	if !slices.Equal(snap.Backends, want) {
		t.Fatalf("first snapshot with members has backends %v, want %v healthy at once", snap.Backends, want)
	}
	for _, m := range snap.Members {
		if m.Source != SourceDNS {
			t.Errorf("member %+v, want source %q", m, SourceDNS)
		}
	}
	d.SetAddrs("chat.test", 30, "127.0.1.1", "127.0.1.2", "127.0.1.3")
	snap = waitSnap(t, s, 5*time.Second, "listing the new record", func(s *Snapshot) bool { return len(s.Members) == 3 })
	if m := memberOf(t, snap, "127.0.1.3:8080"); m.State != StateRising || m.Weight != 3 {
		t.Errorf("new pod %+v, want rising with weight 3", m)
	}
	if !slices.Equal(snap.Backends, want) {
		t.Errorf("ring %v, want %v until the new pod rises", snap.Backends, want)
	}
}

// Pods come and go: a new record is a backend joining, checked before it
// enters the ring; a record gone is a backend leaving.
func TestDNSPodsJoinAndLeave(t *testing.T) {
	d := upstreamtest.StartDNS(t)
	d.SetAddrs("chat.test", 30, "127.0.1.1", "127.0.1.2")
	sc := newScript()
	s, _ := runDNS(t, Config{DNS: []DNSName{{Addr: "chat.test:8080", Interval: 50 * time.Millisecond, Resolver: d.Addr}},
		Health: dnsHealth}, sc, 0)
	waitSnap(t, s, 5*time.Second, "the first two pods", ringIs("127.0.1.1:8080", "127.0.1.2:8080"))

	// A pod that fails its checks stays out, however long DNS lists it.
	sc.set("", func(sc *script) { sc.fail["127.0.1.3:8080"] = true })
	d.SetAddrs("chat.test", 30, "127.0.1.1", "127.0.1.2", "127.0.1.3")
	waitSnap(t, s, 5*time.Second, "checking the new pod", func(s *Snapshot) bool {
		return len(s.Members) == 3 && sc.count("127.0.1.3:8080") >= 4
	})
	if m := memberOf(t, s.Snapshot(), "127.0.1.3:8080"); m.State != StateUnhealthy || inRing(s, m.Addr) {
		t.Fatalf("failing new pod %+v, want unhealthy and out of the ring", m)
	}
	sc.set("", func(sc *script) { sc.fail["127.0.1.3:8080"] = false })
	waitSnap(t, s, 5*time.Second, "the new pod in the ring", ringIs("127.0.1.1:8080", "127.0.1.2:8080", "127.0.1.3:8080"))

	d.SetAddrs("chat.test", 30, "127.0.1.2", "127.0.1.3")
	snap := waitSnap(t, s, 5*time.Second, "without the pod removed", ringIs("127.0.1.2:8080", "127.0.1.3:8080"))
	if len(snap.Members) != 2 {
		t.Errorf("members %+v, want the removed pod forgotten", snap.Members)
	}
}

// Records that live shorter than the interval are looked up again when
// they expire; records that do not live at all are not looked up more
// than once a floor.
func TestDNSTTLBoundsInterval(t *testing.T) {
	d := upstreamtest.StartDNS(t)
	d.SetAddrs("chat.test", 1, "127.0.1.1")
	d.SetAddrs("zero.test", 0, "127.0.1.9")
	s, _ := runDNS(t, Config{DNS: []DNSName{
		{Addr: "chat.test:8080", Interval: time.Minute, Resolver: d.Addr},
		{Addr: "zero.test:8080", Interval: time.Minute, Resolver: d.Addr},
	}, Health: dnsHealth}, newScript(), 0)
	waitSnap(t, s, 5*time.Second, "resolved", ringIs("127.0.1.1:8080", "127.0.1.9:8080"))
	start := time.Now()
	before := d.Queries("zero.test")

	d.SetAddrs("chat.test", 1, "127.0.1.2")
	waitSnap(t, s, 5*time.Second, "following the change", func(s *Snapshot) bool {
		return slices.Contains(addrs(s.Backends), "127.0.1.2:8080")
	})
	if took := time.Since(start); took > 2500*time.Millisecond {
		t.Errorf("change seen after %v, want within the 1s TTL and some (the interval is a minute)", took)
	}

	time.Sleep(time.Until(start.Add(2500 * time.Millisecond)))
	took := time.Since(start)
	lookups := (d.Queries("zero.test") - before) / 2 // A and AAAA
	if most := int(took/time.Second) + 1; lookups < 1 || lookups > most {
		t.Errorf("a name with TTL 0 looked up %d times in %v, want 1 to %d: once a second at most", lookups,
			took.Round(time.Millisecond), most)
	}
}

// Whatever goes wrong with the DNS server, the backends it last gave stay,
// the outage is logged once, and every failed lookup is counted.
func TestDNSOutageKeepsBackends(t *testing.T) {
	tests := []struct {
		name    string
		fail    func(*upstreamtest.DNS)
		recover func(*upstreamtest.DNS) // nil: it does not come back
		kind    string
	}{
		{"servfail", func(d *upstreamtest.DNS) { d.SetRcode(dns.RcodeServerFailure) },
			func(d *upstreamtest.DNS) { d.SetRcode(0) }, kindServfail},
		{"timeout", func(d *upstreamtest.DNS) { d.SetSilent(true) }, func(d *upstreamtest.DNS) { d.SetSilent(false) }, kindTimeout},
		{"server gone", func(d *upstreamtest.DNS) { d.Close() }, nil, kindUnreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := upstreamtest.StartDNS(t)
			d.SetAddrs("chat.test", 30, "127.0.1.1", "127.0.1.2")
			s, logs := runDNS(t, Config{DNS: []DNSName{{Addr: "chat.test:8080", Interval: 50 * time.Millisecond,
				Resolver: d.Addr}}, Health: dnsHealth}, newScript(), 0)
			want := waitSnap(t, s, 5*time.Second, "resolved", ringIs("127.0.1.1:8080", "127.0.1.2:8080"))

			tt.fail(d)
			waitCount(t, s, "chat.test:8080", tt.kind, 3, 5*time.Second)
			if got := s.Snapshot(); got.Version != want.Version {
				t.Errorf("the outage changed the set: %+v, was %+v", got, want)
			}
			if n := logs.FilterMessageSnippet("dns lookup failed").Len(); n != 1 {
				t.Errorf("outage logged %d times, want once", n)
			}
			if tt.recover == nil {
				return
			}
			d.SetAddrs("chat.test", 30, "127.0.1.2")
			tt.recover(d)
			waitSnap(t, s, 5*time.Second, "following DNS again", ringIs("127.0.1.2:8080"))
			if n := logs.FilterMessageSnippet("dns lookup answers again").Len(); n != 1 {
				t.Errorf("recovery logged %d times, want once", n)
			}
		})
	}
}

// A name whose records are all gone loses its backends only when the next
// lookup agrees.
func TestDNSNoRecordsBelievedTheSecondTime(t *testing.T) {
	tests := []struct {
		name  string
		empty func(*upstreamtest.DNS)
	}{
		{"nxdomain", func(d *upstreamtest.DNS) { d.SetAddrs("chat.test", 30) }},
		{"no records of the type", func(d *upstreamtest.DNS) {
			d.SetSRV("chat.test", 30, upstreamtest.SRV{Port: 1, Target: "x.test"})
			d.SetAddrs("chat.test", 30)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := upstreamtest.StartDNS(t)
			d.SetAddrs("chat.test", 30, "127.0.1.1")
			s, logs := runDNS(t, Config{DNS: []DNSName{{Addr: "chat.test:8080", Interval: 400 * time.Millisecond,
				Resolver: d.Addr}}, Health: dnsHealth}, newScript(), 0)
			waitSnap(t, s, 5*time.Second, "resolved", ringIs("127.0.1.1:8080"))

			tt.empty(d)
			waitCount(t, s, "chat.test:8080", kindNoRecords, 1, 5*time.Second)
			if !inRing(s, "127.0.1.1:8080") {
				t.Fatal("the first empty answer took the backend out")
			}
			waitCount(t, s, "chat.test:8080", kindNoRecords, 2, 5*time.Second)
			waitSnap(t, s, time.Second, "empty after the second", func(s *Snapshot) bool { return len(s.Members) == 0 })
			if n := logs.FilterMessageSnippet("its backends stay unless the next lookup agrees").Len(); n != 1 {
				t.Errorf("first empty answer logged %d times, want once", n)
			}
		})
	}
}

// A reload adds, changes and removes DNS names: the set follows, and what
// stays keeps its health.
func TestDNSUpdate(t *testing.T) {
	d := upstreamtest.StartDNS(t)
	d.SetAddrs("chat.test", 30, "127.0.1.1", "127.0.1.2")
	d.SetAddrs("c.test", 30, "127.0.1.3")
	d.SetSRV("_ws._tcp.chat.test", 30, upstreamtest.SRV{Weight: 10, Port: 7000, Target: "c.test"})
	chat := DNSName{Addr: "chat.test:8080", Interval: 50 * time.Millisecond, Resolver: d.Addr}
	cfg := Config{Static: []Backend{{Addr: "127.0.1.1:8080", Weight: 2}}, DNS: []DNSName{chat}, Health: dnsHealth}
	s, _ := runDNS(t, cfg, newScript(), 0)
	snap := waitSnap(t, s, 5*time.Second, "resolved", ringIs("127.0.1.1:8080", "127.0.1.2:8080"))
	if m := memberOf(t, snap, "127.0.1.1:8080"); m.Source != SourceStatic || m.Weight != 2 {
		t.Errorf("address both listed and resolved: %+v, want the static entry to win", m)
	}

	chat.Weight = 4
	cfg.Static = nil
	cfg.DNS = []DNSName{chat, {SRV: "_ws._tcp.chat.test", Interval: 50 * time.Millisecond, Resolver: d.Addr}}
	if err := s.Update(cfg); err != nil {
		t.Fatal(err)
	}
	snap = s.Snapshot()
	for _, a := range []string{"127.0.1.1:8080", "127.0.1.2:8080"} {
		if m := memberOf(t, snap, a); m.Source != SourceDNS || m.Weight != 4 || m.State != StateHealthy {
			t.Errorf("after reload %+v, want from DNS, weight 4 at once, still healthy", m)
		}
	}
	waitSnap(t, s, 5*time.Second, "with the SRV target", ringIs("127.0.1.1:8080", "127.0.1.2:8080", "127.0.1.3:7000"))

	// Pointed at another DNS server, a name keeps its backends until that
	// server answers otherwise.
	other := upstreamtest.StartDNS(t)
	other.SetAddrs("chat.test", 30, "127.0.1.1", "127.0.1.2", "127.0.1.4")
	d.Close()
	chat.Resolver = other.Addr
	cfg.DNS[0] = chat
	if err := s.Update(cfg); err != nil {
		t.Fatal(err)
	}
	if !ringIs("127.0.1.1:8080", "127.0.1.2:8080", "127.0.1.3:7000")(s.Snapshot()) {
		t.Errorf("after a new resolver: %v, want the backends the old one gave", s.Snapshot().Backends)
	}
	waitSnap(t, s, 5*time.Second, "following the new resolver", func(s *Snapshot) bool { return len(s.Members) == 4 })

	cfg.DNS = cfg.DNS[1:]
	if err := s.Update(cfg); err != nil {
		t.Fatal(err)
	}
	if snap := s.Snapshot(); !ringIs("127.0.1.3:7000")(snap) || len(snap.Members) != 1 {
		t.Errorf("after removing the name: %+v, want its backends gone at once", snap)
	}
	if err := s.Update(Config{DNS: []DNSName{{Addr: "127.0.0.1:80"}}}); err == nil {
		t.Error("Update took an IP address as a DNS name")
	}
}

func TestDNSErrorsListEveryKind(t *testing.T) {
	s, err := New(Config{DNS: []DNSName{{SRV: "_ws._tcp.chat.test"}, {Addr: "chat.test:80"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := s.DNSErrors()
	for _, name := range []string{"_ws._tcp.chat.test", "chat.test:80"} {
		if len(got[name]) != len(dnsErrorKinds) {
			t.Errorf("%s: %v, want every kind of %v", name, got[name], dnsErrorKinds)
		}
	}
	if len(got) != 2 {
		t.Errorf("DNSErrors = %v, want two names", got)
	}
}
