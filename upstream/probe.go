package upstream

import (
	"context"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"
)

// probeSettings is what one prober runs with, fixed for its life: a change
// of health settings replaces every prober.
type probeSettings struct {
	gen      uint64 // Set.gen when it started
	interval time.Duration
	timeout  time.Duration
	check    checkFunc
}

// probe checks addr every interval, give or take a tenth, and reports each
// result to the Set, until ctx ends. The first check comes within a tenth
// of an interval, so that a new backend can rise without waiting a whole
// interval and backends listed together are not all checked at once.
func (s *Set) probe(ctx context.Context, addr string, ps probeSettings) {
	t := time.NewTimer(jitter(ps.interval/10, 1))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, ps.timeout)
		err := ps.check(cctx, addr)
		cancel()
		switch {
		case ctx.Err() != nil: // stopped mid-check: the failure is ours
			return
		case LocalFailure(err) != "":
			s.localCheckFailure(addr, err)
		default:
			s.observe(addr, ps.gen, err)
		}
		t.Reset(jitter(ps.interval, 0.1))
	}
}

// jitter returns d scaled by a random factor in [1-f, 1+f), or in [0, d)
// when f is 1.
func jitter(d time.Duration, f float64) time.Duration {
	if d <= 0 {
		return 0
	}
	if f >= 1 {
		return rand.N(d)
	}
	return time.Duration(float64(d) * (1 - f + 2*f*rand.Float64()))
}

// localCheckFailure notes a check that could not run for want of the
// proxy's own resources: it neither passes nor fails the backend. Logged
// at most once a second, as every prober hits it at once.
func (s *Set) localCheckFailure(addr string, err error) {
	now := time.Now().UnixNano()
	if last := s.localLogged.Load(); now-last >= int64(time.Second) && s.localLogged.CompareAndSwap(last, now) {
		s.log.Warn("health check could not run: the proxy is out of resources; the backend keeps its state",
			zap.String("backend", addr), zap.Error(err))
	}
}

// observe records the result of an active check of addr by a prober of
// generation gen.
func (s *Set) observe(addr string, gen uint64, err error) {
	s.mu.Lock()
	m := s.members[addr]
	if gen != s.gen || m == nil || !m.probed() {
		s.mu.Unlock()
		return
	}
	if err == nil {
		m.health.pass(s.cfg.Health.Rise)
	} else {
		m.health.fail(s.cfg.Health.Fall, err.Error())
	}
	old, cur := s.commitLocked()
	s.mu.Unlock()
	s.announce(old, cur)
}
