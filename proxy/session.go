package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"go.uber.org/zap"
)

const (
	// closeWait bounds how long a closing session waits for the peers'
	// answering close frames (RFC 6455 section 7.1.1) before cutting TCP.
	closeWait = 2 * time.Second
	// lastWordTimeout bounds a close frame to a peer already known to be
	// slow or dead: it is a courtesy, not a wait.
	lastWordTimeout = 100 * time.Millisecond
)

// heartbeatPrefix marks the proxy's own pings, so that the answering pongs
// are recognised and kept from the backend.
var heartbeatPrefix = []byte("wsedge-hb:")

// session relays one WebSocket between a client and its backend. It owns
// both connections and the goroutines that pump them; run returns only
// after both pumps ended and both connections are closed.
type session struct {
	id      uint64
	srv     *Server
	cfg     Config // as of the handshake; a reload applies to new sessions
	rt      route
	client  net.Conn
	backend net.Conn
	started time.Time

	fromClient, fromBackend *burstReader
	toClient, toBackend     *sender
	up, down                *framer // client→backend and backend→client framing

	bytesUp, bytesDown atomic.Int64
	lastPong           atomic.Int64 // unix nanoseconds of the last heartbeat pong
	lastRead           atomic.Int64 // unix nanoseconds of the last bytes from the client

	stop chan ending // one slot: a close the proxy decided on (rebalance, drain, shutdown)

	hb        sync.Mutex // guards the heartbeat state below and serializes its timer
	hbTimer   *time.Timer
	hbStopped bool
	pingAt    int64 // unix nanoseconds of the outstanding ping; 0 when none
	pingSeq   uint64
}

// ending is how a session ends: what each peer is told and what is logged.
// A zero code means the proxy sends that peer no close frame of its own.
type ending struct {
	cause         string
	clientCode    ws.StatusCode
	clientReason  string
	backendCode   ws.StatusCode
	backendReason string
	// peerClose: a peer's own close frame was passed on with this code; the
	// other peer's answer is awaited and passed back.
	peerClose bool
	code      ws.StatusCode // the close code the client saw, for the log
	linger    bool          // wait for the peers' answering close frames
	err       error
}

// requestClose asks the session to end with e, unless it is ending already.
func (s *session) requestClose(e ending) {
	select {
	case s.stop <- e:
	default:
	}
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
	deadline := time.NewTimer(closeWait)
	defer deadline.Stop()
	for pending > 0 {
		select {
		case <-results:
			pending--
		case <-deadline.C:
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
			return s.clientReadEnded(err)
		}
		s.lastRead.Store(time.Now().UnixNano())
		s.bytesUp.Add(int64(len(p)))
		e, done := s.relayUp(p)
		s.srv.pool.put(buf)
		if done {
			return e
		}
	}
}

