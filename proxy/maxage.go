package proxy

import (
	"context"
	"time"

	"github.com/cespare/xxhash/v2"
)

// ageLimit is when the connection reaches its max_connection_age: the
// configured age times 1±jitter, the jitter drawn once per connection from
// its number, so that clients that connected together reconnect apart and
// a connection's limit never moves. 0 when its config sets none.
func (c *relayConn) ageLimit() int64 {
	age := c.cfg.MaxConnectionAge
	if age <= 0 {
		return 0
	}
	u := float64(xxhash.Sum64(c.idBytes())>>11) / (1 << 53) // uniform in [0, 1)
	j := c.cfg.MaxConnectionAgeJitter
	return c.started + int64(float64(age)*(1-j+2*j*u))
}

func (c *relayConn) idBytes() []byte {
	b := make([]byte, 8)
	for i := range b {
		b[i] = byte(c.id >> (8 * i))
	}
	return b
}

// ageConnections closes connections older than their max_connection_age
// with 1012, through the migrator: at migrate_rate, as any rebalance, so
// that a fleet that connected at once does not reconnect at once. It looks
// at most once a second, and not at all while no live connection has an
// age limit, until ctx ends.
func (s *Server) ageConnections(ctx context.Context) {
	t := time.NewTicker(ageScanEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s.reg.agedCount() == 0 {
			continue
		}
		now := time.Now().UnixNano()
		var due []migration
		s.reg.each(func(lc liveConn) {
			c := lc.relay()
			if at := c.ageLimit(); at != 0 && now >= at && !c.aging {
				c.aging = true
				due = append(due, migration{c: lc, e: maxAged()})
			}
		})
		for range due {
			s.metrics.limitHit(limitMaxAge)
		}
		if len(due) > 0 {
			s.events.add(RebalanceEvent{Kind: rebalanceMaxAge, Connections: len(due),
				Rate: s.router.table().cfg.MigrateRate})
		}
		s.mig.add(due...)
	}
}

// ageScanEvery is how often connections are looked at for their age: the
// migrator paces the closes, so a second's lateness costs nothing.
const ageScanEvery = time.Second
