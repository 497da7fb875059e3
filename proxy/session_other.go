//go:build !linux

package proxy

import (
	"net"
	"sync"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsedge/wsedge/proxy/wsframe"
)

// session drives a relayed WebSocket with a goroutine per direction and
// blocking writes. It serves connections the event loop cannot take, such
// as TLS ones. run returns only after both pumps ended and both connections
// are closed.
type session struct {
	relayConn
	client  net.Conn
	backend net.Conn

	fromClient, fromBackend *burstReader
	toClient, toBackend     *sender

	stop chan ending // one slot: a close the proxy decided on (rebalance, drain, shutdown)

	hb        sync.Mutex // guards the heartbeat state below and serializes its timer
	hbTimer   *time.Timer
	hbStopped bool
	pingAt    int64 // unix nanoseconds of the outstanding ping; 0 when none
	pingSeq   uint64
}

func (s *Server) newSession(cfg *Config, rt route, client net.Conn, clientPending []byte, bh *backendHandshake) *session {
	sess := &session{
		client:      client,
		backend:     bh.conn,
		fromClient:  newBurstReader(client, s.pool, clientPending),
		fromBackend: newBurstReader(bh.conn, s.pool, bh.pending),
		toClient:    newSender(client, cfg.WriteTimeout, false),
		toBackend:   newSender(bh.conn, cfg.WriteTimeout, true),
		stop:        make(chan ending, 1),
	}
	sess.init(s, cfg, rt, len(bh.exts) > 0)
	sess.up.CountSizes(&s.stats.up.sizes)
	sess.down.CountSizes(&s.stats.down.sizes)
	return sess
}

func (s *session) requestClose(e ending) {
	select {
	case s.stop <- e:
	default:
	}
}

func (s *session) abort() {
	s.client.Close()
	s.backend.Close()
}

func (s *session) run() {
	results := make(chan ending, 2) // a slot per pump: no sender blocks
	var wg sync.WaitGroup
	wg.Go(func() { results <- s.pumpUp() })
	wg.Go(func() { results <- s.pumpDown() })
	s.startHeartbeat()

	pending := 2
	var e ending
	select {
	case e = <-results:
		pending--
	case e = <-s.stop:
	}
	s.stopHeartbeat()
	pending = s.finish(e, results, pending)
	s.client.Close()
	s.backend.Close()
	wg.Wait()
	for ; pending > 0; pending-- {
		<-results
	}
	s.logEnd(e)
	s.srv.reg.remove(s)
}

// finish tells each peer why the session ends and waits, bounded, for
// their answers. It returns how many pump results are still unread.
func (s *session) finish(e ending, results <-chan ending, pending int) int {
	if !e.peerClose {
		if e.clientCode != 0 {
			timeout := s.cfg.WriteTimeout
			if !e.linger {
				timeout = lastWordTimeout
			}
			s.toClient.close(e.clientCode, e.clientReason, timeout)
		}
		if e.backendCode != 0 {
			s.toBackend.close(e.backendCode, e.backendReason, lastWordTimeout)
		}
		if !e.linger {
			return pending
		}
	}
	deadline := time.NewTimer(s.srv.closeWait)
	defer deadline.Stop()
	for pending > 0 {
		select {
		case <-results:
			pending--
		case <-deadline.C:
			if e.peerClose && e.cause == causeClientClosed {
				// The backend never answered the client's close: answer
				// it on the backend's behalf, echoing its code.
				var body []byte
				if e.code != ws.StatusNoStatusRcvd {
					body = ws.NewCloseFrameBody(e.code, "")
				}
				s.toClient.sendWithin(ws.NewCloseFrame(body), true, lastWordTimeout)
			}
			return pending
		}
	}
	return pending
}

