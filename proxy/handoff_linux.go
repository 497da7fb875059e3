//go:build linux

package proxy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/wsedge/wsedge/proxy/evloop"
)

// A binary upgrade moves relayed WebSockets to a new process: their two
// sockets, by SCM_RIGHTS, and their state, as a connRecord. Each loop of
// the old process stops reading its connections, writes out what they
// hold (for a bounded time), and hands them over at rest; the new process
// restores them on its own loops once the whole round is in. Until the
// new process says it has them, the old one keeps its copies of the
// sockets and takes them back on any failure, so a connection is never
// relayed by both, nor by neither.
//
// Connections that cannot move stay: those over TLS on either side, whose
// session state crypto/tls cannot give away, and those still in their
// handshake, which a later round picks up once they are relayed.

// moveState is where a hand-over stands with one connection.
type moveState uint8

const (
	moveNone     moveState = iota // relayed as usual
	moveFlushing                  // not read any more; what it holds is being written out
	moveHanded                    // at rest, its record taken: the new process's to restore
)

// handedRetry is how soon a close asked of a handed connection is asked
// again: by then the hand-over is decided.
const handedRetry = 50 * time.Millisecond

// HandOverResult is what one round of HandOver did.
type HandOverResult struct {
	Moved   int           // connections the new process took
	Stayed  int           // connections that cannot move (TLS), or could not be brought to rest
	Pending int           // bytes the moved connections held, which the new process writes
	Took    time.Duration // from the first connection stopped to the last restored
}

// HandOverOptions bounds a round of HandOver.
type HandOverOptions struct {
	// Flush is how long connections may take to write out what they hold
	// before what is left travels with them. Zero means 500ms.
	Flush time.Duration
}

// errLoopsStopped is why a hand-over cannot go on: the server shut down.
var errLoopsStopped = errors.New("event loops stopped")

// HandoffState is what the proxy carries into the new process besides its
// connections: where its request IDs stand. Version and the sockets are
// the caller's to fill in.
func (s *Server) HandoffState() HandoffState {
	// The new process numbers from far past anything this one may still
	// give to handshakes that are under way.
	return HandoffState{Version: HandoffVersion, idPrefix: s.idPrefix, nextID: s.ids.Load() + 1<<32}
}

// ContinueFrom makes the server go on from the old process's state. Call
// it before Serve.
func (s *Server) ContinueFrom(st HandoffState) {
	if st.idPrefix != "" {
		s.idPrefix = st.idPrefix
	}
	if st.nextID > s.ids.Load() {
		s.ids.Store(st.nextID)
	}
}

// Handshaking counts the clients in their handshake on the loops: a round
// of HandOver leaves them, and the next takes those relayed since.
func (s *Server) Handshaking() int {
	if !s.poll.started.Load() {
		return 0
	}
	n := 0
	for _, l := range s.poll.loops {
		onLoop(l, func() {
			l.Each(func(fd int, h evloop.Handler) {
				if u, ok := h.(*upgrade); ok && fd == u.cfd {
					n++
				}
			})
		})
	}
	return n
}

// handedConn is a connection whose record is taken, with its sockets.
type handedConn struct {
	c        *econn
	record   []byte
	cfd, bfd int
}

