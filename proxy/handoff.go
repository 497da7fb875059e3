package proxy

import (
	"context"
	"time"

	"github.com/gobwas/ws"
	"go.uber.org/zap"

	"github.com/wsedge/wsedge/proxy/wsframe"
)

// causeUpgraded: the connection could not move to the process that
// replaced this one, and was closed once upgrade_linger ran out.
const causeUpgraded = "proxy_upgraded"

// upgraded is how a connection that stayed behind in a binary upgrade
// ends: its client reconnects, and lands on the new process.
func upgraded() ending {
	return ending{cause: causeUpgraded, linger: true,
		clientCode: wsframe.StatusServiceRestart, clientReason: "proxy upgraded", code: wsframe.StatusServiceRestart,
		backendCode: ws.StatusGoingAway, backendReason: "proxy upgraded"}
}

// Retire ends a server whose clients a new process has taken over; the
// caller has closed its listeners. The connections that stayed (over TLS,
// whose session cannot move) go on relaying until lingered is closed, or
// until they end by themselves; then those left are closed with 1012 at
// migrate_rate, so that their clients reconnect to the new process; then
// the server shuts down as Shutdown does. ctx bounds it all.
func (s *Server) Retire(ctx context.Context, lingered <-chan struct{}) error {
	if n := len(s.reg.sessions("")); n > 0 {
		s.log.Info("connections that could not move stay until upgrade_linger runs out", zap.Int("connections", n))
		select {
		case <-s.reg.emptied():
		case <-lingered:
		case <-ctx.Done():
		}
	}
	if conns := s.reg.sessions(""); len(conns) > 0 && ctx.Err() == nil {
		rate := s.router.table().cfg.MigrateRate
		s.log.Info("closing the connections that could not move", zap.Int("connections", len(conns)),
			zap.Int("rate", rate))
		closePaced(ctx, conns, rate, upgraded())
		t := time.NewTimer(s.closeWait + lastWordTimeout)
		select {
		case <-s.reg.emptied():
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	return s.Shutdown(ctx)
}