// pumpUp relays client to backend until one side stops.
func (s *session) pumpUp() ending {
	for {
		buf, p, err := s.fromClient.read()
		if err != nil {
			return clientReadEnded(err)
		}
		now := time.Now().UnixNano()
		s.lastRead.Store(now)
		s.bytesUp.Add(int64(len(p)))
		e, done := s.relayUp(p, now)
		frames, messages := s.up.TakeFrames()
		s.srv.stats.add(true, frames, messages, uint64(len(p)))
		s.counted(true, messages, now)
		s.srv.pool.Put(buf)
		if done {
			return e
		}
	}
}

func (s *session) relayUp(in []byte, now int64) (ending, bool) {
	for len(in) > 0 {
		n, out, ev := s.up.Step(in)
		in = in[n:]
		switch ev {
		case wsframe.Forward:
			if err := s.toBackend.relay(out, s.up.AtBoundary(), false); err != nil {
				return backendWriteEnded(err), true
			}
		case wsframe.Control:
			swallow, e, closing := s.upControl(out, now)
			if swallow {
				continue
			}
			if err := s.toBackend.relay(out, true, closing); err != nil {
				return backendWriteEnded(err), true
			}
			if closing {
				return e, true
			}
		case wsframe.Invalid:
			return s.upViolation(), true
		}
	}
	return ending{}, false
}

// pumpDown relays backend to client until one side stops.
func (s *session) pumpDown() ending {
	for {
		buf, p, err := s.fromBackend.read()
		if err != nil {
			return backendReadEnded(err)
		}
		s.bytesDown.Add(int64(len(p)))
		e, done := s.relayDown(p)
		frames, messages := s.down.TakeFrames()
		s.srv.stats.add(false, frames, messages, uint64(len(p)))
		s.counted(false, messages, time.Now().UnixNano())
		s.srv.pool.Put(buf)
		if done {
			return e
		}
	}
}

func (s *session) relayDown(in []byte) (ending, bool) {
	for len(in) > 0 {
		n, out, ev := s.down.Step(in)
		in = in[n:]
		switch ev {
		case wsframe.Forward:
			if err := s.toClient.relay(out, s.down.AtBoundary(), false); err != nil {
				return clientWriteEnded(err), true
			}
		case wsframe.Control:
			e, closing := s.downControl(out)
			if err := s.toClient.relay(out, true, closing); err != nil {
				return clientWriteEnded(err), true
			}
			if closing {
				return e, true
			}
		case wsframe.Invalid:
			return s.downViolation(), true
		}
	}
	return ending{}, false
}

// startHeartbeat arms the ping timer when heartbeats are on.
func (s *session) startHeartbeat() {
	if s.cfg.PingInterval <= 0 {
		return
	}
	s.hb.Lock()
	defer s.hb.Unlock()
	s.hbTimer = time.AfterFunc(s.cfg.PingInterval, s.heartbeat)
}

// stopHeartbeat stops the timer and waits out a running beat, so that no
// beat touches the session after it ended.
func (s *session) stopHeartbeat() {
	s.hb.Lock()
	defer s.hb.Unlock()
	s.hbStopped = true
	if s.hbTimer != nil {
		s.hbTimer.Stop()
	}
}

// heartbeat alternates between sending a ping and, pong_timeout later,
// checking that the client answered.
func (s *session) heartbeat() {
	s.hb.Lock()
	defer s.hb.Unlock()
	if s.hbStopped {
		return
	}
	if s.pingAt != 0 {
		if s.pongOverdue(s.pingAt) {
			s.requestClose(pongTimeout())
			return
		}
		next := time.Duration(s.pingAt + int64(s.cfg.PingInterval) - time.Now().UnixNano())
		s.pingAt = 0
		s.hbTimer.Reset(max(next, 0))
		return
	}
	s.pingSeq++
	payload := heartbeatPing(s.pingSeq)
	s.pingAt = time.Now().UnixNano()
	if err := s.toClient.ping(payload[:]); err != nil {
		s.requestClose(clientWriteEnded(err))
		return
	}
	s.hbTimer.Reset(s.cfg.PongTimeout)
}
