package proxy

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/wsedge/wsedge/affinity"
	"github.com/wsedge/wsedge/upstream"
	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

// browserForm is what a cross-site HTML form POST carries.
var browserForm = http.Header{
	"Content-Type":   {"application/x-www-form-urlencoded"},
	"Origin":         {"http://evil.example"},
	"Sec-Fetch-Site": {"cross-site"},
}

// with returns h plus the given name, value pairs.
func with(h http.Header, kv ...string) http.Header {
	out := h.Clone()
	if out == nil {
		out = http.Header{}
	}
	for i := 0; i < len(kv); i += 2 {
		out.Set(kv[i], kv[i+1])
	}
	return out
}

func TestAdminGuard(t *testing.T) {
	const token = "0123456789abcdef-token"
	admin := with(nil, AdminHeader, "1")
	tests := []struct {
		name     string
		token    string // the guard's; "" for none
		method   string
		path     string
		host     string // "" for 127.0.0.1:9090
		give     http.Header
		want     int    // 0: reaches the endpoint
		wantBody string // in a refusal
	}{
		{name: "cross-site form POST", method: "POST", path: "/debug/drain", give: browserForm,
			want: http.StatusForbidden, wantBody: AdminHeader},
		{name: "no-cors fetch", method: "POST", path: "/debug/undrain",
			give: http.Header{"Origin": {"http://evil.example"}, "Sec-Fetch-Site": {"cross-site"}, "Sec-Fetch-Mode": {"no-cors"}},
			want: http.StatusForbidden, wantBody: AdminHeader},
		{name: "header but a foreign origin", method: "POST", path: "/debug/drain",
			give: with(nil, AdminHeader, "1", "Origin", "http://evil.example"), want: http.StatusForbidden, wantBody: "evil.example"},
		{name: "header but another port of the same host", method: "POST", path: "/debug/drain",
			give: with(admin, "Origin", "http://127.0.0.1:8080"), want: http.StatusForbidden},
		{name: "header but origin null", method: "POST", path: "/debug/drain",
			give: with(admin, "Origin", "null"), want: http.StatusForbidden},
		{name: "header but cross-site by fetch metadata", method: "POST", path: "/debug/drain",
			give: with(admin, "Sec-Fetch-Site", "cross-site"), want: http.StatusForbidden, wantBody: "cross-site"},
		{name: "header but same-site", method: "POST", path: "/debug/drain",
			give: with(admin, "Sec-Fetch-Site", "same-site"), want: http.StatusForbidden},
		{name: "curl with the header", method: "POST", path: "/debug/drain", give: admin},
		{name: "own page", method: "POST", path: "/debug/drain",
			give: with(admin, "Origin", "http://127.0.0.1:9090", "Sec-Fetch-Site", "same-origin")},
		{name: "typed into the browser", method: "POST", path: "/debug/drain", give: with(admin, "Sec-Fetch-Site", "none")},
		{name: "localhost", method: "POST", path: "/debug/drain", host: "localhost:9090", give: admin},
		{name: "IPv6 loopback", method: "POST", path: "/debug/drain", host: "[::1]:9090", give: admin},
		{name: "DNS rebinding", method: "POST", path: "/debug/drain", host: "evil.example:9090",
			give: with(admin, "Origin", "http://evil.example:9090", "Sec-Fetch-Site", "same-origin"),
			want: http.StatusForbidden, wantBody: "evil.example"},
		{name: "a name, with the token", token: token, method: "POST", path: "/debug/drain", host: "wsedge-1.internal:9090",
			give: with(admin, "Authorization", "Bearer "+token)},
		{name: "PUT", method: "PUT", path: "/debug/later", want: http.StatusForbidden},
		{name: "DELETE", method: "DELETE", path: "/debug/later", want: http.StatusForbidden},
		{name: "preflight", method: "OPTIONS", path: "/debug/drain",
			give: http.Header{"Origin": {"http://evil.example"}, "Access-Control-Request-Method": {"POST"}}, want: http.StatusForbidden},
		{name: "cross-site GET untouched", method: "GET", path: "/debug/ring", give: browserForm},
		{name: "cross-site HEAD untouched", method: "HEAD", path: "/debug/ring", give: browserForm},

		{name: "no token", token: token, method: "GET", path: "/debug/ring",
			want: http.StatusUnauthorized, wantBody: "Authorization: Bearer"},
		{name: "no token for metrics", token: token, method: "GET", path: "/metrics", want: http.StatusUnauthorized},
		{name: "no token for the profiler", token: token, method: "GET", path: "/debug/pprof/", want: http.StatusUnauthorized},
		{name: "wrong token", token: token, method: "GET", path: "/debug/ring",
			give: with(nil, "Authorization", "Bearer "+token+"x"), want: http.StatusUnauthorized},
		{name: "token as basic auth", token: token, method: "GET", path: "/debug/ring",
			give: with(nil, "Authorization", "Basic "+token), want: http.StatusUnauthorized},
		{name: "token", token: token, method: "GET", path: "/debug/ring", give: with(nil, "Authorization", "Bearer "+token)},
		{name: "token, scheme in lower case", token: token, method: "GET", path: "/debug/ring",
			give: with(nil, "Authorization", "bearer "+token)},
		{name: "token does not replace the header", token: token, method: "POST", path: "/debug/drain",
			give: with(nil, "Authorization", "Bearer "+token), want: http.StatusForbidden, wantBody: AdminHeader},
		{name: "token and header", token: token, method: "POST", path: "/debug/drain",
			give: with(admin, "Authorization", "Bearer "+token)},
		{name: "healthz without token", token: token, method: "GET", path: "/healthz"},
		{name: "readyz without token", token: token, method: "GET", path: "/readyz"},
		{name: "token with a cross-site form", token: token, method: "POST", path: "/debug/drain",
			give: with(browserForm, "Authorization", "Bearer "+token), want: http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var g AdminGuard
			g.SetToken(tt.token)
			reached := false
			h := g.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached = true }))
			req := httptest.NewRequest(tt.method, "http://127.0.0.1:9090"+tt.path, nil)
			if tt.host != "" {
				req.Host = tt.host
			}
			req.Header = tt.give.Clone()
			if req.Header == nil {
				req.Header = http.Header{}
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if tt.want == 0 {
				if !reached || rec.Code != http.StatusOK {
					t.Fatalf("refused with %d %q, want it through", rec.Code, rec.Body)
				}
				return
			}
			if reached || rec.Code != tt.want || !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Fatalf("reached %v, answered %d %q; want %d with %q", reached, rec.Code, rec.Body, tt.want, tt.wantBody)
			}
			if tt.want == http.StatusUnauthorized && !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without WWW-Authenticate: Bearer (got %q)", rec.Header().Get("WWW-Authenticate"))
			}
		})
	}
}

