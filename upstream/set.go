package upstream

import (
	"slices"
	"strings"
	"sync"
)

// Backend is one app server that may take traffic.
type Backend struct {
	Addr   string // host:port; the backend's identity on the ring
	Weight int    // share of the ring relative to other backends; at least 1
}

// Snapshot is the set of backends in the ring at one moment. It is never
// modified after publication, so it is safe to share.
type Snapshot struct {
	Version  uint64    // increases with every published change
	Backends []Backend // sorted by Addr
}

// Set holds the current Snapshot and signals its changes. It is safe for
// concurrent use.
type Set struct {
	mu      sync.Mutex // guards cur and serializes publication
	cur     *Snapshot
	changed chan struct{}
}

// NewSet returns a Set holding backends.
func NewSet(backends []Backend) *Set {
	s := &Set{changed: make(chan struct{}, 1)}
	s.cur = &Snapshot{Version: 1, Backends: normalize(backends)}
	return s
}

// Snapshot returns the current snapshot.
func (s *Set) Snapshot() *Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// Changed delivers one pending signal after any number of changes; the
// receiver reads Snapshot to see where things stand.
func (s *Set) Changed() <-chan struct{} { return s.changed }

// Replace publishes backends as the new set, unless they equal the current
// one.
func (s *Set) Replace(backends []Backend) {
	next := normalize(backends)
	s.mu.Lock()
	if slices.Equal(next, s.cur.Backends) {
		s.mu.Unlock()
		return
	}
	s.cur = &Snapshot{Version: s.cur.Version + 1, Backends: next}
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// normalize copies backends sorted by address, with weights of at least 1
// and one entry per address.
func normalize(backends []Backend) []Backend {
	out := make([]Backend, 0, len(backends))
	for _, b := range backends {
		b.Weight = max(b.Weight, 1)
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b Backend) int { return strings.Compare(a.Addr, b.Addr) })
	return slices.CompactFunc(out, func(a, b Backend) bool { return a.Addr == b.Addr })
}
