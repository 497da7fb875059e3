//go:build linux

package proxy

import (
	"errors"

	"golang.org/x/sys/unix"

	"github.com/wsedge/wsedge/proxy/evloop"
	"github.com/wsedge/wsedge/proxy/looptls"
	"github.com/wsedge/wsedge/proxy/wsframe"
)

// flow is one direction of an econn, from its source socket to its
// destination. Kept small: an idle connection is mostly two of these.
type flow struct {
	buf   *[]byte // borrowed read buffer while input or output points into it
	inOff int32   // input read and not framed yet is (*buf)[inOff:inEnd]
	inEnd int32
	out   []byte  // framed and not written yet
	own   *[]byte // the proxy's own frames waiting for a boundary or for dst to take writes; nil when none

	stalledAt int64 // when a write to dst first could not finish; 0 while it takes writes

	outBoundary bool // out ends on a frame boundary
	outClose    bool // out ends with a close frame
	ownClose    bool // own ends with a close frame
	midFrame    bool // dst has part of a relayed frame
	closed      bool // a close frame went to dst: everything after is dropped (RFC 6455 section 5.5.1)
	dstDead     bool // dst failed: everything for it is dropped
	srcDone     bool // src sent its close frame or ended
	// readable: src may hold bytes not read yet. The sockets are
	// edge-triggered, so this is the flow's own memory of the last edge
	// until a short read says the socket is drained.
	readable bool
	// srcShut: src's peer has shut down or failed. Its last bytes and the
	// end came with one edge, and a short read of the bytes leaves the end
	// unread, so reads go on until one returns it.
	srcShut bool
	// busy: a read or write of the flow waits in the loop's batch; the
	// flow goes on when it is done.
	busy bool
	// blocked: dst did not take the last write whole; writes wait for its
	// next edge.
	blocked bool
}

// input is what was read and not framed yet.
func (d *flow) input() []byte {
	if d.buf == nil {
		return nil
	}
	return (*d.buf)[d.inOff:d.inEnd]
}

// pending reports whether the flow holds bytes it has not written.
func (d *flow) pending() bool { return len(d.out) > 0 || d.own != nil }

// take makes bytes read during the handshake the flow's first input.
func (d *flow) take(pool *evloop.BufPool, pending []byte) {
	if len(pending) == 0 {
		return
	}
	d.buf = pool.Get()
	d.inOff, d.inEnd = 0, int32(copy(*d.buf, pending))
}

// drive moves d on until it waits: for a read or write it asks the loop
// for, for dst to take writes, or for src to have bytes. Each finished
// read or write drives the flow again, so a flow does one system call's
// worth per round of the loop's batch, and one busy connection does not
// starve the others.
func (c *econn) drive(d *flow, now int64) {
	for !c.gone && !d.busy {
		if d.closed || d.dstDead {
			d.out, d.own = nil, nil // nothing more goes to dst
		}
		if len(d.out) > 0 || d.own != nil && !d.midFrame {
			if !d.blocked {
				c.queueWrite(d)
			}
			return
		}
		if d.inOff < d.inEnd {
			c.frame(d, now)
			continue
		}
		c.release(d, now)
		// A connection on its way to a new process is not read: what it
		// holds is written out, and the rest waits in its sockets.
		if !d.readable || d.srcDone || c.move != moveNone || d == &c.upf && c.limits.waiting(now) {
			return
		}
		buf := c.loop.GetBuf()
		c.loop.queue(c, d, opRead, *buf, buf)
		return
	}
}

// queueWrite asks the loop to write what d holds for its destination: the
// relayed bytes first, the proxy's own frames once between frames.
func (c *econn) queueWrite(d *flow) {
	if len(d.out) > 0 {
		c.loop.queue(c, d, opWriteOut, d.out, nil)
	} else {
		c.loop.queue(c, d, opWriteOwn, *d.own, nil)
	}
}

