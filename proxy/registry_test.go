package proxy

import (
	"testing"
	"time"

	"github.com/wsedge/wsedge/upstream"
)

// expect announces key's WebSocket on backend at now, as a plain HTTP
// request placed by bounded loads does.
func expect(r *registry, key uint64, backend string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expectLocked(key, backend, now)
}

func fulfil(r *registry, key uint64, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fulfilLocked(key, now)
}

// checkExpected fails unless r counts exactly the expectations of keys as
// load: in the table, in pending and in total.
func checkExpected(t *testing.T, r *registry, keys ...uint64) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	pending := 0
	for _, n := range r.pending {
		pending += n
	}
	if len(r.expected) != len(keys) || pending != len(keys) || r.total != len(keys) {
		t.Fatalf("%d expected, %d pending, total %d; want %d each", len(r.expected), pending, r.total, len(keys))
	}
	for _, k := range keys {
		if _, ok := r.expected[k]; !ok {
			t.Fatalf("key %d not expected", k)
		}
	}
}

// A flood of plain HTTP requests with distinct keys, all within expectTTL,
// holds at most expectCap expectations, the newest, and counts as much
// load: no more.
func TestRegistryExpectationsCapped(t *testing.T) {
	r := newRegistry()
	now := time.Unix(1000, 0)
	const flood = 3 * expectCap
	for k := range uint64(flood) {
		expect(r, k, "b1", now.Add(time.Duration(k)*time.Microsecond))
	}
	r.mu.Lock()
	n, queued, pending, total := len(r.expected), len(r.expectQueue), r.pending["b1"], r.total
	_, oldest := r.expected[flood-expectCap-1]
	_, newest := r.expected[flood-expectCap]
	r.mu.Unlock()
	if n != expectCap || queued != expectCap || pending != expectCap || total != expectCap {
		t.Fatalf("after %d distinct keys: %d expected, %d queued, %d pending, total %d; want %d each",
			flood, n, queued, pending, total, expectCap)
	}
	if oldest || !newest {
		t.Fatalf("kept the older keys (dropped %v, kept %v): the oldest must go first", !oldest, newest)
	}
	// They all still end on time.
	expect(r, flood, "b1", now.Add(time.Hour))
	checkExpected(t, r, flood)
}

// A key fulfilled and announced again while older ones are pending
// neither blocks the expiry of those behind it nor grows the queue without
// bound.
func TestRegistryExpectationsReannounced(t *testing.T) {
	r := newRegistry()
	t0 := time.Unix(1000, 0)
	expect(r, 1, "b1", t0)
	expect(r, 2, "b2", t0.Add(5*time.Second)) // ends at t0+35s
	fulfil(r, 1, t0.Add(6*time.Second))
	expect(r, 1, "b1", t0.Add(10*time.Second)) // ends at t0+40s
	checkExpected(t, r, 1, 2)
	fulfil(r, 99, t0.Add(36*time.Second)) // any call sweeps
	checkExpected(t, r, 1)

	// One long-lived expectation in front; behind it, keys come and go
	// over and over.
	r = newRegistry()
	expect(r, 0, "b1", t0)
	for i := range 5 * expectCap {
		now := t0.Add(time.Duration(i) * time.Microsecond)
		expect(r, 1, "b1", now)
		fulfil(r, 1, now)
	}
	r.mu.Lock()
	queued := len(r.expectQueue)
	r.mu.Unlock()
	if queued > 2*expectCap+1 {
		t.Fatalf("%d entries queued for one expectation", queued)
	}
	checkExpected(t, r, 0)
}

// Made-up Engine.IO session IDs, which any client can send, cost at most
// two generations of the sessions table.
func TestSessionsTableBounded(t *testing.T) {
	s := New(Config{}, upstream.NewSet(nil))
	defer s.Shutdown(t.Context())
	now := time.Now()
	for i := range 5 * sessionCap {
		s.sessions.put(uint64(i), "10.0.0.1:9001", now)
	}
	if n := len(s.sessions.cur) + len(s.sessions.old); n > 2*sessionCap {
		t.Errorf("%d sessions remembered, want at most %d", n, 2*sessionCap)
	}
	if _, ok := s.sessions.get(uint64(5*sessionCap-1), now); !ok {
		t.Error("the newest session was forgotten")
	}
}
