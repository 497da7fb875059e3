package proxy

import (
	"errors"
	"net/netip"
	"sync"
	"time"
)

var (
	errTooManyConnections = errors.New("too many connections")
	errTooManyFromIP      = errors.New("too many connections from this address")
)

// registry knows every live connection, by backend, because the HTTP server
// stops tracking a connection once it is hijacked: shutdown, rebalancing,
// bounded loads and the admin endpoints all start here. It is safe for
// concurrent use.
type registry struct {
	mu        sync.Mutex            // guards the maps, total and each relayConn's regIdx
	byBackend map[string][]liveConn // each connection at its relayConn's regIdx
	pending   map[string]int        // handshakes under way, already counted as load
	perIP     map[netip.Addr]int    // live connections plus pending handshakes, by client IP
	// expected are WebSockets announced by a plain HTTP request that placed
	// their key (a long-polling transport before its upgrade): counted as
	// load, so that bounded loads leave room for them, until they come or
	// their time is up. expectQueue holds them in arrival order, and
	// entries of keys since fulfilled or announced anew, which no longer
	// match their key's expectation.
	expected    map[uint64]expectation
	expectQueue []queuedExpectation
	expectSeq   uint64        // numbers the expectations
	total       int           // live connections plus pending handshakes
	live        int           // live connections
	aged        int           // live connections with an age limit
	empty       chan struct{} // closed while live is 0
}

func newRegistry() *registry {
	empty := make(chan struct{})
	close(empty)
	return &registry{byBackend: make(map[string][]liveConn), pending: make(map[string]int),
		perIP: make(map[netip.Addr]int), expected: make(map[uint64]expectation), empty: empty}
}

// reserveLocked counts a handshake under way towards backend's load and
// the connection limits (0: none), so that a burst of new clients sees
// each other. Every reservation is followed by add or unreserve. r.mu must
// be held.
func (r *registry) reserveLocked(backend string, client netip.Addr, maxTotal, maxPerIP int) error {
	if maxTotal > 0 && r.total >= maxTotal {
		return errTooManyConnections
	}
	if maxPerIP > 0 && r.perIP[client] >= maxPerIP {
		return errTooManyFromIP
	}
	r.pending[backend]++
	r.perIP[client]++
	r.total++
	return nil
}

// expectTTL is how long a WebSocket announced by a long-polling request
// is counted before it comes.
const expectTTL = 30 * time.Second

// expectCap bounds the WebSockets expected at once. Every plain HTTP
// request whose key bounded loads place anew announces one, so a flood of
// requests with distinct keys (a crawler behind many addresses, clients
// cycling header values) would otherwise hold an entry each for expectTTL,
// and count each as load. Past the cap the oldest announcements go first:
// their WebSockets, should they come, are placed as any new client is,
// which is what happens after expectTTL anyway. 65,536 is far more
// long-polling clients upgrading within expectTTL than one proxy sees,
// and holds the table to a few MiB.
const expectCap = 1 << 16

type expectation struct {
	backend string
	until   time.Time
	seq     uint64 // the queue entry that stands for it
}

type queuedExpectation struct{ key, seq uint64 }

// expectLocked counts a WebSocket that key's plain HTTP request announced
// on backend. r.mu must be held.
func (r *registry) expectLocked(key uint64, backend string, now time.Time) {
	r.sweepLocked(now)
	if _, ok := r.expected[key]; ok {
		return
	}
	for len(r.expected) >= expectCap {
		r.dropOldestLocked()
	}
	r.expectSeq++
	r.expected[key] = expectation{backend, now.Add(expectTTL), r.expectSeq}
	r.expectQueue = append(r.expectQueue, queuedExpectation{key, r.expectSeq})
	r.pending[backend]++
	r.total++
	if len(r.expectQueue) > 2*expectCap {
		r.compactLocked()
	}
}

// fulfilLocked takes back key's expectation, now that its WebSocket is
// here and reserves for itself. r.mu must be held.
func (r *registry) fulfilLocked(key uint64, now time.Time) {
	r.sweepLocked(now)
	if e, ok := r.expected[key]; ok {
		r.forgetLocked(key, e)
	}
}

