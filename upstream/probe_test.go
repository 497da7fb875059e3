package upstream

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// script is a fake check whose answers a test changes as it goes. It
// records when each check of each address ran.
type script struct {
	mu    sync.Mutex
	fail  map[string]bool // address → failing
	hang  map[string]bool // address → never answers: the timeout decides
	flip  map[string]bool // address → alternates pass and fail
	times map[string][]time.Time
}

func newScript() *script {
	return &script{fail: map[string]bool{}, hang: map[string]bool{}, flip: map[string]bool{}, times: map[string][]time.Time{}}
}

func (sc *script) check(ctx context.Context, addr string) error {
	sc.mu.Lock()
	sc.times[addr] = append(sc.times[addr], time.Now())
	n := len(sc.times[addr])
	fail, hang, flip := sc.fail[addr], sc.hang[addr], sc.flip[addr]
	sc.mu.Unlock()
	switch {
	case hang:
		<-ctx.Done()
		return ctx.Err()
	case fail, flip && n%2 == 0:
		return errors.New("refused")
	}
	return nil
}

func (sc *script) set(addr string, f func(sc *script)) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	f(sc)
}

func (sc *script) count(addr string) int {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return len(sc.times[addr])
}

// runScripted runs a Set over static backends with checks answered by sc,
// inside the synctest bubble of the caller, and stops it at cleanup.
func runScripted(t *testing.T, cfg Config, sc *script) *Set {
	t.Helper()
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.check = sc.check
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	return s
}

func inRing(s *Set, addr string) bool {
	return slices.Contains(addrs(s.Snapshot().Backends), addr)
}

var testHealth = HealthConfig{Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 2, Fall: 3}

func TestProbeFailingBackendLeavesAfterFallChecks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sc := newScript()
		sc.set("a:1", func(sc *script) { sc.fail["a:1"] = true })
		start := time.Now()
		s := runScripted(t, Config{Static: []Backend{{Addr: "a:1"}, {Addr: "b:2"}}, Health: testHealth}, sc)
		<-s.Changed()
		took := time.Since(start)
		if inRing(s, "a:1") || !inRing(s, "b:2") {
			t.Fatalf("ring = %v, want b only", s.Snapshot().Backends)
		}
		if got := sc.count("a:1"); got != 3 {
			t.Errorf("left after %d checks, want fall = 3", got)
		}
		// First check within a tenth of an interval, then two intervals
		// give or take a tenth.
		if lo, hi := 1800*time.Millisecond, 2300*time.Millisecond; took < lo || took >= hi {
			t.Errorf("left after %v, want within [%v, %v)", took, lo, hi)
		}
		// It comes back after rise passes.
		sc.set("a:1", func(sc *script) { sc.fail["a:1"] = false })
		start = time.Now()
		<-s.Changed()
		if took := time.Since(start); !inRing(s, "a:1") || took < 1800*time.Millisecond || took > 2200*time.Millisecond {
			t.Errorf("back after %v (in ring: %v), want two checks: 2 intervals give or take a tenth", took, inRing(s, "a:1"))
		}
	})
}

func TestProbeHangingCheckFailsAtTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sc := newScript()
		sc.set("a:1", func(sc *script) { sc.hang["a:1"] = true })
		start := time.Now()
		s := runScripted(t, Config{Static: []Backend{{Addr: "a:1"}}, Health: testHealth}, sc)
		<-s.Changed()
		// Three checks of 500ms each, two waits of an interval between.
		took := time.Since(start)
		if lo, hi := 3300*time.Millisecond, 3800*time.Millisecond; took < lo || took >= hi {
			t.Errorf("left after %v, want within [%v, %v)", took, lo, hi)
		}
		if m := s.Snapshot().Members[0]; m.State != StateUnhealthy || m.LastError == "" {
			t.Errorf("member = %+v, want unhealthy with the timeout as reason", m)
		}
	})
}

func TestProbeFlappingBackendNeverChurnsTheRing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sc := newScript()
		sc.set("a:1", func(sc *script) { sc.flip["a:1"] = true })
		sc.set("n:9", func(sc *script) { sc.flip["n:9"] = true })
		s := runScripted(t, Config{Static: []Backend{{Addr: "a:1"}}, Health: testHealth}, sc)
		// n:9 arrives by gossip: it has to rise, and flapping never gets
		// it in.
		s.applyGossip([]nodeEvent{ev(t, "node9", backendMeta("n:9", nodeAlive), false)}, time.Now())
		s.wakeRun()
		v := s.Snapshot().Version
		time.Sleep(100 * time.Second)
		synctest.Wait()
		if got := sc.count("a:1"); got < 90 {
			t.Fatalf("%d checks in 100s, want about 100", got)
		}
		snap := s.Snapshot()
		if !inRing(s, "a:1") || inRing(s, "n:9") {
			t.Errorf("ring = %v, want a:1 only", snap.Backends)
		}
		// One publication at most: n:9 going from rising to unhealthy.
		if snap.Version > v+1 {
			t.Errorf("%d snapshots published while flapping, want at most 1", snap.Version-v)
		}
	})
}

func TestProbeChecksSpreadOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sc := newScript()
		var static []Backend
		for _, a := range []string{"a:1", "b:2", "c:3", "d:4", "e:5", "f:6", "g:7", "h:8"} {
			static = append(static, Backend{Addr: a})
		}
		runScripted(t, Config{Static: static, Health: testHealth}, sc)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		sc.mu.Lock()
		defer sc.mu.Unlock()
		first := map[time.Time]bool{}
		for _, b := range static {
			ts := sc.times[b.Addr]
			if len(ts) < 9 || len(ts) > 12 {
				t.Errorf("%s checked %d times in 10s, want about 10", b.Addr, len(ts))
				continue
			}
			first[ts[0]] = true
			for i := 1; i < len(ts); i++ {
				if d := ts[i].Sub(ts[i-1]); d < 900*time.Millisecond || d >= 1100*time.Millisecond {
					t.Errorf("%s: %v between checks, want an interval give or take a tenth", b.Addr, d)
				}
			}
		}
		if len(first) < 2 {
			t.Error("every backend was first checked at the same instant")
		}
	})
}

func TestProbeUpdateAppliesNewInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sc := newScript()
		cfg := Config{Static: []Backend{{Addr: "a:1"}}, Health: testHealth}
		runSet := runScripted(t, cfg, sc)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		before := sc.count("a:1")
		cfg.Health.Interval = 100 * time.Millisecond
		cfg.Health.Timeout = 50 * time.Millisecond
		if err := runSet.Update(cfg); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if got := sc.count("a:1") - before; got < 40 {
			t.Errorf("%d checks in 5s after the interval went to 100ms, want about 50", got)
		}
	})
}
