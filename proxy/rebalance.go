package proxy

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"go.uber.org/zap"

	"github.com/wsedge/wsedge/proxy/wsframe"
	"github.com/wsedge/wsedge/upstream"
)

// migration is a connection the proxy decided to close so that its client
// reconnects elsewhere, unless still says by then it no longer needs to.
type migration struct {
	c     liveConn
	e     ending
	still func(t *table) bool
}

// migrator closes connections at a bounded rate, so that a backend leaving
// with many clients does not turn into a reconnect storm. It is safe for
// concurrent use; its queue is drained by Server.WatchMembers.
type migrator struct {
	mu    sync.Mutex // guards queue
	queue []migration
	wake  chan struct{}
}

func newMigrator() *migrator { return &migrator{wake: make(chan struct{}, 1)} }

func (m *migrator) add(ms ...migration) {
	if len(ms) == 0 {
		return
	}
	m.mu.Lock()
	m.queue = append(m.queue, ms...)
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// take removes up to n migrations from the front of the queue.
func (m *migrator) take(n int) []migration {
	m.mu.Lock()
	defer m.mu.Unlock()
	n = min(n, len(m.queue))
	out := append([]migration(nil), m.queue[:n]...)
	clear(m.queue[:n])
	m.queue = m.queue[n:]
	if len(m.queue) == 0 {
		m.queue = nil
	}
	return out
}

func (m *migrator) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.queue)
}

// migrateTick is how often queued migrations are let through.
const migrateTick = 10 * time.Millisecond

// followMembers routes by the member set's latest snapshot and reconciles
// live connections with it, once per snapshot version. WatchMembers calls
// it on every change; Drain calls it before its first close, so that a
// client closed by the drain cannot reconnect to the drained backend on a
// table the watcher has not replaced yet.
func (s *Server) followMembers() {
	s.followMu.Lock()
	defer s.followMu.Unlock()
	snap := s.members.Snapshot()
	if snap.Version == s.router.table().snapshot.Version {
		return
	}
	old, cur := s.router.setMembers(snap)
	s.log.Info("ring changed", zap.Int("backends", cur.ring.Len()),
		zap.Uint64("version", cur.snapshot.Version))
	s.metrics.stateChanges(old.snapshot, cur.snapshot)
	s.reconcile(old, cur)
}

// WatchMembers keeps the ring in step with the member set and reconciles
// live connections with it, until ctx ends: connections of a backend that
// left are closed with 1012 (at migrate_rate when the backend is alive, at
// once when it died), and with migration on add, so are those whose key now
// belongs to a backend that joined.
func (s *Server) WatchMembers(ctx context.Context) {
	var aging sync.WaitGroup
	aging.Go(func() { s.ageConnections(ctx) })
	defer aging.Wait()
	var tick *time.Ticker
	var tickC <-chan time.Time
	budget, last := 0.0, time.Now()
	for {
		if tick == nil && s.mig.len() > 0 {
			tick, last, budget = time.NewTicker(migrateTick), time.Now(), 1
			tickC = tick.C
		}
		select {
		case <-ctx.Done():
			if tick != nil {
				tick.Stop()
			}
			return
		case <-s.members.Changed():
			s.followMembers()
		case <-s.mig.wake:
		case now := <-tickC:
			rate := float64(s.router.table().cfg.MigrateRate)
			// The budget holds two ticks' worth at most: a late tick
			// loses little, and no second sees more than about rate.
			budget = min(budget+now.Sub(last).Seconds()*rate, max(2*rate*migrateTick.Seconds(), 1))
			last = now
			n := int(budget)
			budget -= float64(n)
			t := s.router.table()
			for _, m := range s.mig.take(n) {
				if m.still == nil || m.still(t) {
					m.c.requestClose(m.e)
				}
			}
			if s.mig.len() == 0 {
				tick.Stop()
				tick, tickC = nil, nil
			}
		}
	}
}

// rebalanced is how a moved client is told to reconnect; why is one of the
// rebalance reasons.
func rebalanced(why string) ending {
	return ending{cause: causeRebalanced, rebalance: why, linger: true,
		clientCode: wsframe.StatusServiceRestart, clientReason: rebalanceReason(why), code: wsframe.StatusServiceRestart,
		backendCode: ws.StatusGoingAway, backendReason: "client moved to another backend"}
}

// rebalanceReason is said to the client in the close frame.
func rebalanceReason(why string) string {
	switch why {
	case rebalanceLeft:
		return "backend left the ring"
	case rebalanceDied:
		return "backend died"
	case rebalanceJoined:
		return "rebalanced to a new backend"
	}
	return "backend draining"
}

