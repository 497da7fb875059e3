package proxy

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// maxRefusalBody bounds the body of a backend's refusal that is relayed to
// the client; a refusal is a short message, not a download.
const maxRefusalBody = 64 << 10

// handshakeError is a handshake that ends with an HTTP status to the client.
type handshakeError struct {
	status int
	msg    string
	err    error         // underlying cause for the log, if any
	dial   bool          // the backend could not be reached at all
	retry  time.Duration // when to come back, for Retry-After on 503 and 429; zero means retryAfter
}

// retryAfter is the Retry-After value for he: its own wait, rounded up to
// a second, or the proxy's usual one.
func (he *handshakeError) retryAfter() string {
	if he.retry <= 0 {
		return retryAfter
	}
	return strconv.Itoa(int((he.retry + time.Second - 1) / time.Second))
}

func (e *handshakeError) Error() string { return e.msg }
func (e *handshakeError) Unwrap() error { return e.err }

// isWebSocketUpgrade reports whether r asks to switch to WebSocket.
func isWebSocketUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", "websocket")
}

// checkClientHandshake applies RFC 6455 section 4.2.1 before anything is
// dialed, so that a malformed request costs no backend connection.
func checkClientHandshake(r *http.Request) *handshakeError {
	switch {
	case r.Method != http.MethodGet:
		return &handshakeError{status: http.StatusMethodNotAllowed, msg: "websocket upgrade needs GET"}
	case !r.ProtoAtLeast(1, 1):
		return &handshakeError{status: http.StatusBadRequest, msg: "websocket upgrade needs HTTP/1.1"}
	}
	switch v := r.Header.Get("Sec-WebSocket-Version"); v {
	case "13":
	case "":
		return &handshakeError{status: http.StatusBadRequest, msg: "missing Sec-WebSocket-Version"}
	default:
		return &handshakeError{status: http.StatusUpgradeRequired, msg: "unsupported Sec-WebSocket-Version " + strconv.Quote(v)}
	}
	keys := r.Header.Values("Sec-WebSocket-Key")
	if len(keys) != 1 {
		return &handshakeError{status: http.StatusBadRequest, msg: "want exactly one Sec-WebSocket-Key"}
	}
	if k, err := base64.StdEncoding.DecodeString(keys[0]); err != nil || len(k) != 16 {
		return &handshakeError{status: http.StatusBadRequest, msg: "Sec-WebSocket-Key is not 16 bytes in base64"}
	}
	return nil
}

// statusClientClosed marks a handshake the client abandoned; nobody is
// left to receive it (nginx logs the same as 499).
const statusClientClosed = 499

// setForwarded writes who the client is: X-Forwarded-For, X-Forwarded-Proto
// and X-Real-IP, and X-Forwarded-Host when a trusted proxy in front sent
// one. Whatever the request carried under these names, in any spelling,
// goes first: a trusted peer's chain is extended, anyone else's claims
// never reach the backend.
func setForwarded(h http.Header, r *http.Request, rt route) {
	forwardingFor(rt, r.Header, r.TLS != nil).setOn(h)
}

// offeredProtocols lists the subprotocols the client offered, in order.
func offeredProtocols(h headers) []string {
	var out []string
	for _, line := range h.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(line, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// writeHandshakeError answers a handshake the proxy itself refuses.
func (s *Server) writeHandshakeError(w http.ResponseWriter, r *http.Request, he *handshakeError) {
	switch he.status {
	case http.StatusUpgradeRequired:
		w.Header().Set("Sec-WebSocket-Version", "13")
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		w.Header().Set("Retry-After", he.retryAfter())
	}
	if isWebSocketUpgrade(r) {
		// What the client sends next was meant for a WebSocket.
		w.Header().Set("Connection", "close")
	}
	http.Error(w, he.msg, he.status)
	s.log.Info("handshake refused",
		zap.String("remote", r.RemoteAddr), zap.Int("status", he.status),
		zap.String("reason", he.msg), zap.Error(he.err))
}
