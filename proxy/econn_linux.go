//go:build linux

package proxy

import (
	"errors"
	"math/rand/v2"
	"net"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/wsedge/wsedge/proxy/evloop"
	"github.com/wsedge/wsedge/proxy/looptls"
	"github.com/wsedge/wsedge/proxy/wsframe"
)

// econn drives a relayed WebSocket from an event loop: non-blocking reads
// and writes on the two sockets, a borrowed buffer only while bytes are in
// flight, and timers on the loop's wheel. All its methods but requestClose
// and abort run on the loop's goroutine.
type econn struct {
	relayConn
	evloop.WheelEntry[econn]
	loop *loop
	cfd  int32 // client socket
	bfd  int32 // backend socket
	// ctls and btls are the client's and the backend's TLS, through which
	// their sides are read and written; nil for a peer on plain TCP.
	ctls, btls *looptls.Side

	upf   flow // client to backend
	downf flow // backend to client

	nextPing int64 // when the next heartbeat ping is due; 0 when heartbeats are off
	pingAt   int64 // when the outstanding ping went out; 0 when none
	pingSeq  uint32
	gone     bool // torn down

	end         *ending // how it ends; nil while it does not
	lingerUntil int64   // ended and waiting for the peers' close frames until then
}

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

// ends returns d's source and destination sockets.
func (c *econn) ends(d *flow) (src, dst int) {
	if d == &c.upf {
		return int(c.cfd), int(c.bfd)
	}
	return int(c.bfd), int(c.cfd)
}

// Timer is the connection's entry on its loop's wheel: one deadline at a
// time (nextDeadline), which Expire handles.
func (c *econn) Timer() *evloop.WheelEntry[econn] { return &c.WheelEntry }

// startEconn hands a handshaken connection pair to an event loop. The
// net.Conns are given up: their sockets are duplicated into plain
// descriptors, which is what the loop's state holds.
func (s *Server) startEconn(l *loop, cfg *Config, rt route, client, backend net.Conn,
	clientPending, backendPending []byte, extensions bool) (*econn, error) {
	cfd, err := detachFD(client)
	if err != nil {
		client.Close()
		backend.Close()
		s.reg.unreserve(rt.backend, rt.client)
		return nil, err
	}
	bfd, err := detachFD(backend)
	if err != nil {
		unix.Close(cfd)
		backend.Close()
		s.reg.unreserve(rt.backend, rt.client)
		return nil, err
	}
	c := &econn{loop: l, cfd: int32(cfd), bfd: int32(bfd)}
	c.init(s, cfg, rt, extensions)
	c.upf.take(s.pool, clientPending)
	c.downf.take(s.pool, backendPending)
	c.bytesUp.Add(int64(len(clientPending)))
	c.bytesDown.Add(int64(len(backendPending)))
	s.reg.add(c)
	if !l.Post(c.start) {
		unix.Close(cfd)
		unix.Close(bfd)
		s.reg.remove(c)
		return nil, errors.New("proxy is shutting down")
	}
	return c, nil
}

// take makes bytes read during the handshake the flow's first input.
func (d *flow) take(pool *evloop.BufPool, pending []byte) {
	if len(pending) == 0 {
		return
	}
	d.buf = pool.Get()
	d.inOff, d.inEnd = 0, int32(copy(*d.buf, pending))
}

