package proxy

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// hopHeaders apply to one connection only and are never passed on
// (RFC 9110 section 7.6.1).
var hopHeaders = map[string]bool{
	"Connection":          true,
	"Keep-Alive":          true,
	"Proxy-Authenticate":  true,
	"Proxy-Authorization": true,
	"Proxy-Connection":    true,
	"Te":                  true,
	"Trailer":             true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
}

// replacedHeaders are written by the proxy itself towards the backend: the
// WebSocket handshake (its own key, the offers it relays) and who the
// client is.
var replacedHeaders = map[string]bool{
	"Host":                     true,
	"Sec-Websocket-Key":        true,
	"Sec-Websocket-Version":    true,
	"Sec-Websocket-Protocol":   true,
	"Sec-Websocket-Extensions": true,
	"Sec-Websocket-Accept":     true,
	"X-Forwarded-For":          true,
	"X-Forwarded-Proto":        true,
	"X-Real-Ip":                true,
	"X-Request-Id":             true,
}

func isHopHeader(canonical string) bool      { return hopHeaders[canonical] }
func isReplacedHeader(canonical string) bool { return replacedHeaders[canonical] }

// connectionListed reports whether the Connection header names key as
// hop-by-hop.
func connectionListed(h http.Header, key string) bool {
	return headerHasToken(h, "Connection", key)
}

// headerHasToken reports whether a comma-separated header holds token,
// case-insensitively.
func headerHasToken(h http.Header, name, token string) bool {
	for _, line := range h.Values(name) {
		for _, t := range strings.Split(line, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// peerAddr is the TCP peer of r, or the zero Addr when it cannot be parsed.
func peerAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err == nil {
		return ap.Addr().Unmap()
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}
