package proxy

import (
	"sync"
	"time"
)

const (
	// placementTTL is how long a key placed by bounded loads keeps its
	// backend without being seen again.
	placementTTL = time.Hour
	// placementCap bounds each generation of bounded loads' table, so that
	// a flood of new keys costs at most two generations of memory: about
	// 53 MiB each when full (a map of 2^20 keys to shared backend
	// addresses).
	placementCap = 1 << 20
	// sessionCap bounds each generation of the Engine.IO sessions seen:
	// any client can make up session IDs (?EIO=4&sid=...), and the table
	// only serves to spot a session that moved, so a few MiB do.
	sessionCap = 1 << 16
)

// placements remembers where bounded loads put each key, so that a key
// keeps landing on the backend it was first given (its WebSocket and its
// long-polling requests meet there) while that backend is in the ring.
//
// It is two generations of maps: lookups promote a key found in the old
// one, and the old one is dropped whole when the current one fills or ages
// (a cheap LRU with bounded memory and expiry). Safe for concurrent use.
type placements struct {
	limit   int        // keys per generation
	mu      sync.Mutex // guards the fields below
	cur     map[uint64]string
	old     map[uint64]string
	rotated time.Time
}

func newPlacements(limit int) *placements {
	return &placements{limit: limit, cur: make(map[uint64]string), old: make(map[uint64]string), rotated: time.Now()}
}

// get returns the backend key was placed on, if it is remembered.
func (p *placements) get(key uint64, now time.Time) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rotate(now)
	if b, ok := p.cur[key]; ok {
		return b, true
	}
	b, ok := p.old[key]
	if ok {
		p.cur[key] = b
	}
	return b, ok
}

// put remembers that key was placed on backend.
func (p *placements) put(key uint64, backend string, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rotate(now)
	p.cur[key] = backend
}

func (p *placements) rotate(now time.Time) {
	if len(p.cur) < p.limit && now.Sub(p.rotated) < placementTTL/2 {
		return
	}
	p.old, p.cur, p.rotated = p.cur, make(map[uint64]string), now
}

// peek is get without its side effect: a lookup promotes the key, which
// would keep its placement alive for another generation, and an operator
// asking where a key goes must not change where it goes.
func (p *placements) peek(key uint64, now time.Time) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b, ok := p.cur[key]; ok {
		return b, true
	}
	if len(p.cur) >= p.limit || now.Sub(p.rotated) >= placementTTL/2 {
		return "", false // the next rotate drops the old generation
	}
	b, ok := p.old[key]
	return b, ok
}
