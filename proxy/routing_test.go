package proxy

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/wsedge/wsedge/affinity"
	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

func TestStickyByForwardedForFromTrustedProxy(t *testing.T) {
	var backends []*upstreamtest.Backend
	for i := range 3 {
		backends = append(backends, upstreamtest.Start(t, upstreamtest.WithName(fmt.Sprintf("b%d", i))))
	}
	p := startProxy(t, Config{Trusted: affinity.NewTrustedProxies([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")})}, backends...)
	count := map[string]int{}
	for i := range 60 {
		h := http.Header{"X-Forwarded-For": {fmt.Sprintf("10.%d.%d.7", i, i*3)}}
		c := dial(t, p, "/", h)
		first := whoami(t, c)
		c.Close()
		again := whoami(t, dial(t, p, "/", h))
		res := httpGet(t, "http://"+p.addr+"/poll", h)
		if again != first || res != first {
			t.Fatalf("client %d: websocket on %s, reconnect on %s, http on %s", i, first, again, res)
		}
		count[first]++
	}
	for name, n := range count {
		if n < 5 {
			t.Errorf("backend %s got %d of 60 clients", name, n)
		}
	}
	if len(count) != 3 {
		t.Fatalf("clients spread over %v, want all 3 backends", count)
	}
}

func TestCookieAffinity(t *testing.T) { cookieAffinity(t, rig{}) }

func cookieAffinity(t *testing.T, r rig) {
	var backends []*upstreamtest.Backend
	for i := range 3 {
		backends = append(backends, upstreamtest.Start(t, upstreamtest.WithName(fmt.Sprintf("b%d", i))))
	}
	p := r.start(t, Config{Key: KeyCookie, Cookie: "route"}, backends...)
	c, res, err := websocket.DefaultDialer.Dial(p.url("/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	first := whoami(t, c)
	c.Close()
	set := res.Header.Get("Set-Cookie")
	if !strings.HasPrefix(set, "route=") || !strings.Contains(set, "HttpOnly") ||
		!strings.Contains(set, "Path=/") || !strings.Contains(set, "SameSite=Lax") {
		t.Fatalf("101 Set-Cookie = %q, want an HttpOnly, Path=/, SameSite=Lax route cookie", set)
	}
	cookie := strings.SplitN(set, ";", 2)[0]
	// Each backend, pinned by its cookie, from any address.
	for _, b := range backends {
		h := http.Header{"Cookie": {"route=" + affinity.Token(b.Addr)}}
		if got := whoami(t, dial(t, p, "/", h)); got != b.Name {
			t.Fatalf("cookie for %s landed on %s", b.Name, got)
		}
	}
	if got := whoami(t, dial(t, p, "/", http.Header{"Cookie": {cookie}})); got != first {
		t.Fatalf("own cookie landed on %s, first connection on %s", got, first)
	}
	for _, junk := range []string{"route=", "route=zzz", "route=1ffffffffffffffff", "route=%00%01", "route=" + strings.Repeat("a", 5000)} {
		c, _, err := websocket.DefaultDialer.Dial(p.url("/"), http.Header{"Cookie": {junk}})
		if err != nil {
			t.Fatalf("cookie %.20q: %v", junk, err)
		}
		if got := whoami(t, c); got != first {
			t.Errorf("cookie %.20q: landed on %s, want the IP's backend %s", junk, got, first)
		}
		c.Close()
	}
}
