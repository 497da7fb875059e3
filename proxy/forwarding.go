package proxy

import (
	"net/http"
	"strings"
)

// proxyOwnedNames are the request headers the proxy writes itself towards
// a backend: who the client is, how it connected, and the request's ID. A
// backend believes them, so what a client sends under these names never
// passes, in any spelling: besides case, many servers (CGI and PHP, nginx
// with underscores_in_headers, Rack) read an underscore as a dash, so that
// X_Forwarded_For is X-Forwarded-For to them.
var proxyOwnedNames = [...]string{
	"x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip", "forwarded", "x-request-id",
}

// isProxyOwned reports whether a header name is, in some spelling, one the
// proxy writes itself.
func isProxyOwned[T string | []byte](name T) bool {
	for _, own := range proxyOwnedNames {
		if len(name) != len(own) {
			continue
		}
		same := true
		for i := range len(name) {
			c := lower(name[i])
			if c == '_' {
				c = '-'
			}
			if c != own[i] {
				same = false
				break
			}
		}
		if same {
			return true
		}
	}
	return false
}

// dropProxyOwned deletes every spelling of the proxy's own headers from h.
func dropProxyOwned(h http.Header) {
	for k := range h {
		if isProxyOwned(k) {
			delete(h, k)
		}
	}
}

// forwarding is what the proxy tells a backend about a client, on an
// upgrade the loops relay and on a plain request alike: computed here once
// for both.
type forwarding struct {
	xff, proto, realIP, host string // "" for a header not to send
}

// forwardingFor says who the client of rt is, given what the request
// carried under the forwarding names (h) and whether it came over TLS. A
// trusted peer's chain and claims are extended or kept; anyone else's
// never reach the backend.
func forwardingFor(rt route, h headers, overTLS bool) forwarding {
	var f forwarding
	if rt.trustedPeer {
		f.xff = strings.Join(h.Values("X-Forwarded-For"), ", ")
		f.host = strings.Join(h.Values("X-Forwarded-Host"), ", ")
		f.proto = h.Get("X-Forwarded-Proto")
	}
	// A peer that is not an IP (a PROXY protocol header naming a Unix
	// socket) adds nothing to the chain.
	if rt.peer.IsValid() {
		if f.xff != "" {
			f.xff += ", "
		}
		f.xff += rt.peer.String()
	}
	if f.proto == "" {
		f.proto = "http"
		if overTLS {
			f.proto = "https"
		}
	}
	if rt.client.IsValid() {
		f.realIP = rt.client.String()
	}
	return f
}

// appendTo writes f's header lines, each ending in CRLF.
func (f forwarding) appendTo(out []byte) []byte {
	for _, l := range [...]struct{ name, value string }{
		{"X-Forwarded-For", f.xff}, {"X-Forwarded-Host", f.host}, {"X-Forwarded-Proto", f.proto}, {"X-Real-IP", f.realIP},
	} {
		if l.value != "" {
			out = append(out, l.name...)
			out = append(out, ": "...)
			out = append(out, l.value...)
			out = append(out, "\r\n"...)
		}
	}
	return out
}

// setOn replaces whatever h carried under the proxy's own names, in any
// spelling, with f.
func (f forwarding) setOn(h http.Header) {
	dropProxyOwned(h)
	for name, value := range map[string]string{
		"X-Forwarded-For": f.xff, "X-Forwarded-Host": f.host, "X-Forwarded-Proto": f.proto, "X-Real-Ip": f.realIP,
	} {
		if value != "" {
			h.Set(name, value)
		}
	}
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