// reconcile decides what happens to live connections when the ring goes
// from old to cur.
func (s *Server) reconcile(old, cur *table) {
	cfg := cur.cfg
	dead := map[string]bool{}
	for _, m := range cur.snapshot.Members {
		if m.State == upstream.StateDead {
			dead[m.Addr] = true
		}
	}
	var queued []migration
	for i := range old.ring.Len() {
		addr := old.ring.Member(i).Addr
		if _, in := cur.ring.Index(addr); in || cfg.KeepRemoved || s.drainedByOperator(addr) {
			continue
		}
		conns := s.reg.sessions(addr)
		if dead[addr] {
			// Nothing to be gentle with: the clients are cut off already.
			for _, c := range conns {
				c.requestClose(rebalanced(rebalanceDied))
			}
			s.log.Info("backend died; closing its connections", zap.String("backend", addr), zap.Int("connections", len(conns)))
			s.events.add(RebalanceEvent{Kind: rebalanceDied, Backend: addr, Connections: len(conns)})
			continue
		}
		still := func(t *table) bool { _, in := t.ring.Index(addr); return !in }
		for _, c := range conns {
			queued = append(queued, migration{c: c, e: rebalanced(rebalanceLeft), still: still})
		}
		s.log.Info("backend left the ring; migrating its connections",
			zap.String("backend", addr), zap.Int("connections", len(conns)), zap.Int("rate", cfg.MigrateRate))
		s.events.add(RebalanceEvent{Kind: rebalanceLeft, Backend: addr, Connections: len(conns), Rate: cfg.MigrateRate})
	}
	if cfg.MigrateOnAdd {
		queued = append(queued, s.movedToNew(old, cur)...)
	}
	s.mig.add(queued...)
}

// movedToNew lists the connections whose key the ring now gives to a
// backend that just joined. Pinned connections (a route cookie named their
// backend) and connections placed by bounded loads stay where they are.
func (s *Server) movedToNew(old, cur *table) []migration {
	joined := map[string]bool{}
	for i := range cur.ring.Len() {
		addr := cur.ring.Member(i).Addr
		if _, in := old.ring.Index(addr); !in {
			joined[addr] = true
		}
	}
	if len(joined) == 0 {
		return nil
	}
	var out []migration
	for _, c := range s.reg.sessions("") {
		rc := c.relay()
		if rc.pinned {
			continue
		}
		was := old.ring.Lookup(rc.key)
		if was < 0 || old.ring.Member(was).Addr != rc.backend {
			continue // not on its ring owner: placed by load, left alone
		}
		if now := cur.ring.Lookup(rc.key); now >= 0 && joined[cur.ring.Member(now).Addr] {
			key, from := rc.key, rc.backend
			out = append(out, migration{c: c, e: rebalanced(rebalanceJoined), still: func(t *table) bool {
				i := t.ring.Lookup(key)
				return i >= 0 && t.ring.Member(i).Addr != from
			}})
		}
	}
	if len(out) > 0 {
		s.log.Info("backends joined; migrating the connections they now own", zap.Int("connections", len(out)))
		s.events.add(RebalanceEvent{Kind: rebalanceJoined, Connections: len(out), Rate: cur.cfg.MigrateRate})
	}
	return out
}

// Drain closes backend's live connections with 1012 at rate per second, as
// an operator does before maintenance, and takes the backend out of the
// ring first when the member source can, so that the clients reconnect
// elsewhere. It returns how many connections will be closed; the closing
// goes on in the background until done or the server shuts down.
func (s *Server) Drain(backend string, rate int) (int, error) {
	// The drain closes the backend's connections at its own rate: the ring
	// change it causes must not migrate them a second time.
	s.drainMu.Lock()
	s.draining[backend] = true
	s.drainMu.Unlock()
	if d, ok := s.members.(drainer); ok && !d.Drain(backend) {
		s.endDrain(backend)
		return 0, fmt.Errorf("no backend %s", backend)
	}
	s.followMembers()
	conns := s.reg.sessions(backend)
	if rate <= 0 {
		rate = s.router.table().cfg.MigrateRate
	}
	s.log.Info("draining backend", zap.String("backend", backend), zap.Int("connections", len(conns)), zap.Int("rate", rate))
	s.events.add(RebalanceEvent{Kind: rebalanceDrain, Backend: backend, Connections: len(conns), Rate: rate})
	s.drains.Go(func() {
		defer s.endDrain(backend)
		closePaced(s.life, conns, rate, rebalanced(rebalanceDrain))
	})
	return len(conns), nil
}

// drainedByOperator reports whether a drain is closing backend's
// connections.
func (s *Server) drainedByOperator(backend string) bool {
	s.drainMu.Lock()
	defer s.drainMu.Unlock()
	return s.draining[backend]
}

func (s *Server) endDrain(backend string) {
	s.drainMu.Lock()
	defer s.drainMu.Unlock()
	delete(s.draining, backend)
}

// Undrain puts a drained backend back in the ring, once its health allows.
func (s *Server) Undrain(backend string) error {
	d, ok := s.members.(drainer)
	if !ok || !d.Undrain(backend) {
		return fmt.Errorf("no backend %s", backend)
	}
	s.log.Info("backend undrained", zap.String("backend", backend))
	return nil
}

// drainer is a member source that can take a backend out of the ring on an
// operator's word, and put it back.
type drainer interface {
	Drain(addr string) bool
	Undrain(addr string) bool
}

// closePaced asks conns to end with e, at most rate a second, until done or
// ctx ends.
func closePaced(ctx context.Context, conns []liveConn, rate int, e ending) {
	gap := time.Second / time.Duration(max(rate, 1))
	step := max(gap, migrateTick)
	per := max(1, int(step/gap))
	t := time.NewTicker(step)
	defer t.Stop()
	for len(conns) > 0 {
		n := min(per, len(conns))
		for _, c := range conns[:n] {
			c.requestClose(e)
		}
		conns = conns[n:]
		if len(conns) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
