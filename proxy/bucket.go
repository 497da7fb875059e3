package proxy

// bucket is a token bucket: rate tokens a second, up to burst at once.
// Time is in unix nanoseconds, so that a caller on an event loop passes
// the time it already has; the zero value holds nothing. It is small (24
// bytes) so that every connection can carry one, and not safe for
// concurrent use.
type bucket struct {
	tokens float64 // held at last
	last   int64   // when tokens was last brought up to date; 0: never
	full   bool    // last was when it filled: cheap to keep idle
}

// take removes n tokens if the bucket holds them at now, and reports
// whether it did. A bucket never used starts full.
func (b *bucket) take(n, rate, burst float64, now int64) bool {
	b.refill(rate, burst, now)
	if b.tokens < n {
		return false
	}
	b.tokens -= n
	b.full = false
	return true
}

// spend removes n tokens at now whether it holds them or not: a debt the
// coming tokens pay off first. It reports whether the bucket still holds
// any, that is, whether the spender is within its rate.
func (b *bucket) spend(n, rate, burst float64, now int64) bool {
	b.refill(rate, burst, now)
	b.tokens -= n
	b.full = false
	return b.tokens >= 0
}

// wait is how long from now until the bucket holds n tokens again.
func (b *bucket) wait(n, rate, burst float64, now int64) int64 {
	b.refill(rate, burst, now)
	if b.tokens >= n || rate <= 0 {
		return 0
	}
	return int64((n - b.tokens) / rate * 1e9)
}

func (b *bucket) refill(rate, burst float64, now int64) {
	if b.last == 0 {
		b.tokens, b.last, b.full = burst, now, true
		return
	}
	if b.full || now <= b.last {
		b.last = max(b.last, now)
		return
	}
	b.tokens = min(burst, b.tokens+rate*float64(now-b.last)/1e9)
	b.last = now
	b.full = b.tokens >= burst
}