func (s *session) relayUp(in []byte) (ending, bool) {
	for len(in) > 0 {
		n, out, ev := s.up.step(in)
		in = in[n:]
		switch ev {
		case evForward:
			if err := s.toBackend.relay(out, s.up.atBoundary(), false); err != nil {
				return backendWriteEnded(err), true
			}
		case evControl:
			var buf [ws.MaxControlFramePayloadSize]byte
			payload := s.up.controlPayload(buf[:])
			switch s.up.controlOp() {
			case ws.OpPong:
				if bytes.HasPrefix(payload, heartbeatPrefix) {
					s.lastPong.Store(time.Now().UnixNano())
					continue
				}
			case ws.OpClose:
				if err := s.toBackend.relay(out, true, true); err != nil {
					return backendWriteEnded(err), true
				}
				return ending{cause: "client closed", peerClose: true, code: closeCodeOf(payload)}, true
			}
			if err := s.toBackend.relay(out, true, false); err != nil {
				return backendWriteEnded(err), true
			}
		case evViolation:
			v := s.up.broken
			e := ending{cause: "client protocol error", err: errors.New(v.reason), linger: true,
				clientCode: v.code, clientReason: v.reason, code: v.code,
				backendCode: ws.StatusGoingAway, backendReason: "client broke the protocol"}
			if v.code == ws.StatusMessageTooBig {
				e.cause, e.backendCode, e.backendReason = "message too big", v.code, v.reason
			}
			return e, true
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
		s.srv.pool.put(buf)
		if done {
			return e
		}
	}
}

func (s *session) relayDown(in []byte) (ending, bool) {
	for len(in) > 0 {
		n, out, ev := s.down.step(in)
		in = in[n:]
		switch ev {
		case evForward:
			if err := s.toClient.relay(out, s.down.atBoundary(), false); err != nil {
				return clientWriteEnded(err), true
			}
		case evControl:
			isClose := s.down.controlOp() == ws.OpClose
			if err := s.toClient.relay(out, true, isClose); err != nil {
				return clientWriteEnded(err), true
			}
			if isClose {
				var buf [ws.MaxControlFramePayloadSize]byte
				return ending{cause: "backend closed", peerClose: true, code: closeCodeOf(s.down.controlPayload(buf[:]))}, true
			}
		case evViolation:
			v := s.down.broken
			e := ending{cause: "backend protocol error", err: errors.New(v.reason), linger: true,
				clientCode: closeBadGateway, clientReason: "backend sent an invalid frame", code: closeBadGateway,
				backendCode: v.code, backendReason: v.reason}
			if v.code == ws.StatusMessageTooBig {
				e.cause, e.clientCode, e.clientReason, e.code = "message too big", v.code, v.reason, v.code
			}
			return e, true
		}
	}
	return ending{}, false
}

func (s *session) clientReadEnded(err error) ending {
	return ending{cause: "client gone", err: ignoreEOF(err), code: ws.StatusAbnormalClosure,
		backendCode: ws.StatusGoingAway, backendReason: "client went away"}
}

func backendReadEnded(err error) ending {
	return ending{cause: "backend gone", err: ignoreEOF(err), linger: true,
		clientCode: closeServiceRestart, clientReason: "backend went away", code: closeServiceRestart}
}

func backendWriteEnded(err error) ending {
	if errors.Is(err, errSlowPeer) {
		return ending{cause: "backend not reading", err: err, linger: true,
			clientCode: ws.StatusInternalServerError, clientReason: "backend not reading", code: ws.StatusInternalServerError,
			backendCode: ws.StatusGoingAway, backendReason: "not reading"}
	}
	return backendReadEnded(err)
}

func clientWriteEnded(err error) ending {
	if errors.Is(err, errSlowPeer) {
		return ending{cause: "slow consumer", err: err,
			clientCode: ws.StatusPolicyViolation, clientReason: "slow consumer", code: ws.StatusPolicyViolation,
			backendCode: ws.StatusGoingAway, backendReason: "client too slow"}
	}
	return ending{cause: "client gone", err: ignoreEOF(err), code: ws.StatusAbnormalClosure,
		backendCode: ws.StatusGoingAway, backendReason: "client went away"}
}

func ignoreEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// closeCodeOf reads the code of a close frame body; 1005 when it has none
// (RFC 6455 section 7.1.5).
func closeCodeOf(payload []byte) ws.StatusCode {
	if len(payload) < 2 {
		return ws.StatusNoStatusRcvd
	}
	return ws.StatusCode(binary.BigEndian.Uint16(payload))
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
// checking that the client answered. Bytes from the client since the ping
// count as an answer too: a client busy sending a large frame may be unable
// to put its pong on the wire in time, and it is evidently alive.
func (s *session) heartbeat() {
	s.hb.Lock()
	defer s.hb.Unlock()
	if s.hbStopped {
		return
	}
	if s.pingAt != 0 {
		if s.lastPong.Load() < s.pingAt && s.lastRead.Load() < s.pingAt {
			s.requestClose(ending{cause: "pong timeout",
				clientCode: ws.StatusPolicyViolation, clientReason: "pong timeout", code: ws.StatusPolicyViolation,
				backendCode: ws.StatusGoingAway, backendReason: "client unresponsive"})
			return
		}
		next := time.Duration(s.pingAt+int64(s.cfg.PingInterval)-time.Now().UnixNano()) * time.Nanosecond
		s.pingAt = 0
		s.hbTimer.Reset(max(next, 0))
		return
	}
	s.pingSeq++
	var payload [len("wsedge-hb:") + 8]byte
	copy(payload[:], heartbeatPrefix)
	binary.BigEndian.PutUint64(payload[len(heartbeatPrefix):], s.pingSeq)
	s.pingAt = time.Now().UnixNano()
	if err := s.toClient.ping(payload[:]); err != nil {
		s.requestClose(clientWriteEnded(err))
		return
	}
	s.hbTimer.Reset(s.cfg.PongTimeout)
}

func (s *session) logEnd(e ending) {
	l := s.srv.log
	if ce := l.Check(zap.InfoLevel, "connection closed"); ce != nil {
		fields := []zap.Field{
			zap.Uint64("id", s.id),
			zap.Stringer("client", s.rt.client),
			zap.String("backend", s.rt.backend),
			zap.Duration("duration", time.Since(s.started)),
			zap.Int64("bytes_in", s.bytesUp.Load()),
			zap.Int64("bytes_out", s.bytesDown.Load()),
			zap.Int("close_code", int(e.code)),
			zap.String("cause", e.cause),
		}
		if e.clientReason != "" {
			fields = append(fields, zap.String("reason", e.clientReason))
		}
		if e.err != nil {
			fields = append(fields, zap.Error(e.err))
		}
		ce.Write(fields...)
	}
}