// completed takes the result of a read or write the loop did for c, and
// drives the flow on.
func (c *econn) completed(op *ioOp, now int64) {
	if c.gone {
		if op.Of.buf != nil {
			c.loop.PutBuf(op.Of.buf)
		}
		return
	}
	d := op.Of.d
	d.busy = false
	switch op.Of.kind {
	case opRead:
		c.readDone(d, op.Of.buf, op.N, op.Err, now)
	case opWriteOut:
		c.outWritten(d, op.N, op.Err, now)
	case opWriteOwn:
		c.ownWritten(d, op.N, len(op.P), op.Err, now)
	}
	if op.Of.held && !d.dstDead {
		// The TLS client's socket did not take all the records: they wait
		// in its transport, and d waits for the next writable edge.
		d.blocked = true
		if d.stalledAt == 0 {
			d.stalledAt = now
		}
	}
	c.drive(d, now)
	c.settle(now)
}

// readDone takes what a read from d's source brought into buf.
func (c *econn) readDone(d *flow, buf *[]byte, n int, err error, now int64) {
	switch {
	case n > 0:
		d.buf, d.inOff, d.inEnd = buf, 0, int32(n)
		// A short read drained the socket: the next bytes bring an edge.
		// Not so the end of a peer that has shut down: it is read next;
		// nor a TLS peer's records that its transport read and has not
		// decrypted yet, where no edge announces them.
		side := c.tlsOf(d, opRead)
		d.readable = n == len(*buf) || d.srcShut || side != nil && side.Waiting()
		if d == &c.upf {
			c.bytesUp.Add(int64(n))
			c.lastRead.Store(now)
			c.loop.stats.add(true, 0, 0, uint64(n))
			if c.limits != nil {
				c.spendLimits(0, uint64(n), now)
			}
		} else {
			c.bytesDown.Add(int64(n))
			c.loop.stats.add(false, 0, 0, uint64(n))
		}
		return
	case errors.Is(err, unix.EAGAIN):
		d.readable = false
	case err == nil:
		c.srcEnded(d, nil, now)
	default:
		c.srcEnded(d, err, now)
	}
	c.loop.PutBuf(buf)
}

// frame passes d's input through its framer and decides about each step.
func (c *econn) frame(d *flow, now int64) {
	up := d == &c.upf
	f := &c.down
	if up {
		f = &c.up
	}
	n, out, ev := f.Step(d.input())
	d.inOff += int32(n)
	switch ev {
	case wsframe.Forward:
		d.out, d.outBoundary, d.outClose = out, f.AtBoundary(), false
		c.lastData.Store(now)
	case wsframe.Control:
		var e ending
		var closing, swallow bool
		if up {
			swallow, e, closing = c.upControl(out, now)
		} else {
			e, closing = c.downControl(out)
		}
		if swallow {
			return
		}
		d.out, d.outBoundary, d.outClose = out, true, closing
		if closing {
			// Nothing may follow a close frame; whatever did is dropped.
			d.srcDone, d.inOff = true, d.inEnd
			c.finish(e, now)
		}
	case wsframe.Invalid:
		d.srcDone, d.inOff = true, d.inEnd
		if up {
			c.finish(c.upViolation(), now)
		} else {
			c.finish(c.downViolation(), now)
		}
	}
}

// outWritten takes the result of writing d's relayed bytes.
func (c *econn) outWritten(d *flow, n int, err error, now int64) {
	if d.closed || d.dstDead {
		return // dropped while the write waited, which was then not done
	}
	if n > 0 && c.end != nil {
		// Bytes still going out before a close: lingering is measured from
		// the last progress, not from when the close was read.
		c.lingerUntil = now + int64(c.srv.closeWait)
	}
	d.out = d.out[n:]
	if len(d.out) == 0 {
		d.out = nil
		d.midFrame = !d.outBoundary
		if d.outClose {
			d.closed = true
			d.own = nil
		}
		d.stalledAt = 0
		return
	}
	c.stalled(d, err, now)
}

// ownWritten takes the result of writing the first sent bytes of the
// proxy's own frames queued for d's destination; more may have been
// queued behind them meanwhile.
func (c *econn) ownWritten(d *flow, n, sent int, err error, now int64) {
	if d.closed || d.dstDead || d.own == nil {
		return
	}
	*d.own = (*d.own)[n:]
	switch {
	case len(*d.own) == 0:
		d.own = nil
		if d.ownClose {
			d.closed = true
		}
		d.stalledAt = 0
	case n == sent:
		d.stalledAt = 0
	default:
		c.stalled(d, err, now)
	}
}

