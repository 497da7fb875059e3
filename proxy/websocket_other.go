//go:build !linux

package proxy

import (
	"errors"
	"net/http"

	"go.uber.org/zap"
)

func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request, t *table, rt route) {
	registered := false
	defer func() {
		if !registered {
			s.reg.unreserve(rt.backend, rt.client)
		}
	}()
	bh, err := s.dialBackend(r.Context(), t, r, rt)
	if err != nil {
		s.backendFailed(w, r, rt, err)
		return
	}
	s.passive(rt.backend, http.StatusSwitchingProtocols)
	extra := bh.header
	if rt.setCookie != "" {
		extra.Add("Set-Cookie", t.routeCookie(rt.setCookie))
	}
	if v := w.Header().Get("X-Wsedge-Affinity-Miss"); v != "" {
		extra.Set("X-Wsedge-Affinity-Miss", v)
	}
	conn, pending, err := s.acceptClient(w, r, bh, extra)
	if err != nil {
		bh.conn.Close()
		s.metrics.handshake(hsClientFailed)
		s.log.Info("client handshake failed", zap.String("remote", r.RemoteAddr), zap.Error(err))
		return
	}
	s.metrics.handshake(hsOK)
	registered = true
	var c liveConn
	if isTCP(conn) && isTCP(bh.conn) {
		if l, err := s.poll.pick(); err == nil {
			ec, err := s.startEconn(l, &t.cfg, rt, conn, bh.conn, pending, bh.pending, len(bh.exts) > 0)
			if err != nil {
				s.log.Warn("event loop refused a connection", zap.String("remote", r.RemoteAddr), zap.Error(err))
				return
			}
			c = ec
		}
	}
	var sess *session
	if c == nil {
		sess = s.newSession(&t.cfg, rt, conn, pending, bh)
		s.reg.add(sess)
		c = sess
	}
	if s.stopping.Load() {
		c.requestClose(goingAway())
	}
	if sess != nil {
		sess.run()
	}
}

// backendFailed answers a handshake the backend did not complete and tells
// passive health about it.
func (s *Server) backendFailed(w http.ResponseWriter, r *http.Request, rt route, err error) {
	var ref *refusal
	var he *handshakeError
	switch {
	case errors.As(err, &ref):
		s.passive(rt.backend, ref.status)
		s.metrics.handshake(hsRefused)
		writeRefusal(w, ref)
		s.log.Info("backend refused upgrade", zap.String("remote", r.RemoteAddr),
			zap.String("backend", rt.backend), zap.Int("status", ref.status))
	case errors.As(err, &he):
		result := hsUnreachable
		switch he.status {
		case http.StatusGatewayTimeout:
			result = hsBackendTimeout
		case statusClientClosed:
			result = hsClientFailed
		}
		if he.dial {
			s.passive(rt.backend, 0)
		}
		s.refuse(w, r, result, he)
	}
}
