package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/wsedge/wsedge/affinity"
	"github.com/wsedge/wsedge/upstream"
)

// RingMember is one backend as /debug/ring shows it.
type RingMember struct {
	Addr   string  `json:"addr"`
	Weight int     `json:"weight"`
	State  string  `json:"state"`
	Share  float64 `json:"share"` // fraction of the hash space it owns
	Live   int     `json:"live"`  // live WebSocket connections through this proxy
	// LastError says why a backend outside the ring failed its checks.
	LastError string `json:"last_error,omitempty"`
}

// RingStatus is the ring as /debug/ring shows it.
type RingStatus struct {
	Version uint64       `json:"version"`
	VNodes  int          `json:"vnodes"`
	Members []RingMember `json:"members"`
}

// Explanation says where a key routes and why, for /debug/ring?key= and
// `wsedge route`.
type Explanation struct {
	Key     string `json:"key"`
	By      string `json:"by"`   // how the key was read: ip, header, cookie
	Hash    string `json:"hash"` // the key's position on the ring
	Backend string `json:"backend"`
	Why     string `json:"why"`
}

// Ring returns the current ring and each backend's live connections.
func (s *Server) Ring() RingStatus {
	t := s.router.table()
	counts := s.reg.counts()
	st := RingStatus{Version: t.snapshot.Version, VNodes: t.cfg.VNodes, Members: []RingMember{}}
	for i := range t.ring.Len() {
		m := t.ring.Member(i)
		st.Members = append(st.Members, RingMember{
			Addr: m.Addr, Weight: m.Weight, State: string(upstream.StateHealthy), Share: t.ring.Share(i), Live: counts[m.Addr],
		})
	}
	// Known backends outside the ring, with why they are out.
	for _, m := range t.snapshot.Members {
		if _, in := t.ring.Index(m.Addr); in {
			continue
		}
		st.Members = append(st.Members, RingMember{
			Addr: m.Addr, Weight: m.Weight, State: string(m.State), Live: counts[m.Addr], LastError: m.LastError,
		})
	}
	return st
}

// Explain routes key as the current table would: a route token in cookie
// mode, a header value in header mode, and a client IP otherwise; with
// bounded loads, a key placed before is where it was placed.
func (s *Server) Explain(key string) (Explanation, error) {
	t := s.router.table()
	ex, err := Explain(t.cfg, t.ring, key)
	if err != nil || t.cfg.LoadFactor <= 0 || ex.By == "cookie" {
		return ex, err
	}
	h, err := strconv.ParseUint(ex.Hash, 16, 64)
	if err != nil {
		return ex, nil
	}
	if b, ok := s.places.peek(h, time.Now()); ok && b != ex.Backend {
		if _, in := t.ring.Index(b); in {
			ex.Why = fmt.Sprintf("bounded loads placed this key on %s when %s, its ring owner, was at its bound; it stays there while %s is in the ring",
				b, ex.Backend, b)
			ex.Backend = b
		}
	}
	return ex, nil
}

// Explain routes key over ring under cfg; see Server.Explain.
func Explain(cfg Config, ring *affinity.Ring, key string) (Explanation, error) {
	cfg = cfg.withDefaults()
	ex := Explanation{Key: key}
	if ring.Len() == 0 {
		return ex, ErrNoBackend
	}
	if cfg.Key == KeyCookie {
		if i, ok := ring.ByToken(key); ok {
			ex.By, ex.Backend = "cookie", ring.Member(i).Addr
			ex.Why = "route token names " + ex.Backend + ", which is in the ring"
			return ex, nil
		}
	}
	var h uint64
	switch addr, err := netip.ParseAddr(key); {
	case cfg.Key == KeyHeader:
		ex.By, h = "header", affinity.HashString(key)
	case err == nil:
		ex.By, h = "ip", affinity.HashAddr(addr.Unmap())
	default:
		return ex, fmt.Errorf("key %q is not an IP address (affinity key is ip)", key)
	}
	i := ring.Lookup(h)
	ex.Hash = fmt.Sprintf("%016x", h)
	ex.Backend = ring.Member(i).Addr
	ex.Why = fmt.Sprintf("%s key hashes to %s; the next point clockwise belongs to %s, which owns %.1f%% of the ring of %d backends",
		ex.By, ex.Hash, ex.Backend, 100*ring.Share(i), ring.Len())
	return ex, nil
}

