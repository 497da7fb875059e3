package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"go.uber.org/zap"

	"github.com/wsedge/wsedge/proxy/wsframe"
)

const (
	// defaultCloseWait bounds how long a closing connection waits for the
	// peers' answering close frames (RFC 6455 section 7.1.1) before cutting
	// TCP.
	defaultCloseWait = 2 * time.Second
	// lastWordTimeout bounds a close frame to a peer already known to be
	// slow or dead: it is a courtesy, not a wait.
	lastWordTimeout = 100 * time.Millisecond
)

// errSlowPeer marks a write that did not finish within the write timeout.
var errSlowPeer = errors.New("peer did not take a write in time")

// heartbeatPrefix marks the proxy's own pings, so that the answering pongs
// are recognised and kept from the backend.
var heartbeatPrefix = []byte("wsedge-hb:")

// liveConn is a relayed WebSocket as the registry, shutdown, rebalancing and
// the admin endpoints see it, whichever driver moves its bytes.
type liveConn interface {
	relay() *relayConn
	// requestClose asks the connection to end with e, unless it is ending
	// already. Safe to call from any goroutine.
	requestClose(e ending)
	// abort cuts both sockets now, without waiting for anyone.
	abort()
}

// relayConn is what every relayed WebSocket has, whichever driver moves its
// bytes: who it connects, the framing of both directions, and counters the
// admin endpoints read while it runs.
type relayConn struct {
	id  uint64
	srv *Server
	cfg *Config // as of the handshake; a reload applies to new connections
	placement
	reqID   string // X-Request-ID when the client chose it; empty when the proxy made it from id
	started int64  // unix nanoseconds
	regIdx  int32  // position in the registry's list for the backend; guarded by the registry

	up   wsframe.Framer // client to backend
	down wsframe.Framer // backend to client

	bytesUp   atomic.Int64
	bytesDown atomic.Int64
	lastPong  atomic.Int64 // unix nanoseconds of the last heartbeat pong
	lastRead  atomic.Int64 // unix nanoseconds of the last bytes from the client
	lastData  atomic.Int64 // unix nanoseconds of the last data frame either way, for idle_timeout
	msgs      messageCounts
	aging     bool // queued to close for its age; ageConnections' alone
}

func (c *relayConn) relay() *relayConn { return c }

// init sets up c in place (it holds atomics, so it is never copied).
func (c *relayConn) init(s *Server, cfg *Config, rt route, extensions bool) {
	c.id = rt.id
	if rt.requestID != s.requestID(rt.id) {
		c.reqID = rt.requestID
	}
	c.srv, c.cfg, c.placement = s, cfg, rt.placement
	c.started = time.Now().UnixNano()
	c.up = wsframe.NewFramer(true, extensions, cfg.MaxMessageBytes)
	c.down = wsframe.NewFramer(false, extensions, cfg.MaxMessageBytes)
	c.msgs.window.Store(c.started)
}

// counted notes messages relayed one way (up: client to backend) at now,
// for the connection's own counts and rate.
func (c *relayConn) counted(up bool, messages uint64, now int64) {
	c.msgs.add(up, messages, now)
}

// Causes of a connection's end, as logged and counted (wsedge_closes_total).
const (
	causeClientClosed    = "client_closed"
	causeBackendClosed   = "backend_closed"
	causeClientProtocol  = "client_protocol_error"
	causeBackendProtocol = "backend_protocol_error"
	causeTooBig          = "message_too_big"
	causeClientGone      = "client_gone"
	causeBackendGone     = "backend_gone"
	causeBackendStalled  = "backend_not_reading"
	causeSlowConsumer    = "slow_consumer"
	causePongTimeout     = "pong_timeout"
	causeShutdown        = "proxy_shutting_down"
	causeStopped         = "proxy_stopped"
	causeRebalanced      = "rebalanced"
	causeOverLimit       = "over_limit"
	causeIdle            = "idle"
	causeRateLimited     = "rate_limited"
	causeMaxAge          = "max_age"
)

