package proxy

import (
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/wsedge/wsedge/affinity"
	"github.com/wsedge/wsedge/upstream"
)

// ErrNoBackend means the ring is empty: no backend can take the request.
var ErrNoBackend = errors.New("no backend in the ring")

// memberSource is what the router needs from upstream.
type memberSource interface {
	Snapshot() *upstream.Snapshot // immutable; safe to keep
	Changed() <-chan struct{}     // one pending signal, coalesced
}

var _ memberSource = (*upstream.Set)(nil)

// table is everything a routing decision reads, built whole and never
// modified, so lookups need no lock.
type table struct {
	cfg      Config
	ring     *affinity.Ring
	snapshot *upstream.Snapshot
}

// router holds the current table. Readers Load it; writers build a new one
// and Store it.
type router struct {
	cur atomic.Pointer[table]
	mu  sync.Mutex // serializes writers
}

func newRouter(cfg Config, snap *upstream.Snapshot) *router {
	r := &router{}
	r.cur.Store(buildTable(cfg.withDefaults(), snap))
	return r
}

func (r *router) table() *table { return r.cur.Load() }

// setConfig swaps in a new config, keeping the current members. It returns
// the previous table and the new one.
func (r *router) setConfig(cfg Config) (old, cur *table) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old = r.cur.Load()
	cur = buildTable(cfg.withDefaults(), old.snapshot)
	r.cur.Store(cur)
	return old, cur
}

// setMembers swaps in a new member snapshot under the current config.
func (r *router) setMembers(snap *upstream.Snapshot) (old, cur *table) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old = r.cur.Load()
	cur = buildTable(old.cfg, snap)
	r.cur.Store(cur)
	return old, cur
}

func buildTable(cfg Config, snap *upstream.Snapshot) *table {
	members := make([]affinity.Member, len(snap.Backends))
	for i, b := range snap.Backends {
		members[i] = affinity.Member{Addr: b.Addr, Weight: b.Weight}
	}
	return &table{cfg: cfg, ring: affinity.NewRing(members, cfg.VNodes), snapshot: snap}
}

// placement is where a client's connection went and what put it there: all
// that a live connection keeps of its route.
type placement struct {
	backend string     // the chosen backend's address
	client  netip.Addr // the client's IP after trusted proxies
	key     uint64     // the hash the ring was asked about
	// pinned: a valid route cookie named the backend; the key does not decide.
	pinned bool
}

// route is where one request goes and why.
type route struct {
	placement
	peer netip.Addr // the TCP peer
	// trustedPeer: the peer is a trusted proxy, so its forwarding headers
	// are extended rather than replaced.
	trustedPeer bool
	by          string // what decided: "ip", "cookie", "header", or "ip" as a fallback
	// setCookie is a route token to hand the client; empty when it has a
	// valid one.
	setCookie string
	// staleCookie: the client's route cookie named a backend no longer in
	// the ring (or was forged), so it lands on a new owner.
	staleCookie bool
	id          uint64 // the connection's or request's number
	requestID   string // X-Request-ID as the client sent it, or as the proxy made it
}

// loadView is what bounded loads need to know: live connections per
// backend, and where keys were placed before.
type loadView interface {
	load(backend string) (n, total int)
	placed(key uint64) (backend string, ok bool)
	place(key uint64, backend string)
}

// route picks the backend for a request from peer with headers h. loads is
// consulted when bounded loads are on.
func (t *table) route(peer netip.Addr, h headers, loads loadView) (route, error) {
	rt := route{
		placement:   placement{client: t.cfg.Trusted.ClientIP(peer, h.Values("X-Forwarded-For"), h.Values("Forwarded"))},
		peer:        peer,
		trustedPeer: t.cfg.Trusted.Contains(peer),
	}
	rt.key, rt.by = affinity.HashAddr(rt.client), "ip"
	switch t.cfg.Key {
	case KeyHeader:
		if v := h.Get(t.cfg.Header); v != "" {
			rt.key, rt.by = affinity.HashString(v), "header"
		}
	case KeyCookie:
		if tok := cookieValue(h, t.cfg.Cookie); tok != "" {
			if i, ok := t.ring.ByToken(tok); ok {
				rt.backend, rt.by, rt.pinned = t.ring.Member(i).Addr, "cookie", true
				return rt, nil
			}
			rt.staleCookie = true
		}
	}
	i := t.ring.Lookup(rt.key)
	if i < 0 {
		return rt, ErrNoBackend
	}
	if t.cfg.LoadFactor > 0 && loads != nil {
		i = t.boundedOwner(rt.key, loads)
	}
	rt.backend = t.ring.Member(i).Addr
	if t.cfg.Key == KeyCookie {
		rt.setCookie = affinity.Token(rt.backend)
	}
	return rt, nil
}

// boundedOwner places a key by consistent hashing with bounded loads: the
// first backend clockwise from the key that is under its bound. A key keeps
// the backend it was first given while that backend is in the ring, so
// established clients never move because of load. In cookie mode the route
// token carries the placement, so every proxy honours it.
func (t *table) boundedOwner(key uint64, loads loadView) int {
	if b, ok := loads.placed(key); ok {
		if i, ok := t.ring.Index(b); ok {
			return i
		}
	}
	i := t.ring.LookupBounded(key, func(i int) bool {
		n, total := loads.load(t.ring.Member(i).Addr)
		return n < t.ring.BoundedLimit(i, total, t.cfg.LoadFactor)
	})
	loads.place(key, t.ring.Member(i).Addr)
	return i
}

// routeCookie is the Set-Cookie value that pins a client to its backend.
func (t *table) routeCookie(token string) string {
	c := http.Cookie{Name: t.cfg.Cookie, Value: token, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode}
	return c.String()
}

// headers is what routing reads of a request: an http.Header, or a head
// the event loop parsed in place.
type headers interface {
	Values(key string) []string
	Get(key string) string
}

var _ headers = http.Header(nil)

// cookieValue returns the value of the named cookie in h, or "". Malformed
// cookies of other names do not hide it (RFC 6265 section 5.4 syntax,
// read leniently as browsers write it).
func cookieValue(h headers, name string) string {
	for _, line := range h.Values("Cookie") {
		for line != "" {
			var pair string
			pair, line, _ = strings.Cut(line, ";")
			k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if ok && k == name {
				if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
					v = v[1 : len(v)-1]
				}
				return v
			}
		}
	}
	return ""
}
