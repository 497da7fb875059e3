//go:build linux

package proxy

import "net/http"

// serveWebSocket refuses an upgrade that reached the HTTP server. Every
// client of ListenTCP, and every TCP client of another listener, goes to
// the event loops, which do its handshake and relay it; only a connection
// they cannot take (not a TCP socket, such as one of a listener an
// embedding program wraps) gets here, and it is told so.
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request, _ *table, rt route) {
	s.reg.unreserve(rt.backend, rt.client)
	s.refuse(w, r, hsBadRequest, &handshakeError{status: http.StatusNotImplemented,
		msg: "WebSocket upgrades are served on TCP connections the event loops take"})
}
