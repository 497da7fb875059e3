package proxy

import (
	"net/http"
	"time"

	"go.uber.org/zap"
)

// localError counts a failure of the proxy's own resources and logs it, at
// most once a second: under such a burst every client fails alike, and a
// log line each would only add to the trouble. It returns the answer for
// the client: 503, to come back later.
func (s *Server) localError(kind string, err error) *handshakeError {
	s.metrics.localErrors.WithLabelValues(kind).Inc()
	now := time.Now().UnixNano()
	if last := s.localLogged.Load(); now-last >= int64(time.Second) && s.localLogged.CompareAndSwap(last, now) {
		s.log.Warn("proxy out of resources; answering 503 and leaving the backend's health alone",
			zap.String("kind", kind), zap.Error(err))
	}
	return &handshakeError{status: http.StatusServiceUnavailable, msg: "proxy out of " + kind + "; try again later", err: err}
}
