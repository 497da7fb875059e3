package wsframe

import (
	"math/bits"
	"sync/atomic"
)

// SizeBuckets is how many buckets Sizes has: messages of at most 64 B,
// 256 B, 1 KiB and so on by fours up to 16 MiB, and one for the larger.
const SizeBuckets = 11

// Sizes counts message sizes in SizeBuckets exponential buckets, for a
// histogram of them. One goroutine writes (the driver of the framers that
// report to it, such as an event loop); any may read, at scrape time.
type Sizes struct {
	count [SizeBuckets]atomic.Uint64
	sum   atomic.Uint64
}

// SizeBound is the largest size bucket i counts, in bytes; the last
// bucket has none.
func SizeBound(i int) uint64 { return 64 << (2 * i) }

// observe counts a message of n payload bytes.
func (s *Sizes) observe(n int64) {
	i := 0
	if n > 64 {
		i = min((bits.Len64(uint64(n-1))-6+1)/2, SizeBuckets-1)
	}
	s.count[i].Add(1)
	s.sum.Add(uint64(n))
}

// Snapshot returns the count of each bucket (not cumulative) and the sum
// of the sizes.
func (s *Sizes) Snapshot() (counts [SizeBuckets]uint64, sum uint64) {
	for i := range counts {
		counts[i] = s.count[i].Load()
	}
	return counts, s.sum.Load()
}
