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
)

// econn drives a relayed WebSocket from an event loop: non-blocking reads
// and writes on the two sockets, a borrowed buffer only while bytes are in
// flight, and timers on the loop's wheel. All its methods but requestClose
// and abort run on the loop's goroutine.
//
// Its life is here: begin, the events of its sockets, finish (how it
// ends), settle after each step, the timers' Expire and teardown. What
// each direction reads, frames and writes is its flows' (flow_linux.go).
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
	// move is where a binary upgrade stands with the connection
	// (handoff_linux.go): while it is moveHanded, its state is the new
	// process's to take, and nothing here may change it.
	move moveState

	end         *ending // how it ends; nil while it does not
	lingerUntil int64   // ended and waiting for the peers' close frames until then

	limits *clientLimits // the client's rate limits; nil when none are set
}

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
	c.lastData.Store(now)
	c.limits = newClientLimits(c.cfg)
	c.drive(&c.upf, now)
	c.drive(&c.downf, now)
	c.settle(now)
}

func (c *econn) requestClose(e ending) {
	c.loop.Post(func() {
		if c.gone {
			return
		}
		if c.move == moveHanded {
			// Ask again once the hand-over is decided: the new process
			// has the connection then, or this one has it back.
			time.AfterFunc(handedRetry, func() { c.requestClose(e) })
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
		switch {
		case c.gone:
		case c.move == moveHanded:
			time.AfterFunc(handedRetry, c.abort) // as requestClose
		default:
			c.teardown(time.Now().UnixNano())
		}
	})
}

// OnEvent takes an edge of one of the two sockets: what it says of the
// socket's source side and of its destination side goes to the flows, which
// move on.
func (c *econn) OnEvent(fd int, events uint32, now int64) {
	if c.gone || c.move == moveHanded {
		return // a connection taken back looks at both sockets afresh
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
	if c.gone || c.move == moveHanded {
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
	if c.end == nil && c.cfg.IdleTimeout > 0 {
		at = earliest(at, c.lastData.Load()+int64(c.cfg.IdleTimeout))
	}
	if c.limits != nil {
		at = earliest(at, c.limits.deadline())
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
	if c.gone || c.move == moveHanded {
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
	case c.cfg.IdleTimeout > 0 && now-c.lastData.Load() >= int64(c.cfg.IdleTimeout):
		c.srv.metrics.limitHit(limitIdle)
		c.finish(idleClosed(), now)
	case c.limits != nil && c.limits.resume(now):
		c.drive(&c.upf, now) // the client's bytes waited in its socket
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
		c.release(d, now)
	}
	if c.end == nil {
		c.end = &ending{cause: causeStopped, code: ws.StatusAbnormalClosure}
	}
	c.logEnd(*c.end)
	c.srv.reg.remove(c)
}

// randomMask is a masking key for the proxy's own frames to a backend
// (RFC 6455 section 5.3); they are control frames, so a fast source does.
func randomMask() [4]byte {
	var m [4]byte
	v := rand.Uint32()
	m[0], m[1], m[2], m[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
	return m
}
