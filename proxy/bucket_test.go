package proxy

import (
	"net/netip"
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	const sec = int64(time.Second)
	var b bucket
	now := int64(1_000 * sec)
	for i := range 5 {
		if !b.take(1, 2, 5, now) {
			t.Fatalf("take %d of a burst of 5 refused", i)
		}
	}
	if b.take(1, 2, 5, now) {
		t.Fatal("a sixth token from an empty bucket")
	}
	if w := time.Duration(b.wait(1, 2, 5, now)); w != 500*time.Millisecond {
		t.Fatalf("wait = %v, want 500ms at 2 a second", w)
	}
	if !b.take(1, 2, 5, now+sec/2) || b.take(1, 2, 5, now+sec/2) {
		t.Fatal("half a second brings back one token at 2 a second, and only one")
	}
	// Idle for long, it fills up to its burst and no further.
	now += 100 * sec
	n := 0
	for b.take(1, 2, 5, now) {
		n++
	}
	if n != 5 {
		t.Fatalf("a bucket idle for 100s gave %d tokens, want its burst of 5", n)
	}
	// Spending beyond it is a debt the coming tokens pay off first.
	if b.spend(4, 2, 5, now) {
		t.Fatal("spending 4 from an empty bucket left it within its rate")
	}
	if b.take(1, 2, 5, now+sec) || !b.take(1, 2, 5, now+3*sec) {
		t.Fatal("a debt of 4 at 2 a second is paid off after 2 seconds")
	}
}

func TestHandshakeLimiter(t *testing.T) {
	cfg := Config{HandshakesPerSecondPerIP: 1, HandshakeBurstPerIP: 3}
	h := newHandshakeLimiter()
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	now := time.Now().UnixNano()
	for i := range 3 {
		if ok, _ := h.allow(&cfg, a, now); !ok {
			t.Fatalf("handshake %d of a's burst refused", i)
		}
	}
	ok, retry := h.allow(&cfg, a, now)
	if ok || retry != time.Second {
		t.Fatalf("a's fourth: allowed %v, retry in %v; want refused, 1s", ok, retry)
	}
	if ok, _ := h.allow(&cfg, b, now); !ok {
		t.Fatal("b is refused for a's handshakes")
	}
	if ok, _ := h.allow(&Config{}, a, now); !ok {
		t.Fatal("refused with no limit set")
	}
	// A flood of addresses costs at most two generations.
	for i := range 3 * handshakeLimitCap {
		h.allow(&cfg, netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), now)
	}
	if n := len(h.cur) + len(h.old); n > 2*handshakeLimitCap {
		t.Fatalf("%d buckets kept, want at most %d", n, 2*handshakeLimitCap)
	}
}
