package bench

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

const (
	// The histograms count microseconds from 1µs to 60s with three
	// significant digits: a p99 of 2.7ms is resolved to 1µs, one of 2.7s to
	// 1ms, and anything slower than a minute is a failure anyway.
	histMin, histMax = 1, int64(60 * time.Second / time.Microsecond)
	histDigits       = 3
	// latencyShards spreads recording over this many locked histograms,
	// each about 100 KiB, instead of one per connection (100 MiB for a
	// thousand) or one lock for all.
	latencyShards = 16
)

// Latency is a latency distribution as reported.
type Latency struct {
	Count int64         `json:"count"`
	P50   time.Duration `json:"p50_ns"`
	P90   time.Duration `json:"p90_ns"`
	P99   time.Duration `json:"p99_ns"`
	P999  time.Duration `json:"p999_ns"`
	Max   time.Duration `json:"max_ns"`
}

// recorder collects latencies from many goroutines. The zero value is not
// usable; see newRecorder. It is safe for concurrent use.
type recorder struct {
	shards [latencyShards]struct {
		mu sync.Mutex // guards h
		h  *hdrhistogram.Histogram
	}
}

func newRecorder() *recorder {
	r := &recorder{}
	for i := range r.shards {
		r.shards[i].h = hdrhistogram.New(histMin, histMax, histDigits)
	}
	return r
}

// record adds one latency; worker picks the shard, so that goroutines with
// different numbers rarely contend. Values outside the range are clamped
// rather than dropped, so that the count stays right.
func (r *recorder) record(worker int, d time.Duration) {
	us := min(max(int64(d/time.Microsecond), histMin), histMax)
	s := &r.shards[worker%latencyShards]
	s.mu.Lock()
	_ = s.h.RecordValue(us) // cannot fail: us is within the range
	s.mu.Unlock()
}

// latency merges the shards and reads the percentiles.
func (r *recorder) latency() Latency {
	all := hdrhistogram.New(histMin, histMax, histDigits)
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		all.Merge(s.h)
		s.mu.Unlock()
	}
	return latencyOf(all)
}

func latencyOf(h *hdrhistogram.Histogram) Latency {
	us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
	return Latency{
		Count: h.TotalCount(),
		P50:   us(h.ValueAtQuantile(50)),
		P90:   us(h.ValueAtQuantile(90)),
		P99:   us(h.ValueAtQuantile(99)),
		P999:  us(h.ValueAtQuantile(99.9)),
		Max:   us(h.Max()),
	}
}
