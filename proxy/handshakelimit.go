package proxy

import (
	"net/netip"
	"sync"
	"time"
)

// handshakeLimitCap bounds each generation of the per-address buckets: a
// flood of addresses costs at most two generations of memory, a few MiB.
const handshakeLimitCap = 1 << 16

// handshakeLimiter holds a token bucket per client address for the new
// WebSockets it opens (handshakes_per_second_per_ip), so that one buggy
// client reconnecting in a loop cannot take the proxy's accept capacity.
// Buckets live in two generations of maps, as placements do: one not
// touched for a whole generation is dropped, which a generation long
// enough to refill any bucket makes exact, and a full generation is
// rotated early. Safe for concurrent use.
type handshakeLimiter struct {
	mu      sync.Mutex // guards the fields below
	cur     map[netip.Addr]*bucket
	old     map[netip.Addr]*bucket
	rotated int64
}

func newHandshakeLimiter() *handshakeLimiter {
	return &handshakeLimiter{cur: map[netip.Addr]*bucket{}, old: map[netip.Addr]*bucket{}}
}

// allow takes a handshake from client's bucket at now under cfg's limit.
// When the bucket is empty it returns false and how long until it holds
// one again, for Retry-After.
func (h *handshakeLimiter) allow(cfg *Config, client netip.Addr, now int64) (bool, time.Duration) {
	if cfg.HandshakesPerSecondPerIP <= 0 {
		return true, 0
	}
	rate, burst := float64(cfg.HandshakesPerSecondPerIP), float64(cfg.HandshakeBurstPerIP)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rotate(int64(max(10*time.Second, time.Duration(burst/rate*float64(time.Second)))), now)
	b := h.cur[client]
	if b == nil {
		b = h.old[client]
		if b == nil {
			b = &bucket{}
		}
		h.cur[client] = b
	}
	if b.take(1, rate, burst, now) {
		return true, 0
	}
	return false, time.Duration(b.wait(1, rate, burst, now))
}

// rotate starts a new generation when the current one is full or older
// than every, dropping the one before.
func (h *handshakeLimiter) rotate(every, now int64) {
	if h.rotated == 0 {
		h.rotated = now
	}
	if len(h.cur) < handshakeLimitCap && now-h.rotated < every {
		return
	}
	h.old, h.cur, h.rotated = h.cur, make(map[netip.Addr]*bucket), now
}
