package proxy

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/wsedge/wsedge/affinity"
)

// ServeHTTP routes one request: a WebSocket upgrade is relayed frame by
// frame, anything else is reverse proxied, both to the client's backend.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tlsState(r)
	t := s.router.table()
	upgrade := isWebSocketUpgrade(r)
	if upgrade {
		if he := checkClientHandshake(r); he != nil {
			s.refuse(w, r, hsBadRequest, he)
			return
		}
		if !t.originAllowed(r.Header.Get("Origin")) {
			s.refuse(w, r, hsOriginDenied, &handshakeError{status: http.StatusForbidden, msg: "origin not allowed"})
			return
		}
	}
	rt, err := s.route(t, peerAddr(r), r.Header, upgrade)
	if err != nil {
		result, he := routeRefusal(err)
		if upgrade {
			s.refuse(w, r, result, he)
		} else {
			s.writeHandshakeError(w, r, he)
		}
		return
	}
	if miss := s.noteAffinity(r.URL.RawQuery, rt); miss != "" {
		w.Header().Set("X-Wsedge-Affinity-Miss", miss)
	}
	if !upgrade {
		s.serveHTTP(w, r, rt)
		return
	}
	s.serveWebSocket(w, r, t, rt)
}

// routeRefusal is how a request that could not be routed is answered: 503
// for an empty ring or the proxy's connection limit, 429 for one address's
// limit; result is the handshake metric's label.
func routeRefusal(err error) (result string, he *handshakeError) {
	he = &handshakeError{status: http.StatusServiceUnavailable, msg: err.Error(), err: err}
	switch {
	case errors.Is(err, errTooManyConnections):
		return hsOverLimit, he
	case errors.Is(err, errTooManyFromIP):
		he.status = http.StatusTooManyRequests
		return hsOverLimit, he
	}
	return hsNoBackend, he
}

// retryAfter is what a client over a connection limit is told, in seconds.
const retryAfter = "5"

// refuse answers a handshake the proxy itself turns down, and counts it.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, result string, he *handshakeError) {
	s.metrics.handshake(result)
	s.writeHandshakeError(w, r, he)
}

// route routes r. A WebSocket's route is reserved in the registry, counted
// as load and against the connection limits, until its connection
// registers or its handshake fails; with bounded loads the choice and the
// reservation are one step, so a burst of clients cannot all pile onto the
// same backend.
func (s *Server) route(t *table, peer netip.Addr, h headers, websocket bool) (route, error) {
	var lv loadView
	if t.cfg.LoadFactor > 0 {
		lv = boundedView{s: s, websocket: websocket}
		s.reg.mu.Lock()
		defer s.reg.mu.Unlock()
	}
	rt, err := t.route(peer, h, lv)
	if err != nil {
		return rt, err
	}
	if lv != nil && websocket && !rt.pinned {
		s.reg.fulfilLocked(rt.key, time.Now())
	}
	rt.id = s.ids.Add(1)
	rt.requestID = h.Get("X-Request-ID")
	if !validRequestID(rt.requestID) {
		rt.requestID = s.requestID(rt.id)
	}
	if !websocket {
		return rt, nil
	}
	if lv == nil {
		s.reg.mu.Lock()
		defer s.reg.mu.Unlock()
	}
	return rt, s.reg.reserveLocked(rt.backend, rt.client, t.cfg.MaxConnections, t.cfg.MaxConnectionsPerIP)
}

// validRequestID accepts a client's X-Request-ID when it is short and
// printable, so that it can go into logs and headers as it is.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// requestID makes the X-Request-ID of request number id: unique across
// restarts thanks to the process's random prefix.
func (s *Server) requestID(id uint64) string {
	return s.idPrefix + "-" + strconv.FormatUint(id, 16)
}

// boundedView shows bounded loads the registry, whose lock the caller
// holds, and the remembered placements. A key placed by a plain HTTP
// request counts as a WebSocket to come.
type boundedView struct {
	s         *Server
	websocket bool
}

func (v boundedView) load(backend string) (int, int) { return v.s.reg.loadLocked(backend) }

func (v boundedView) placed(key uint64) (string, bool) { return v.s.places.get(key, time.Now()) }

func (v boundedView) place(key uint64, backend string) {
	now := time.Now()
	v.s.places.put(key, backend, now)
	if !v.websocket {
		v.s.reg.expectLocked(key, backend, now)
	}
}

// noteAffinity counts and marks a request that cannot reach the backend it
// had before: its route cookie names a backend that left the ring, or its
// Engine.IO session was last seen on another backend (the cause of
// Socket.IO's "Session ID unknown").
// It returns the kind of miss, for the response's X-Wsedge-Affinity-Miss,
// or "" when there is none. rawQuery is the request's query string.
func (s *Server) noteAffinity(rawQuery string, rt route) string {
	miss := ""
	if rt.staleCookie {
		miss = "stale_cookie"
	}
	if strings.Contains(rawQuery, "EIO=") {
		if q, err := url.ParseQuery(rawQuery); err == nil && q.Get("EIO") != "" && q.Get("sid") != "" {
			key := affinity.HashString(q.Get("sid"))
			now := time.Now()
			if was, ok := s.sessions.get(key, now); ok && was != rt.backend {
				miss = "session_moved"
			}
			s.sessions.put(key, rt.backend, now)
		}
	}
	if miss != "" {
		s.metrics.affinityMisses.WithLabelValues(miss).Inc()
		s.log.Info("affinity miss", zap.String("kind", miss), zap.Stringer("client", rt.client),
			zap.String("backend", rt.backend))
	}
	return miss
}

// passive reports a backend's answer to an upgrade (0: it could not be
// dialed) to a member source that keeps passive health.
func (s *Server) passive(backend string, status int) {
	ph, ok := s.members.(passiveHealth)
	if !ok {
		return
	}
	if status == 0 {
		ph.ReportDialFailure(backend)
		return
	}
	ph.ReportUpgradeStatus(backend, status)
}

// passiveHealth is a member source that learns from the proxy's own
// traffic: failed dials and 5xx answers count against a backend.
type passiveHealth interface {
	ReportDialFailure(addr string)
	ReportUpgradeStatus(addr string, status int)
}

// originAllowed applies allowed_origins. Browsers always send Origin with a
// WebSocket handshake; a request without one comes from a non-browser
// client, which the check (against cross-site WebSocket hijacking) does
// not concern.
func (t *table) originAllowed(origin string) bool {
	if len(t.cfg.AllowedOrigins) == 0 || origin == "" {
		return true
	}
	for _, o := range t.cfg.AllowedOrigins {
		if o == origin {
			return true
		}
	}
	return false
}

// isTCP reports whether c is a plain TCP socket, which the event loops can
// drive; TLS connections need a goroutine per direction.
func isTCP(c net.Conn) bool {
	_, ok := tcpConn(c)
	return ok
}

// tcpConn returns the TCP socket c is, or the one under a PROXY protocol
// wrapper. By the time a handshake is done the wrapper holds no bytes of
// its own: it reads at most 256 bytes ahead to find its header, and the
// HTTP server's first 4 KiB read took them all.
func tcpConn(c net.Conn) (*net.TCPConn, bool) {
	switch v := c.(type) {
	case *net.TCPConn:
		return v, true
	case interface{ TCPConn() (*net.TCPConn, bool) }:
		return v.TCPConn()
	}
	return nil, false
}