// stalled handles a write to d's destination that did not take
// everything: dst is full, or failed.
func (c *econn) stalled(d *flow, err error, now int64) {
	if err != nil && !errors.Is(err, unix.EAGAIN) {
		d.dstDead = true
		d.out, d.own = nil, nil
		if d == &c.upf {
			c.finish(backendWriteEnded(err), now)
		} else {
			c.finish(clientWriteEnded(err), now)
		}
		return
	}
	d.blocked = true
	if d.stalledAt == 0 {
		d.stalledAt = now
	}
}

// sendOwn queues a frame of the proxy's own for d's destination and writes
// it when the relayed stream is between frames.
func (c *econn) sendOwn(d *flow, frame []byte, isClose bool, now int64) {
	if d.closed || d.ownClose || d.dstDead {
		return
	}
	if d.own == nil {
		d.own = new([]byte)
	}
	// Appended, even behind a ping: part of the ping may be written
	// already, and the close must follow it whole.
	d.ownClose = isClose
	*d.own = append(*d.own, frame...)
	if !d.busy && !d.blocked && !d.midFrame && len(d.out) == 0 {
		c.queueWrite(d)
	}
}

// srcEnded handles the end of d's source: EOF, reset or failure.
func (c *econn) srcEnded(d *flow, err error, now int64) {
	d.srcDone = true
	if d == &c.upf {
		c.finish(clientReadEnded(err), now)
	} else {
		c.finish(backendReadEnded(err), now)
	}
}

// writeLast writes, once and without waiting, what d still has for its
// destination and a write of the batch would have taken: the close frame a
// connection ends with must not be dropped with the batch's operation.
func (c *econn) writeLast(d *flow) {
	if d.closed || d.dstDead || d.blocked {
		return
	}
	_, dst := c.ends(d)
	write := func(p []byte) (int, error) { return evloop.WriteFD(dst, p) }
	if side := c.tlsOf(d, opWriteOut); side != nil {
		write = side.Write
	}
	if len(d.out) > 0 {
		if n, _ := write(d.out); n < len(d.out) {
			return
		}
		d.midFrame = !d.outBoundary
	}
	if d.own != nil && !d.midFrame {
		write(*d.own)
	}
}

// tlsOf returns the TLS through which an operation of kind on d goes:
// the client's for reads from the client and writes to it, the backend's
// for the others; nil when that end speaks plain TCP.
func (c *econn) tlsOf(d *flow, kind opKind) *looptls.Side {
	if (d == &c.upf) == (kind == opRead) {
		return c.ctls
	}
	return c.btls
}

// flushed reports whether d's destination holds nothing more of d's
// writes, now that it takes writes again: a TLS client's socket may still
// owe encrypted bytes, and d waits for them to go.
func (c *econn) flushed(d *flow, now int64) bool {
	side := c.tlsOf(d, opWriteOut)
	if side == nil || !side.Held() {
		return true
	}
	done, err := side.Flush()
	if err != nil {
		c.stalled(d, err, now)
		return false
	}
	if done {
		d.stalledAt = 0
	}
	return done
}

// release gives d's read buffer back once nothing points into it, and
// counts the frames it held.
func (c *econn) release(d *flow, now int64) {
	up := d == &c.upf
	f := &c.down
	if up {
		f = &c.up
	}
	if frames, messages := f.TakeFrames(); frames > 0 {
		c.loop.stats.add(up, frames, messages, 0)
		c.counted(up, messages, now)
		if up && c.limits != nil {
			c.spendLimits(messages, 0, now)
		}
	}
	if d.buf != nil && d.inOff == d.inEnd && len(d.out) == 0 {
		c.loop.PutBuf(d.buf)
		d.buf, d.inOff, d.inEnd, d.out = nil, 0, 0, nil
	}
}

// spendLimits counts what the client sent against its rate limits: over
// them, its reads wait (TCP pushes back on it meanwhile); over them for
// rate_limit_grace, it is closed.
func (c *econn) spendLimits(messages, bytes uint64, now int64) {
	slowed, closing := c.limits.spend(c.cfg, messages, bytes, now)
	switch {
	case closing:
		// A client still sending while its close handshake runs stays
		// over its rate; it was closed once, and is counted once.
		if c.end == nil {
			c.srv.metrics.limitHit(limitClientRateClosed)
		}
		c.finish(rateLimited(), now)
	case slowed:
		c.srv.metrics.limitHit(limitClientRateSlowed)
	}
}