// sweepLocked drops expectations whose time is up. r.mu must be held.
func (r *registry) sweepLocked(now time.Time) {
	for len(r.expectQueue) > 0 {
		q := r.expectQueue[0]
		if e, ok := r.expected[q.key]; ok && e.seq == q.seq {
			if now.Before(e.until) {
				return
			}
			r.forgetLocked(q.key, e)
		}
		r.expectQueue = r.expectQueue[1:]
	}
}

// dropOldestLocked forgets the oldest expectation. r.mu must be held.
func (r *registry) dropOldestLocked() {
	for len(r.expectQueue) > 0 {
		q := r.expectQueue[0]
		r.expectQueue = r.expectQueue[1:]
		if e, ok := r.expected[q.key]; ok && e.seq == q.seq {
			r.forgetLocked(q.key, e)
			return
		}
	}
}

// compactLocked drops the queue's entries that no longer stand for an
// expectation: keys fulfilled, or announced again, while older ones wait
// in front of them. r.mu must be held.
func (r *registry) compactLocked() {
	live := r.expectQueue[:0]
	for _, q := range r.expectQueue {
		if e, ok := r.expected[q.key]; ok && e.seq == q.seq {
			live = append(live, q)
		}
	}
	clear(r.expectQueue[len(live):])
	r.expectQueue = live
}

func (r *registry) forgetLocked(key uint64, e expectation) {
	delete(r.expected, key)
	r.unpend(e.backend)
	r.total--
}

// unreserve forgets a handshake that failed.
func (r *registry) unreserve(backend string, client netip.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unpend(backend)
	r.release(client)
}

// release takes one connection of client off the counts. r.mu must be held.
func (r *registry) release(client netip.Addr) {
	if r.perIP[client]--; r.perIP[client] <= 0 {
		delete(r.perIP, client)
	}
	r.total--
}

func (r *registry) unpend(backend string) {
	if r.pending[backend]--; r.pending[backend] <= 0 {
		delete(r.pending, backend)
	}
}

// add registers a connection whose handshake was reserved.
func (r *registry) add(c liveConn) {
	rc := c.relay()
	r.mu.Lock()
	defer r.mu.Unlock()
	if rc.cfg.MaxConnectionAge > 0 {
		r.aged++
	}
	if r.live++; r.live == 1 {
		r.empty = make(chan struct{})
	}
	r.unpend(rc.backend)
	list := r.byBackend[rc.backend]
	rc.regIdx = int32(len(list))
	r.byBackend[rc.backend] = append(list, c)
}

func (r *registry) remove(c liveConn) {
	rc := c.relay()
	r.mu.Lock()
	list := r.byBackend[rc.backend]
	last := len(list) - 1
	moved := list[last]
	list[rc.regIdx] = moved
	moved.relay().regIdx = rc.regIdx
	list[last] = nil
	if last == 0 {
		delete(r.byBackend, rc.backend)
	} else {
		r.byBackend[rc.backend] = list[:last]
	}
	r.release(rc.client)
	if rc.cfg.MaxConnectionAge > 0 {
		r.aged--
	}
	if r.live--; r.live == 0 {
		close(r.empty)
	}
	r.mu.Unlock()
}

// loadLocked returns backend's live connections plus its handshakes under
// way, and the same over all backends. r.mu must be held.
func (r *registry) loadLocked(backend string) (n, total int) {
	return len(r.byBackend[backend]) + r.pending[backend], r.total
}

// sessions returns the live connections of backend, or of every backend
// when backend is empty.
func (r *registry) sessions(backend string) []liveConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	if backend != "" {
		return append([]liveConn(nil), r.byBackend[backend]...)
	}
	var out []liveConn
	for _, list := range r.byBackend {
		out = append(out, list...)
	}
	return out
}

// counts returns the number of live connections per backend.
func (r *registry) counts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.byBackend))
	for b, list := range r.byBackend {
		out[b] = len(list)
	}
	return out
}

// emptied returns a channel that is closed once no connection is live; a
// connection registering later does not reopen it.
func (r *registry) emptied() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.empty
}

// agedCount is how many live connections have an age limit.
func (r *registry) agedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.aged
}

// each calls f for every live connection, with the registry locked: f
// must be quick and must not call back into the registry.
func (r *registry) each(f func(liveConn)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, list := range r.byBackend {
		for _, c := range list {
			f(c)
		}
	}
}
