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

// forwardedHost is the X-Forwarded-Host a trusted proxy in front said the
// client asked for, to pass on; "" from anyone else.
func forwardedHost(values []string, trusted bool) string {
	if !trusted || len(values) == 0 {
		return ""
	}
	return strings.Join(values, ", ")
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
