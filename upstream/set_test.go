package upstream

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func addrs(bs []Backend) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.Addr
	}
	return out
}

func memberOf(t *testing.T, snap *Snapshot, addr string) Member {
	t.Helper()
	for _, m := range snap.Members {
		if m.Addr == addr {
			return m
		}
	}
	t.Fatalf("%s not among members %+v", addr, snap.Members)
	return Member{}
}

// drain empties Changed and reports whether a signal was pending.
func drain(s *Set) bool {
	select {
	case <-s.Changed():
		return true
	default:
		return false
	}
}

func TestNewSetIsStaticAndHealthy(t *testing.T) {
	s := NewSet([]Backend{{Addr: "b:2"}, {Addr: "a:1", Weight: 3}, {Addr: "b:2", Weight: 5}})
	snap := s.Snapshot()
	if want := []Backend{{"a:1", 3}, {"b:2", 1}}; !slices.Equal(snap.Backends, want) {
		t.Errorf("Backends = %v, want %v", snap.Backends, want)
	}
	for _, m := range snap.Members {
		if m.State != StateHealthy || m.Source != SourceStatic {
			t.Errorf("member %+v, want healthy and static", m)
		}
	}
	for range 5 {
		s.ReportDialFailure("a:1")
	}
	if got := addrs(s.Snapshot().Backends); !slices.Equal(got, []string{"a:1", "b:2"}) {
		t.Errorf("after dial failures Backends = %v: a static set has no checks to bring a backend back, so it must ignore them", got)
	}
}

func TestReplacePublishesOnlyChanges(t *testing.T) {
	s := NewSet([]Backend{{Addr: "a:1"}})
	v := s.Snapshot().Version
	s.Replace([]Backend{{Addr: "a:1", Weight: 1}})
	if drain(s) || s.Snapshot().Version != v {
		t.Fatal("replacing with the same backends published a change")
	}
	s.Replace([]Backend{{Addr: "a:1"}, {Addr: "c:3"}})
	if !drain(s) {
		t.Fatal("no signal after a change")
	}
	snap := s.Snapshot()
	if snap.Version != v+1 || !slices.Equal(addrs(snap.Backends), []string{"a:1", "c:3"}) {
		t.Errorf("snapshot = %+v, want version %d with a:1 and c:3", snap, v+1)
	}
	s.Replace(nil)
	s.Replace([]Backend{{Addr: "d:4"}})
	if !drain(s) || drain(s) {
		t.Error("two changes must leave exactly one pending signal")
	}
}

