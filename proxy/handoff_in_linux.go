//go:build linux

package proxy

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// The new process's side of a hand-over: connections arrive in rounds,
// are restored whole or refused whole, and relay once the round commits.

// adoptedRound is a round of connections received and not yet started:
// their records and sockets, until the old process commits.
type adoptedRound struct {
	conns []*econn
	fds   []int // every socket received, closed if the round is refused
}

// TakeOver receives one round of connections from the old process at the
// other end of h (HandOver there) and, once it commits, relays them on
// this server's loops. It reports done when the old process said it has
// nothing more to hand over instead. A round that is malformed in any way
// is refused whole: the old process is told why and keeps the connections.
func (s *Server) TakeOver(ctx context.Context, h *HandoffConn) (n int, done bool, err error) {
	loops, err := s.poll.all()
	if err != nil {
		return 0, false, err
	}
	if d, ok := ctx.Deadline(); ok {
		h.SetDeadline(d)
		defer h.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { h.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	round := &adoptedRound{}
	cfgs := map[connSettings]*Config{}
	base := s.router.table().cfg
	refuse := func(err error) (int, bool, error) {
		closeFDs(round.fds)
		var refused *HandoffRefused
		if !errors.As(err, &refused) {
			h.Fail(fmt.Sprintf("new process refused the connections: %v", err))
		}
		return 0, false, err
	}
	for {
		kind, p, fds, err := h.recv()
		if err != nil {
			return refuse(err)
		}
		switch kind {
		case msgDone:
			closeFDs(fds)
			if len(round.conns) > 0 {
				return refuse(fmt.Errorf("%w: done before commit", errHandoffEncoding))
			}
			return 0, true, nil
		case msgConns:
			round.fds = append(round.fds, fds...)
			recs, err := decodeConns(p, len(fds))
			if err != nil {
				return refuse(err)
			}
			for i, r := range recs {
				l := loops[s.poll.next.Add(1)%uint32(len(loops))]
				round.conns = append(round.conns, s.restore(l, r, fds[2*i], fds[2*i+1], base, cfgs))
			}
		case msgCommit:
			closeFDs(fds)
			want, err := decodeCount(p)
			if err == nil && want != len(round.conns) {
				err = fmt.Errorf("%w: commit of %d connections, %d came", errHandoffEncoding, want, len(round.conns))
			}
			if err != nil {
				return refuse(err)
			}
			// Say so before relaying anything: an old process that never
			// hears it takes the connections back, and none of their bytes
			// may have been read here.
			if err := h.send(msgCommitted, encodeCount(len(round.conns)), nil); err != nil {
				return refuse(err)
			}
			for _, c := range round.conns {
				s.reg.adopt(c)
				if !c.loop.Post(c.resume) { // the server is shutting down
					closeFDs([]int{int(c.cfd), int(c.bfd)})
					s.reg.remove(c)
				}
			}
			return len(round.conns), false, nil
		default:
			closeFDs(fds)
			return refuse(fmt.Errorf("%w: message %d in a round", errHandoffEncoding, kind))
		}
	}
}

// restore makes an econn of r on l, with its sockets; it is relayed once
// resumed. cfgs holds the configs restored so far, by settings, so that
// connections that started alike share one.
func (s *Server) restore(l *loop, r *connRecord, cfd, bfd int, base Config, cfgs map[connSettings]*Config) *econn {
	cfg := cfgs[r.settings]
	if cfg == nil {
		cfg = r.settings.apply(base)
		cfgs[r.settings] = cfg
	}
	c := &econn{loop: l, cfd: int32(cfd), bfd: int32(bfd)}
	c.id, c.srv, c.cfg, c.placement, c.started = r.id, s, cfg, r.place, r.started
	if r.reqID != s.requestID(r.id) {
		c.reqID = r.reqID
	}
	c.up, c.down = r.up, r.down
	c.up.CountSizes(&l.stats.up.sizes)
	c.down.CountSizes(&l.stats.down.sizes)
	c.bytesUp.Store(r.bytesUp)
	c.bytesDown.Store(r.bytesDown)
	c.lastPong.Store(r.lastPong)
	c.lastRead.Store(r.lastRead)
	c.lastData.Store(r.lastData)
	c.msgs.total[0].Store(r.msgTotal[0])
	c.msgs.total[1].Store(r.msgTotal[1])
	c.msgs.rate[0].Store(r.msgRate[0])
	c.msgs.rate[1].Store(r.msgRate[1])
	c.msgs.window.Store(r.msgWindow)
	c.msgs.inWin = r.msgInWin
	for i, d := range [2]*flow{&c.upf, &c.downf} {
		f := &r.flows[i]
		if len(f.out) > 0 {
			d.out = append([]byte(nil), f.out...)
		}
		if len(f.input) > 0 {
			d.buf = s.pool.Get()
			d.inOff, d.inEnd = 0, int32(copy(*d.buf, f.input))
		}
		if len(f.own) > 0 {
			own := append([]byte(nil), f.own...)
			d.own = &own
		}
		d.stalledAt = f.stalledAt
		d.outBoundary, d.outClose, d.ownClose = f.has(flowOutBoundary), f.has(flowOutClose), f.has(flowOwnClose)
		d.midFrame, d.closed, d.dstDead = f.has(flowMidFrame), f.has(flowClosed), f.has(flowDstDead)
		d.srcDone, d.srcShut = f.has(flowSrcDone), f.has(flowSrcShut)
		// Edges are not carried: registering the sockets reports what
		// they hold, and only those are read. Reading every one at once
		// would lend a read buffer to each, thousands in one batch.
		d.readable = false
	}
	c.nextPing, c.pingAt, c.pingSeq = r.nextPing, r.pingAt, r.pingSeq
	if r.end != nil {
		c.end = r.end.ending()
		c.lingerUntil = r.lingerUntil
	}
	c.limits = r.limits
	return c
}

// resume registers a restored connection's sockets with its loop and
// relays it from where the old process left it.
func (c *econn) resume() {
	now := time.Now().UnixNano()
	if err := c.loop.Register(int(c.cfd), c, relayInterest); err != nil {
		c.finish(clientReadEnded(err), now)
		c.teardown(now)
		return
	}
	if err := c.loop.Register(int(c.bfd), c, relayInterest); err != nil {
		c.finish(backendReadEnded(err), now)
		c.teardown(now)
		return
	}
	c.drive(&c.upf, now)
	c.drive(&c.downf, now)
	c.settle(now)
}

// adopt registers a connection restored from another process: its load
// counts as a handshake would have, then it is live.
func (r *registry) adopt(c liveConn) {
	rc := c.relay()
	r.mu.Lock()
	r.pending[rc.backend]++
	r.perIP[rc.client]++
	r.total++
	r.mu.Unlock()
	r.add(c)
}