// Why a connection was rebalanced, as counted (wsedge_rebalance_closes_total).
const (
	rebalanceLeft   = "backend_left"
	rebalanceDied   = "backend_died"
	rebalanceJoined = "backend_joined"
	rebalanceDrain  = "drain"
	rebalanceMaxAge = "max_age"
)

// ending is how a connection ends: what each peer is told and what is
// logged. A zero code means the proxy sends that peer no close frame of its
// own. Besides RFC 6455's codes a client may be told 1012
// (wsframe.StatusServiceRestart: its backend left, died or is draining, or
// it is being moved; reconnecting lands on its new owner), 1013
// (wsframe.StatusTryAgainLater: the proxy is over a limit) or 1014
// (wsframe.StatusBadGateway: its backend sent something invalid).
type ending struct {
	cause         string
	rebalance     string // why the proxy moved the client, for rebalance closes
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

// upControl decides about a whole control frame from the client: the
// proxy's own heartbeat pongs are swallowed, a close ends the connection
// once passed on, anything else passes.
func (c *relayConn) upControl(frame []byte, now int64) (swallow bool, e ending, closing bool) {
	var buf [ws.MaxControlFramePayloadSize]byte
	payload := wsframe.ControlPayload(frame, buf[:])
	switch wsframe.ControlOp(frame) {
	case ws.OpPong:
		if bytes.HasPrefix(payload, heartbeatPrefix) {
			c.lastPong.Store(now)
			return true, ending{}, false
		}
	case ws.OpClose:
		return false, ending{cause: causeClientClosed, peerClose: true, code: closeCodeOf(payload)}, true
	}
	return false, ending{}, false
}

// downControl decides about a whole control frame from the backend: a close
// ends the connection once passed on, anything else passes.
func (c *relayConn) downControl(frame []byte) (e ending, closing bool) {
	if wsframe.ControlOp(frame) != ws.OpClose {
		return ending{}, false
	}
	var buf [ws.MaxControlFramePayloadSize]byte
	return ending{cause: causeBackendClosed, peerClose: true, code: closeCodeOf(wsframe.ControlPayload(frame, buf[:]))}, true
}

func (c *relayConn) upViolation() ending {
	v := c.up.Violation()
	e := ending{cause: causeClientProtocol, err: errors.New(v.Reason()), linger: true,
		clientCode: v.Code(), clientReason: v.Reason(), code: v.Code(),
		backendCode: ws.StatusGoingAway, backendReason: "client broke the protocol"}
	if v == wsframe.TooBig {
		e.cause, e.backendCode, e.backendReason = causeTooBig, v.Code(), v.Reason()
	}
	return e
}

func (c *relayConn) downViolation() ending {
	v := c.down.Violation()
	e := ending{cause: causeBackendProtocol, err: errors.New(v.Reason()), linger: true,
		clientCode: wsframe.StatusBadGateway, clientReason: "backend sent an invalid frame", code: wsframe.StatusBadGateway,
		backendCode: v.Code(), backendReason: v.Reason()}
	if v == wsframe.TooBig {
		e.cause, e.clientCode, e.clientReason, e.code = causeTooBig, v.Code(), v.Reason(), v.Code()
	}
	return e
}

func clientReadEnded(err error) ending {
	return ending{cause: causeClientGone, err: ignoreEOF(err), code: ws.StatusAbnormalClosure,
		backendCode: ws.StatusGoingAway, backendReason: "client went away"}
}

func backendReadEnded(err error) ending {
	return ending{cause: causeBackendGone, err: ignoreEOF(err), linger: true,
		clientCode: wsframe.StatusServiceRestart, clientReason: "backend went away", code: wsframe.StatusServiceRestart}
}

func backendWriteEnded(err error) ending {
	if errors.Is(err, errSlowPeer) {
		return ending{cause: causeBackendStalled, err: err, linger: true,
			clientCode: ws.StatusInternalServerError, clientReason: "backend not reading", code: ws.StatusInternalServerError,
			backendCode: ws.StatusGoingAway, backendReason: "not reading"}
	}
	return backendReadEnded(err)
}

func clientWriteEnded(err error) ending {
	if errors.Is(err, errSlowPeer) {
		return ending{cause: causeSlowConsumer, err: err,
			clientCode: ws.StatusPolicyViolation, clientReason: "slow consumer", code: ws.StatusPolicyViolation,
			backendCode: ws.StatusGoingAway, backendReason: "client too slow"}
	}
	return clientReadEnded(err)
}

func goingAway() ending {
	return ending{cause: causeShutdown, linger: true,
		clientCode: ws.StatusGoingAway, clientReason: "proxy shutting down", code: ws.StatusGoingAway,
		backendCode: ws.StatusGoingAway, backendReason: "proxy shutting down"}
}

// overLimit is how a connection beyond a lowered connection limit is shed.
func overLimit() ending {
	return ending{cause: causeOverLimit, linger: true,
		clientCode: wsframe.StatusTryAgainLater, clientReason: "proxy over its connection limit", code: wsframe.StatusTryAgainLater,
		backendCode: ws.StatusGoingAway, backendReason: "proxy over its connection limit"}
}

// idleClosed is how a connection that relayed no data frame for
// idle_timeout ends.
func idleClosed() ending {
	return ending{cause: causeIdle, linger: true,
		clientCode: ws.StatusGoingAway, clientReason: "idle", code: ws.StatusGoingAway,
		backendCode: ws.StatusGoingAway, backendReason: "idle"}
}

// rateLimited is how a client over its rate limits for rate_limit_grace
// is closed.
func rateLimited() ending {
	return ending{cause: causeRateLimited, linger: true,
		clientCode: ws.StatusPolicyViolation, clientReason: "rate limit", code: ws.StatusPolicyViolation,
		backendCode: ws.StatusGoingAway, backendReason: "client over its rate limit"}
}

// maxAged is how a connection older than max_connection_age is closed: its
// client reconnects, as after a rebalance, and lands where the ring says.
func maxAged() ending {
	return ending{cause: causeMaxAge, rebalance: rebalanceMaxAge, linger: true,
		clientCode: wsframe.StatusServiceRestart, clientReason: "max age", code: wsframe.StatusServiceRestart,
		backendCode: ws.StatusGoingAway, backendReason: "client reconnecting: max age"}
}

func pongTimeout() ending {
	return ending{cause: causePongTimeout,
		clientCode: ws.StatusPolicyViolation, clientReason: "pong timeout", code: ws.StatusPolicyViolation,
		backendCode: ws.StatusGoingAway, backendReason: "client unresponsive"}
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

// heartbeatPing is the payload of the proxy's seq-th ping.
func heartbeatPing(seq uint64) [len("wsedge-hb:") + 8]byte {
	var p [len("wsedge-hb:") + 8]byte
	copy(p[:], heartbeatPrefix)
	binary.BigEndian.PutUint64(p[len(heartbeatPrefix):], seq)
	return p
}

// pongOverdue reports whether the client neither answered the ping sent at
// pingAt nor sent anything since. Bytes from the client count as an answer:
// a client busy sending a large frame may be unable to put its pong on the
// wire in time, and it is evidently alive.
func (c *relayConn) pongOverdue(pingAt int64) bool {
	return c.lastPong.Load() < pingAt && c.lastRead.Load() < pingAt
}

// requestID is the connection's X-Request-ID.
func (c *relayConn) requestID() string {
	if c.reqID != "" {
		return c.reqID
	}
	return c.srv.requestID(c.id)
}

// logEnd writes the connection's one access log line and counts its end.
func (c *relayConn) logEnd(e ending) {
	c.srv.metrics.ended(&e)
	c.srv.metrics.lived(e.cause, c.started)
	if ce := c.srv.log.Check(zap.InfoLevel, "connection closed"); ce != nil {
		fields := []zap.Field{
			zap.String("request_id", c.requestID()),
			zap.Stringer("client", c.client),
			zap.String("backend", c.backend),
			zap.Duration("duration", time.Duration(time.Now().UnixNano()-c.started)),
			zap.Int64("bytes_in", c.bytesUp.Load()),
			zap.Int64("bytes_out", c.bytesDown.Load()),
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