func TestNewTrustsStaticBackends(t *testing.T) {
	s, err := New(Config{Static: []Backend{{Addr: "a:1"}, {Addr: "b:2", Weight: 2}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Snapshot().Backends; !slices.Equal(got, []Backend{{"a:1", 1}, {"b:2", 2}}) {
		t.Errorf("Backends = %v, want both at once: a restarted proxy must route before its first check", got)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		give Config
	}{
		{"health type", Config{Health: HealthConfig{Type: "udp"}}},
		{"health path", Config{Health: HealthConfig{Path: "healthz"}}},
		{"profile", Config{Discovery: DiscoveryConfig{Bind: "127.0.0.1:0", Profile: "fast"}}},
		{"join without bind", Config{Discovery: DiscoveryConfig{Join: []string{"127.0.0.1:7946"}}}},
		{"bind without port", Config{Discovery: DiscoveryConfig{Bind: "127.0.0.1"}}},
		{"backend without port", Config{Static: []Backend{{Addr: "app1"}}}},
		{"missing secret file", Config{Discovery: DiscoveryConfig{Bind: "127.0.0.1:0", SecretFile: "/nonexistent/key"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := New(tt.give, nil); err == nil {
				t.Errorf("New(%+v) = %v, want an error", tt.give, s)
			}
		})
	}
}

// A flapping backend fed straight to the Set: the ring, and the published
// snapshots, change no faster than rise and fall allow.
func TestSetPublishesOnlyStateChanges(t *testing.T) {
	tests := []struct {
		name         string
		give         string // p pass, f fail, per check
		wantVersions int    // snapshots published
		wantIn       bool
	}{
		{"steady passes publish nothing", "pppppppppp", 0, true},
		{"failures short of fall publish nothing", "ffpffpffp", 0, true},
		{"flapping publishes nothing", "fpfpfpfpfpfpfpfpfpfp", 0, true},
		{"leaving publishes once", "ffffffffff", 1, false},
		{"leaving then flapping out publishes once", "fffpfpfpfpf", 1, false},
		{"leave and come back publishes twice", "fffpp", 2, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(Config{Static: []Backend{{Addr: "a:1"}, {Addr: "b:2"}}, Health: HealthConfig{Rise: 2, Fall: 3}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			v := s.Snapshot().Version
			for _, c := range tt.give {
				var err error
				if c == 'f' {
					err = errors.New("refused")
				}
				s.observe("a:1", s.gen, err)
				s.observe("b:2", s.gen, nil)
			}
			snap := s.Snapshot()
			if got := int(snap.Version - v); got != tt.wantVersions {
				t.Errorf("published %d snapshots, want %d", got, tt.wantVersions)
			}
			if got := slices.Contains(addrs(snap.Backends), "a:1"); got != tt.wantIn {
				t.Errorf("a:1 in ring = %v, want %v", got, tt.wantIn)
			}
		})
	}
}

func TestStaleProbeResultsAreDropped(t *testing.T) {
	s, err := New(Config{Static: []Backend{{Addr: "a:1"}}, Health: HealthConfig{Fall: 1}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.cfg
	cfg.Health.Interval = time.Second // new settings: probers restart
	if err := s.Update(cfg); err != nil {
		t.Fatal(err)
	}
	s.observe("a:1", s.gen-1, errors.New("refused"))
	if len(s.Snapshot().Backends) != 1 {
		t.Error("a result of a prober under old settings took the backend out")
	}
}

func TestPassive(t *testing.T) {
	tests := []struct {
		name   string
		report func(s *Set)
		wantIn bool
	}{
		{"fall failed dials take it out", func(s *Set) {
			for range 3 {
				s.ReportDialFailure("a:1")
			}
		}, false},
		{"fall 5xx upgrades take it out", func(s *Set) {
			s.ReportUpgradeStatus("a:1", 502)
			s.ReportDialFailure("a:1")
			s.ReportUpgradeStatus("a:1", 503)
		}, false},
		{"a 101 in between keeps it", func(s *Set) {
			s.ReportDialFailure("a:1")
			s.ReportDialFailure("a:1")
			s.ReportUpgradeStatus("a:1", 101)
			s.ReportDialFailure("a:1")
			s.ReportDialFailure("a:1")
		}, true},
		{"a 4xx is the app's answer, not a failure", func(s *Set) {
			for range 5 {
				s.ReportUpgradeStatus("a:1", 403)
			}
		}, true},
		{"reports on other backends do not count", func(s *Set) {
			for range 5 {
				s.ReportDialFailure("b:2")
			}
			s.ReportDialFailure("a:1")
		}, true},
		{"unknown backends are ignored", func(s *Set) {
			s.ReportDialFailure("z:9")
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(Config{Static: []Backend{{Addr: "a:1"}, {Addr: "b:2"}}, Health: HealthConfig{Fall: 3, Rise: 2}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			tt.report(s)
			snap := s.Snapshot()
			if got := slices.Contains(addrs(snap.Backends), "a:1"); got != tt.wantIn {
				t.Fatalf("a:1 in ring = %v, want %v (members %+v)", got, tt.wantIn, snap.Members)
			}
			if tt.wantIn {
				return
			}
			m := memberOf(t, snap, "a:1")
			if m.State != StateUnhealthy || m.LastError == "" {
				t.Errorf("a:1 = %+v, want unhealthy with a reason", m)
			}
			// Only active checks bring it back: rise passes.
			s.observe("a:1", s.gen, nil)
			if slices.Contains(addrs(s.Snapshot().Backends), "a:1") {
				t.Fatal("back after one pass, want rise (2)")
			}
			s.observe("a:1", s.gen, nil)
			if !slices.Contains(addrs(s.Snapshot().Backends), "a:1") {
				t.Fatal("not back after rise passes")
			}
		})
	}
}

func TestUpdateKeepsState(t *testing.T) {
	s, err := New(Config{
		Static: []Backend{{Addr: "a:1"}, {Addr: "b:2"}, {Addr: "c:3"}},
		Health: HealthConfig{Rise: 2, Fall: 2},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	fail := errors.New("refused")
	s.observe("a:1", s.gen, fail) // one failure of two: still in
	s.observe("b:2", s.gen, fail)
	s.observe("b:2", s.gen, fail) // out
	drain(s)

	err = s.Update(Config{
		Static: []Backend{{Addr: "a:1", Weight: 4}, {Addr: "b:2"}, {Addr: "d:4"}},
		Health: HealthConfig{Rise: 2, Fall: 2, Interval: time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	snap := s.Snapshot()
	if want := []Backend{{"a:1", 4}, {"d:4", 1}}; !slices.Equal(snap.Backends, want) {
		t.Fatalf("Backends = %v, want %v: b stays out, c is gone, d is trusted as static backends are", snap.Backends, want)
	}
	if slices.ContainsFunc(snap.Members, func(m Member) bool { return m.Addr == "c:3" }) {
		t.Error("removed backend still listed")
	}
	// a's run of failures survived the reload: one more takes it out.
	s.observe("a:1", s.gen, fail)
	if slices.Contains(addrs(s.Snapshot().Backends), "a:1") {
		t.Error("a:1 still in after its second failure in a row: Update lost its count")
	}

	if err := s.Update(Config{Health: HealthConfig{Type: "udp"}}); err == nil {
		t.Error("Update accepted an unknown health type")
	}
	if got := len(s.Snapshot().Members); got != 3 {
		t.Errorf("a refused Update changed the members: %d, want 3", got)
	}
}

func TestReplaceOnManagedSetKeepsHealth(t *testing.T) {
	s, err := New(Config{Static: []Backend{{Addr: "a:1"}, {Addr: "b:2"}}, Health: HealthConfig{Fall: 1}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.observe("a:1", s.gen, errors.New("refused"))
	s.Replace([]Backend{{Addr: "a:1"}, {Addr: "c:3"}})
	snap := s.Snapshot()
	if !slices.Equal(addrs(snap.Backends), []string{"c:3"}) || memberOf(t, snap, "a:1").State != StateUnhealthy {
		t.Errorf("snapshot = %+v, want a still unhealthy, b gone and c trusted", snap)
	}
}

func TestStateChangesAreLoggedOnce(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	s, err := New(Config{Static: []Backend{{Addr: "a:1"}}, Health: HealthConfig{Rise: 2, Fall: 3}}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		s.observe("a:1", s.gen, errors.New("connection refused"))
	}
	for range 10 {
		s.observe("a:1", s.gen, nil)
	}
	lines := logs.FilterMessage("backend state changed").All()
	if len(lines) != 2 {
		t.Fatalf("%d state change lines for 20 checks, want 2 (down, up)", len(lines))
	}
	down, up := lines[0], lines[1]
	if down.Level != zap.WarnLevel || down.ContextMap()["to"] != "unhealthy" || down.ContextMap()["reason"] != "connection refused" {
		t.Errorf("down logged as %s %v", down.Level, down.ContextMap())
	}
	if up.Level != zap.InfoLevel || up.ContextMap()["to"] != "healthy" || up.ContextMap()["from"] != "unhealthy" {
		t.Errorf("up logged as %s %v", up.Level, up.ContextMap())
	}
}

func TestUpdateKeepsRunningDiscovery(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	cfg := Config{Discovery: DiscoveryConfig{Bind: "127.0.0.1:7946", Profile: ProfileLocal}}
	s, err := New(cfg, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Discovery.Join = []string{"127.0.0.1:7947"}
	cfg.Static = []Backend{{Addr: "a:1"}}
	if err := s.Update(cfg); err != nil {
		t.Fatal(err)
	}
	if s.cfg.Discovery.Join != nil || len(s.Snapshot().Backends) != 1 {
		t.Errorf("after Update: join %v, backends %v; want the running discovery and the new backend", s.cfg.Discovery.Join, s.Snapshot().Backends)
	}
	if logs.FilterMessageSnippet("discovery settings apply on restart only").Len() != 1 {
		t.Error("the ignored discovery change was not logged")
	}
}

func TestRunOnlyOnce(t *testing.T) {
	s, err := New(Config{Static: []Backend{{Addr: "a:1"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.check = func(context.Context, string) error { return nil }
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	for !s.running.Load() {
		time.Sleep(time.Millisecond)
	}
	if err := s.Run(ctx); !errors.Is(err, ErrRunning) {
		t.Errorf("second Run = %v, want ErrRunning", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
}

func TestRunOnStaticSetWaits(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := NewSet(nil).Run(ctx); err != nil || time.Since(start) < 40*time.Millisecond {
		t.Errorf("Run = %v after %v, want nil once ctx ends", err, time.Since(start))
	}
}
