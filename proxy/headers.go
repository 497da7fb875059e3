package proxy

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// hopHeaderNames apply to one connection only and are never passed on
// (RFC 9110 section 7.6.1).
var hopHeaderNames = [...]string{
	"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// replacedHeaderNames are written by the proxy itself towards the backend
// on the HTTP server path's WebSocket handshake: its own key, the offers it
// relays. Who the client is comes from the proxy too: see isProxyOwned.
var replacedHeaderNames = [...]string{
	"Host", "Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Protocol",
	"Sec-Websocket-Extensions", "Sec-Websocket-Accept",
}

func isHopHeader(name string) bool      { return anyFold(name, hopHeaderNames[:]) }
func isReplacedHeader(name string) bool { return anyFold(name, replacedHeaderNames[:]) }

// isHopHeaderBytes is isHopHeader for a name still in a parsed head.
func isHopHeaderBytes(name []byte) bool {
	for _, h := range hopHeaderNames {
		if equalFold(name, h) {
			return true
		}
	}
	return false
}

// equalFold reports whether b equals s, ignoring ASCII case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

func anyFold(name string, list []string) bool {
	for _, h := range list {
		if strings.EqualFold(name, h) {
			return true
		}
	}
	return false
}

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