// SetToken("") turns the check off again, as a reload that drops
// admin_token_file does.
func TestAdminGuardTokenChanges(t *testing.T) {
	var g AdminGuard
	h := g.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	get := func(auth string) int {
		req := httptest.NewRequest("GET", "http://127.0.0.1:9090/debug/ring", nil)
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	steps := []struct {
		set  string
		give string
		want int
	}{
		{"old-token-0123456789", "old-token-0123456789", http.StatusOK},
		{"new-token-0123456789", "old-token-0123456789", http.StatusUnauthorized},
		{"new-token-0123456789", "new-token-0123456789", http.StatusOK},
		{"", "", http.StatusOK},
	}
	for i, st := range steps {
		g.SetToken(st.set)
		if got := get(st.give); got != st.want {
			t.Errorf("step %d: token %q, sent %q: %d, want %d", i, st.set, st.give, got, st.want)
		}
	}
}

// A cross-site form POST to the real drain endpoint drains nothing: the
// backend stays in the ring and its WebSocket stays open. The operator's
// request, with the header, drains it.
func TestAdminCrossSiteDrain(t *testing.T) {
	b1 := upstreamtest.Start(t, upstreamtest.WithName("one"))
	b2 := upstreamtest.Start(t, upstreamtest.WithName("two"))
	p := startProxy(t, Config{}, b1, b2)
	var g AdminGuard
	h := g.Wrap(p.srv.AdminHandler())
	c := dial(t, p, "/", nil)
	on := whoami(t, c)
	addr := b1.Addr
	if on == b2.Name {
		addr = b2.Addr
	}
	post := func(path string, hdr http.Header) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "http://127.0.0.1:9090"+path, nil)
		req.Header = hdr.Clone()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	inRing := func() bool {
		for _, m := range p.srv.Ring().Members {
			if m.Addr == addr {
				return m.State == string(upstream.StateHealthy)
			}
		}
		return false
	}

	for _, path := range []string{"/debug/drain?backend=" + addr + "&rate=1000", "/debug/undrain?backend=" + addr} {
		if rec := post(path, browserForm); rec.Code != http.StatusForbidden {
			t.Fatalf("cross-site POST %s: %d %q, want 403", path, rec.Code, rec.Body)
		}
	}
	time.Sleep(100 * time.Millisecond) // a drain would have closed the connection by now
	if !inRing() {
		t.Fatalf("%s left the ring after a cross-site POST: %+v", addr, p.srv.Ring())
	}
	if got := whoami(t, c); got != on {
		t.Fatalf("the live connection answered %q, want %q", got, on)
	}

	if rec := post("/debug/drain?backend="+addr+"&rate=1000", with(nil, AdminHeader, "1")); rec.Code != http.StatusOK {
		t.Fatalf("operator's drain: %d %q", rec.Code, rec.Body)
	}
	if inRing() {
		t.Fatalf("%s still in the ring after the operator's drain", addr)
	}
}

// Asking where a key routes leaves the answer as it was: the placement
// bounded loads remembered for the key is not refreshed by the question.
func TestAdminReadsChangeNothing(t *testing.T) {
	b1 := upstreamtest.Start(t, upstreamtest.WithName("one"))
	b2 := upstreamtest.Start(t, upstreamtest.WithName("two"))
	p := startProxy(t, Config{LoadFactor: 1.25}, b1, b2)
	const key = "203.0.113.7"
	h := affinity.HashAddr(netip.MustParseAddr(key))
	owner := p.srv.Ring().Members[0].Addr
	if ex, err := p.srv.Explain(key); err == nil {
		owner = ex.Backend
	}
	other := b1.Addr
	if other == owner {
		other = b2.Addr
	}
	p.srv.places.mu.Lock()
	p.srv.places.old[h] = other
	p.srv.places.mu.Unlock()

	var g AdminGuard
	rec := httptest.NewRecorder()
	g.Wrap(p.srv.AdminHandler()).ServeHTTP(rec, httptest.NewRequest("GET", "http://127.0.0.1:9090/debug/ring?key="+key, nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), other) {
		t.Fatalf("GET /debug/ring?key=%s: %d %s, want the remembered placement on %s", key, rec.Code, rec.Body, other)
	}
	p.srv.places.mu.Lock()
	_, promoted := p.srv.places.cur[h]
	p.srv.places.mu.Unlock()
	if promoted {
		t.Error("GET /debug/ring?key= refreshed the key's placement")
	}
}