// HandOver moves every plain-TCP WebSocket this server relays to the new
// process at the other end of h, in one round: conns messages, then
// commit, answered by committed. It returns once the new process has
// them; on any failure it takes them all back and they are relayed here as
// if nothing happened. Connections over TLS stay, and so do those still
// in their handshake: call HandOver again for them once they are relayed.
func (s *Server) HandOver(ctx context.Context, h *HandoffConn, opts HandOverOptions) (HandOverResult, error) {
	var res HandOverResult
	if opts.Flush <= 0 {
		opts.Flush = 500 * time.Millisecond
	}
	if !s.poll.started.Load() {
		return res, s.sendRound(ctx, h, nil, &res) // no loop ever ran: nothing to move
	}
	loops := s.poll.loops
	start := time.Now()
	frozen := make([][]*econn, len(loops))
	for i, l := range loops {
		err := onLoop(l, func() {
			var stay int
			frozen[i], stay = l.freezeConns(time.Now().UnixNano())
			res.Stayed += stay
		})
		if err != nil {
			s.takeBack(loops, frozen)
			return res, err
		}
	}
	// Let them write out what they hold, for opts.Flush at most.
	for deadline := start.Add(opts.Flush); ; {
		busy := 0
		for i, l := range loops {
			if err := onLoop(l, func() { busy += restless(frozen[i]) }); err != nil {
				s.takeBack(loops, frozen)
				return res, err
			}
		}
		if busy == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	// Take their records. A connection with a read or write in its loop's
	// batch is at rest a turn later at most.
	var handed []handedConn
	for i, l := range loops {
		left := frozen[i]
		for try := 0; len(left) > 0; try++ {
			var busy []*econn
			if err := onLoop(l, func() { handed, busy = l.handConns(left, handed) }); err != nil {
				s.takeBack(loops, frozen)
				return res, err
			}
			left = busy
			if try == 100 {
				// Not at rest after 100 turns: leave them here.
				res.Stayed += len(busy)
				onLoop(l, func() { l.takeBackConns(busy) })
				break
			}
		}
	}
	err := s.sendRound(ctx, h, handed, &res)
	if err != nil {
		s.takeBack(loops, frozen)
		return res, err
	}
	for i, l := range loops {
		onLoop(l, func() { l.movedOut(frozen[i]) })
	}
	res.Took = time.Since(start)
	return res, nil
}

// sendRound sends the records and sockets of handed in batches, commits
// them, and waits for the new process to say it has them.
func (s *Server) sendRound(ctx context.Context, h *HandoffConn, handed []handedConn, res *HandOverResult) error {
	if d, ok := ctx.Deadline(); ok {
		h.SetDeadline(d)
		defer h.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { h.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	for len(handed) > 0 {
		batch := handed[:min(handoffBatch, len(handed))]
		handed = handed[len(batch):]
		records := make([][]byte, len(batch))
		fds := make([]int, 0, 2*len(batch))
		for i, hc := range batch {
			records[i] = hc.record
			fds = append(fds, hc.cfd, hc.bfd)
			res.Moved++
		}
		if err := h.send(msgConns, encodeConns(records), fds); err != nil {
			return err
		}
	}
	if err := h.send(msgCommit, encodeCount(res.Moved), nil); err != nil {
		return err
	}
	p, _, err := h.expect(msgCommitted)
	if err != nil {
		return err
	}
	if n, err := decodeCount(p); err != nil || n != res.Moved {
		return fmt.Errorf("new process took %d connections of %d", n, res.Moved)
	}
	return nil
}

// takeBack gives every frozen connection back to its loop.
func (s *Server) takeBack(loops []*loop, frozen [][]*econn) {
	for i, l := range loops {
		onLoop(l, func() { l.takeBackConns(frozen[i]) })
	}
}

// onLoop runs f on l's goroutine and waits for it.
func onLoop(l *loop, f func()) error {
	done := make(chan struct{})
	if !l.Post(func() { defer close(done); f() }) {
		return errLoopsStopped
	}
	<-done
	return nil
}

// freezeConns stops reading every connection of the loop that can move,
// and says how many cannot. What they hold goes on being written.
func (l *loop) freezeConns(now int64) (frozen []*econn, stay int) {
	l.Each(func(fd int, h evloop.Handler) {
		c, ok := h.(*econn)
		if !ok || fd != int(c.cfd) || c.gone || c.move != moveNone {
			return
		}
		if c.ctls != nil || c.btls != nil {
			stay++
			return
		}
		frozen = append(frozen, c)
	})
	for _, c := range frozen {
		c.move = moveFlushing
		c.drive(&c.upf, now)
		c.drive(&c.downf, now)
		c.settle(now)
	}
	return frozen, stay
}

// restless counts the connections of conns that still have bytes to
// write and a destination that may take them.
func restless(conns []*econn) int {
	n := 0
	for _, c := range conns {
		if !c.gone && (!flowAtRest(&c.upf) || !flowAtRest(&c.downf)) {
			n++
		}
	}
	return n
}

// flowAtRest reports whether d has nothing it could write without reading
// more: a destination that stopped taking writes counts as not at rest
// until the flush time is up, since it may take them in a moment.
func flowAtRest(d *flow) bool {
	if d.busy {
		return false
	}
	if d.closed || d.dstDead {
		return true
	}
	return len(d.out) == 0 && (d.own == nil || d.midFrame)
}

// handConns takes the records of the connections of conns with no read or
// write in the loop's batch, appending them to handed, and returns the
// others. A connection handed is left alone from then on: its events are
// ignored and its timer cancelled, until movedOut or takeBackConns.
func (l *loop) handConns(conns []*econn, handed []handedConn) ([]handedConn, []*econn) {
	var busy []*econn
	w := &wireWriter{}
	for _, c := range conns {
		if c.gone {
			continue
		}
		if c.upf.busy || c.downf.busy {
			busy = append(busy, c)
			continue
		}
		c.move = moveHanded
		l.wheel.Cancel(c)
		w.b = w.b[:0]
		appendRecord(w, c.record())
		handed = append(handed, handedConn{c: c, record: append([]byte(nil), w.b...), cfd: int(c.cfd), bfd: int(c.bfd)})
	}
	return handed, busy
}

// takeBackConns relays conns here again. Their sockets may have had edges
// meanwhile, which were not looked at: both are read and written afresh.
func (l *loop) takeBackConns(conns []*econn) {
	now := time.Now().UnixNano()
	for _, c := range conns {
		if c.gone || c.move == moveNone {
			continue
		}
		c.move = moveNone
		for _, d := range [2]*flow{&c.upf, &c.downf} {
			d.readable, d.blocked = true, false
		}
		c.drive(&c.upf, now)
		c.drive(&c.downf, now)
		c.settle(now)
	}
}

// movedOut forgets the connections of conns the new process took: this
// process's copies of their sockets are closed, which leaves the sockets
// open there, and their buffers go back to the pool. They are not logged
// or counted as closed: they were not.
func (l *loop) movedOut(conns []*econn) {
	for _, c := range conns {
		if c.gone || c.move != moveHanded {
			continue
		}
		c.gone = true
		l.wheel.Cancel(c)
		// Release, not Unregister: the sockets live on in the new process,
		// and epoll would go on reporting them here.
		l.Release(int(c.cfd))
		l.Release(int(c.bfd))
		closeFDs([]int{int(c.cfd), int(c.bfd)})
		for _, d := range [2]*flow{&c.upf, &c.downf} {
			if d.buf != nil {
				l.PutBuf(d.buf)
			}
			d.buf, d.inOff, d.inEnd, d.out, d.own = nil, 0, 0, nil, nil
		}
		c.srv.reg.remove(c)
	}
}

// record is the connection's state at rest.
func (c *econn) record() *connRecord {
	r := &connRecord{
		id: c.id, reqID: c.requestID(), place: c.placement, started: c.started,
		up: c.up, down: c.down,
		bytesUp: c.bytesUp.Load(), bytesDown: c.bytesDown.Load(),
		lastPong: c.lastPong.Load(), lastRead: c.lastRead.Load(), lastData: c.lastData.Load(),
		msgTotal:  [2]uint64{c.msgs.total[0].Load(), c.msgs.total[1].Load()},
		msgRate:   [2]uint32{c.msgs.rate[0].Load(), c.msgs.rate[1].Load()},
		msgWindow: c.msgs.window.Load(), msgInWin: c.msgs.inWin,
		settings: settingsOf(c.cfg),
		nextPing: c.nextPing, pingAt: c.pingAt, pingSeq: c.pingSeq,
	}
	r.up.CountSizes(nil)
	r.down.CountSizes(nil)
	for i, d := range [2]*flow{&c.upf, &c.downf} {
		f := &r.flows[i]
		f.out, f.input = d.out, d.input()
		if d.own != nil {
			f.own = *d.own
		}
		f.stalledAt = d.stalledAt
		f.flags = flowFlags(d.outBoundary, d.outClose, d.ownClose, d.midFrame, d.closed, d.dstDead, d.srcDone, d.srcShut)
	}
	if c.end != nil {
		r.end = recordOfEnding(c.end)
		r.lingerUntil = c.lingerUntil
	}
	if c.limits != nil {
		l := *c.limits
		r.limits = &l
	}
	return r
}