// detachFD duplicates conn's socket into a non-blocking descriptor owned by
// the caller and closes conn.
func detachFD(conn net.Conn) (int, error) {
	tc, ok := tcpConn(conn)
	if !ok {
		return -1, errors.New("not a TCP socket")
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	cerr := raw.Control(func(s uintptr) {
		fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	})
	if cerr != nil {
		return -1, cerr
	}
	if err != nil {
		return -1, err
	}
	// The duplicate shares the socket's status flags, so it is non-blocking
	// like every socket of Go's.
	conn.Close()
	return fd, nil
}

// start registers the sockets and relays what came with the handshakes.
func (c *econn) start() { c.begin(false, false, false) }

// begin relays from now on. registered says the loop did the handshake and
// the sockets are in its epoll set with relayInterest already; else they
// are added, and their first edges come at once if bytes are waiting.
// clientReadable and backendReadable say which sockets may hold bytes whose
// edge came before the relay began.
func (c *econn) begin(registered, clientReadable, backendReadable bool) {
	now := time.Now().UnixNano()
	c.upf.readable, c.downf.readable = clientReadable, backendReadable
	if registered {
		c.loop.Handle(int(c.cfd), c)
		c.loop.Handle(int(c.bfd), c)
	} else if err := c.loop.Register(int(c.cfd), c, relayInterest); err != nil {
		c.finish(clientReadEnded(err), now)
		c.teardown(now)
		return
	} else if err := c.loop.Register(int(c.bfd), c, relayInterest); err != nil {
		c.finish(backendReadEnded(err), now)
		c.teardown(now)
		return
	}
	if c.cfg.PingInterval > 0 {
		c.nextPing = now + int64(c.cfg.PingInterval)
	}
	c.drive(&c.upf, now)
	c.drive(&c.downf, now)
	c.settle(now)
}

func (c *econn) requestClose(e ending) {
	c.loop.Post(func() {
		if c.gone {
			return
		}
		now := time.Now().UnixNano()
		c.finish(e, now)
		c.settle(now)
	})
}

// Halt tears the connection down at once: the loop is stopping, or a
// method of it panicked.
func (c *econn) Halt(now int64) {
	if !c.gone {
		c.teardown(now)
	}
}

func (c *econn) abort() {
	c.loop.Post(func() {
		if !c.gone {
			c.teardown(time.Now().UnixNano())
		}
	})
}

// OnEvent takes an edge of one of the two sockets: what it says of the
// socket's source side and of its destination side goes to the flows, which
// move on.
func (c *econn) OnEvent(fd int, events uint32, now int64) {
	if c.gone {
		return
	}
	from, to := &c.upf, &c.downf // fd is the client's
	if fd == int(c.bfd) {
		from, to = &c.downf, &c.upf
	}
	if events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		from.readable = true
	}
	if events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		from.srcShut = true
	}
	if events&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 && c.flushed(to, now) {
		// fd takes writes again: finish what waited for it, then read on
		// from the other socket, which was left alone meanwhile.
		to.blocked = false
		if to.pending() {
			c.drive(to, now)
		}
	}
	if from.readable {
		c.drive(from, now)
	}
	if events&(unix.EPOLLHUP|unix.EPOLLERR) != 0 && !from.srcDone && from.blocked {
		// The socket failed while its reads were paused behind a stalled
		// write; nothing more will come from it.
		c.srcEnded(from, unix.ECONNRESET, now)
	}
	c.settle(now)
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
		c.release(d)
		if !d.readable || d.srcDone {
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
		// nor a TLS client's, whose read returns one record and may leave
		// more waiting decrypted, where no edge announces them.
		d.readable = n == len(*buf) || d.srcShut || c.tlsOf(d, opRead) != nil
		if d == &c.upf {
			c.bytesUp.Add(int64(n))
			c.lastRead.Store(now)
			c.loop.stats.add(true, 0, uint64(n))
		} else {
			c.bytesDown.Add(int64(n))
			c.loop.stats.add(false, 0, uint64(n))
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

// finish sets how the connection ends, the first time it is called: the
// peers are told, and the connection lingers for their answers when the
// ending asks for it.
func (c *econn) finish(e ending, now int64) {
	if c.end != nil {
		return
	}
	c.end = &e
	c.lingerUntil = now + int64(c.srv.closeWait)
	if e.peerClose {
		return
	}
	if e.clientCode != 0 {
		c.sendOwn(&c.downf, ws.MustCompileFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(e.clientCode, e.clientReason))), true, now)
	}
	if e.backendCode != 0 {
		f := ws.MaskFrameInPlaceWith(ws.NewCloseFrame(ws.NewCloseFrameBody(e.backendCode, e.backendReason)), randomMask())
		c.sendOwn(&c.upf, ws.MustCompileFrame(f), true, now)
	}
	if !e.linger {
		c.lingerUntil = now
	}
}

// settle brings the registered interest and the timer in line with the
// state after an event, and tears the connection down once it is over.
func (c *econn) settle(now int64) {
	if c.gone {
		return
	}
	if c.end != nil && (c.done(&c.upf) && c.done(&c.downf) || now >= c.lingerUntil) {
		c.answerForBackend(now)
		c.teardown(now)
		return
	}
	switch at := c.nextDeadline(); {
	case at == 0:
		c.loop.wheel.Cancel(c)
	case at != c.WheelEntry.At():
		c.loop.wheel.Schedule(c, at)
	}
}

// answerForBackend completes a client's close handshake that the backend
// left unanswered, echoing the client's code (RFC 6455 section 5.5.1), so
// that the client sees a clean close rather than a cut connection.
func (c *econn) answerForBackend(now int64) {
	e, d := c.end, &c.downf
	if !e.peerClose || e.cause != causeClientClosed || d.srcDone || d.closed || d.midFrame || d.pending() {
		return
	}
	var body []byte
	if e.code != ws.StatusNoStatusRcvd {
		body = ws.NewCloseFrameBody(e.code, "")
	}
	c.sendOwn(d, ws.MustCompileFrame(ws.NewCloseFrame(body)), true, now)
}

