package proxy

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
)

// AdminHeader must be on every admin request that is not a GET or a HEAD.
// A web page can send a form POST, or a fetch in no-cors mode, to any
// address its visitor reaches, 127.0.0.1 included; but it cannot add a
// header of its own to a cross-site request without a CORS preflight, and
// the admin listener answers no preflight. Its value does not matter;
// operators send "X-Wsedge-Admin: 1".
const AdminHeader = "X-Wsedge-Admin"

// AdminGuard keeps the admin endpoints to the operator's own tools.
//
// Requests that can change state (any method but GET and HEAD) must carry
// AdminHeader, must not say they come from another site (Sec-Fetch-Site,
// Origin), and, when no token is set, must name the listener by an IP
// address or "localhost": a page that points its own name at 127.0.0.1
// (DNS rebinding) is same-origin to the browser, and only the Host header
// gives it away.
//
// With a token set, every request but GET /healthz and /readyz, which
// probes must reach, needs "Authorization: Bearer <token>" too.
//
// The zero value checks no token. Safe for concurrent use; SetToken may be
// called while requests are served.
type AdminGuard struct {
	// token is the SHA-256 of the token, so that comparing it in constant
	// time does not give away its length either; nil for none.
	token atomic.Pointer[[sha256.Size]byte]
}

// SetToken makes token the one requests must carry; "" turns the token
// check off.
func (g *AdminGuard) SetToken(token string) {
	if token == "" {
		g.token.Store(nil)
		return
	}
	sum := sha256.Sum256([]byte(token))
	g.token.Store(&sum)
}

// Wrap returns h behind the guard. Wrap the whole admin listener, so that
// an endpoint added later is covered without anyone remembering to.
func (g *AdminGuard) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want := g.token.Load()
		if want != nil && !probe(r.URL.Path) && !bearerMatches(r, want) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="wsedge admin"`)
			http.Error(w, "admin token required: send Authorization: Bearer <the token in admin_token_file>", http.StatusUnauthorized)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if why := crossSite(r, want == nil); why != "" {
				http.Error(w, why, http.StatusForbidden)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// probe reports whether path is one that load balancers and orchestrators
// poll without credentials, or the dashboard's page, which holds no data
// and asks for the token itself. They change nothing and tell nothing
// beyond up or down.
func probe(path string) bool { return path == "/healthz" || path == "/readyz" || path == "/dashboard" }

func bearerMatches(r *http.Request, want *[sha256.Size]byte) bool {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// crossSite says why a state-changing request may come from a web page, or
// "" when it cannot. byName also refuses a Host that is a name rather than
// an address.
func crossSite(r *http.Request, byName bool) string {
	if r.Header.Get(AdminHeader) == "" {
		return fmt.Sprintf("%s %s changes state: send the header %s: 1 (web pages cannot send it cross-site)",
			r.Method, r.URL.Path, AdminHeader)
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return fmt.Sprintf("refused: the browser says this request is %s (Sec-Fetch-Site)", site)
	}
	if origin := r.Header.Get("Origin"); origin != "" && !strings.EqualFold(origin, ownOrigin(r)) {
		return fmt.Sprintf("refused: request from origin %s, not from %s", origin, ownOrigin(r))
	}
	if byName && !addressed(r.Host) {
		return fmt.Sprintf("refused: Host %q is a name; name the admin listener by IP address or localhost, or set admin_token_file",
			r.Host)
	}
	return ""
}

// ownOrigin is the origin a page served by this listener would have.
func ownOrigin(r *http.Request) string {
	if r.TLS != nil {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

// addressed reports whether host (host or host:port, as in a Host header)
// is an IP address or localhost, which no web page can point elsewhere.
func addressed(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	_, err := netip.ParseAddr(host)
	return err == nil
}