// SessionInfo is one live connection as /debug/connections shows it.
type SessionInfo struct {
	ID       uint64    `json:"id"`
	Client   string    `json:"client"`
	Backend  string    `json:"backend"`
	Started  time.Time `json:"started"`
	Age      string    `json:"age"`
	BytesIn  int64     `json:"bytes_in"`
	BytesOut int64     `json:"bytes_out"`
	// MessagesIn and MessagesOut count whole messages from and to the
	// client; the rates are those of the last whole second.
	MessagesIn  uint64    `json:"messages_in"`
	MessagesOut uint64    `json:"messages_out"`
	RateIn      uint32    `json:"messages_in_per_second"`
	RateOut     uint32    `json:"messages_out_per_second"`
	Idle        string    `json:"idle"` // since the last data frame either way
	LastPong    time.Time `json:"last_pong,omitzero"`
}

// Connections lists the live connections of backend, or of all backends.
func (s *Server) Connections(backend string) []SessionInfo {
	out := []SessionInfo{}
	for _, lc := range s.reg.sessions(backend) {
		c := lc.relay()
		started := time.Unix(0, c.started)
		now := time.Now()
		last := time.Unix(0, max(c.started, c.lastData.Load()))
		info := SessionInfo{
			ID: c.id, Client: c.client.String(), Backend: c.backend,
			Started: started, Age: now.Sub(started).Round(time.Millisecond).String(),
			BytesIn: c.bytesUp.Load(), BytesOut: c.bytesDown.Load(),
			MessagesIn: c.msgs.total[0].Load(), MessagesOut: c.msgs.total[1].Load(),
			RateIn: c.msgs.perSecond(true, now.UnixNano()), RateOut: c.msgs.perSecond(false, now.UnixNano()),
			Idle: now.Sub(last).Round(time.Millisecond).String(),
		}
		if p := c.lastPong.Load(); p != 0 {
			info.LastPong = time.Unix(0, p)
		}
		out = append(out, info)
	}
	return out
}

// Ready reports whether the proxy can route: its ring has a member.
func (s *Server) Ready() bool { return !s.stopping.Load() && s.router.table().ring.Len() > 0 }

// AdminHandler serves the proxy's own admin endpoints: /healthz, /readyz,
// /debug/ring (with ?key=K to explain one route) and /debug/connections
// (with ?backend=B), which change nothing, and POST /debug/drain and
// /debug/undrain, which do. It trusts whoever reaches it: serve it behind
// an AdminGuard, so that a web page its operator visits cannot drive it.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		switch {
		case s.stopping.Load():
			http.Error(w, "not ready: shutting down", http.StatusServiceUnavailable)
			return
		case !s.Ready():
			http.Error(w, "not ready: no backend in the ring", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("GET /debug/ring", func(w http.ResponseWriter, r *http.Request) {
		if key := r.URL.Query().Get("key"); key != "" {
			ex, err := s.Explain(key)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			writeJSON(w, ex)
			return
		}
		writeJSON(w, s.Ring())
	})
	mux.HandleFunc("GET /dashboard", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
		w.Write(dashboardPage)
	})
	mux.HandleFunc("GET /debug/stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, s.Stats())
	})
	mux.HandleFunc("GET /debug/connections", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, s.Connections(r.URL.Query().Get("backend")))
	})
	mux.HandleFunc("POST /debug/drain", func(w http.ResponseWriter, r *http.Request) {
		backend := r.URL.Query().Get("backend")
		if backend == "" {
			http.Error(w, "want ?backend=host:port", http.StatusBadRequest)
			return
		}
		rate := 0
		if v := r.URL.Query().Get("rate"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				http.Error(w, "rate must be a positive number of closes a second", http.StatusBadRequest)
				return
			}
			rate = n
		}
		n, err := s.Drain(backend, rate)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		writeJSON(w, map[string]any{"backend": backend, "closing": n, "rate": rate})
	})
	mux.HandleFunc("POST /debug/undrain", func(w http.ResponseWriter, r *http.Request) {
		backend := r.URL.Query().Get("backend")
		if err := s.Undrain(backend); err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		writeJSON(w, map[string]any{"backend": backend, "undrained": true})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