// done reports whether nothing more will move in direction d.
func (c *econn) done(d *flow) bool {
	return d.srcDone && (!d.pending() || d.dstDead)
}

// nextDeadline is the earliest moment the connection needs attention; 0
// for none.
func (c *econn) nextDeadline() int64 {
	var at int64
	switch {
	case c.end != nil:
		at = c.lingerUntil
	case c.pingAt != 0:
		at = c.pingAt + int64(c.cfg.PongTimeout)
	default:
		at = c.nextPing
	}
	if t := c.upf.stalledAt; t != 0 {
		at = earliest(at, t+int64(c.cfg.WriteTimeout))
	}
	if t := c.downf.stalledAt; t != 0 {
		at = earliest(at, t+int64(c.cfg.WriteTimeout))
	}
	return at
}

// earliest of two deadlines, where 0 means none.
func earliest(a, b int64) int64 {
	if a == 0 || b != 0 && b < a {
		return b
	}
	return a
}

// Expire runs when a deadline passed: a stalled write, a missing pong, a
// heartbeat due, or the end of lingering.
func (c *econn) Expire(now int64) {
	if c.gone {
		return
	}
	switch {
	case c.downf.stalledAt != 0 && now-c.downf.stalledAt >= int64(c.cfg.WriteTimeout):
		c.downf.dstDead, c.downf.out, c.downf.own = true, nil, nil
		c.finish(clientWriteEnded(errSlowPeer), now)
	case c.upf.stalledAt != 0 && now-c.upf.stalledAt >= int64(c.cfg.WriteTimeout):
		c.upf.dstDead, c.upf.out, c.upf.own = true, nil, nil
		c.finish(backendWriteEnded(errSlowPeer), now)
	case c.end != nil:
	case c.pingAt != 0 && now >= c.pingAt+int64(c.cfg.PongTimeout):
		if c.pongOverdue(c.pingAt) {
			c.finish(pongTimeout(), now)
			break
		}
		c.nextPing, c.pingAt = c.pingAt+int64(c.cfg.PingInterval), 0
	case c.pingAt == 0 && c.nextPing != 0 && now >= c.nextPing:
		c.pingSeq++
		payload := heartbeatPing(uint64(c.pingSeq))
		var frame [2 + len(payload)]byte
		frame[0], frame[1] = 0x80|byte(ws.OpPing), byte(len(payload))
		copy(frame[2:], payload[:])
		c.pingAt = now
		c.sendOwn(&c.downf, frame[:], false, now)
	}
	c.settle(now)
}

// teardown closes both sockets and forgets the connection.
func (c *econn) teardown(now int64) {
	c.writeLast(&c.upf)
	c.writeLast(&c.downf)
	if c.ctls != nil && !c.downf.dstDead {
		c.ctls.CloseWrite()
	}
	if c.btls != nil && !c.upf.dstDead {
		c.btls.CloseWrite()
	}
	c.gone = true
	c.loop.wheel.Cancel(c)
	c.loop.Unregister(int(c.cfd))
	c.loop.Unregister(int(c.bfd))
	unix.Close(int(c.cfd))
	unix.Close(int(c.bfd))
	for _, d := range [2]*flow{&c.upf, &c.downf} {
		d.inOff, d.out, d.own = d.inEnd, nil, nil
		c.release(d)
	}
	if c.end == nil {
		c.end = &ending{cause: causeStopped, code: ws.StatusAbnormalClosure}
	}
	c.logEnd(*c.end)
	c.srv.reg.remove(c)
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
func (c *econn) release(d *flow) {
	if d == &c.upf {
		c.loop.stats.add(true, c.up.TakeFrames(), 0)
	} else {
		c.loop.stats.add(false, c.down.TakeFrames(), 0)
	}
	if d.buf != nil && d.inOff == d.inEnd && len(d.out) == 0 {
		c.loop.PutBuf(d.buf)
		d.buf, d.inOff, d.inEnd, d.out = nil, 0, 0, nil
	}
}

// randomMask is a masking key for the proxy's own frames to a backend
// (RFC 6455 section 5.3); they are control frames, so a fast source does.
func randomMask() [4]byte {
	var m [4]byte
	v := rand.Uint32()
	m[0], m[1], m[2], m[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
	return m
}
