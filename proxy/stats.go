package proxy

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Stats is what /debug/stats shows: the proxy's counters at one moment,
// for a dashboard that turns them into rates by comparing two. Cheap to
// make, read from the same counters the metrics are.
type Stats struct {
	Time        time.Time `json:"time"`
	Connections int       `json:"connections"` // live WebSockets
	// OpenedTotal counts handshakes that ended in a relayed WebSocket;
	// ClosedTotal the WebSockets that ended, by cause.
	OpenedTotal uint64            `json:"opened_total"`
	ClosedTotal map[string]uint64 `json:"closed_total"`
	// MessagesTotal and BytesTotal count what was relayed, by direction.
	MessagesTotal map[string]uint64 `json:"messages_total"`
	BytesTotal    map[string]uint64 `json:"bytes_total"`
	// HandshakeSeconds are quantiles of every handshake's duration so far,
	// from the histogram's buckets.
	HandshakeSeconds Quantiles        `json:"handshake_seconds"`
	Rebalances       []RebalanceEvent `json:"rebalances"`
}

// Quantiles of a duration, in seconds.
type Quantiles struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50"`
	P99   float64 `json:"p99"`
}

// Stats returns the proxy's counters now.
func (s *Server) Stats() Stats {
	st := Stats{Time: time.Now(), ClosedTotal: map[string]uint64{}, MessagesTotal: map[string]uint64{}, BytesTotal: map[string]uint64{}}
	for _, n := range s.reg.counts() {
		st.Connections += n
	}
	st.OpenedTotal = uint64(counterOf(s.metrics.handshakes[hsOK]))
	for _, m := range collected(s.metrics.closes) {
		for _, l := range m.GetLabel() {
			if l.GetName() == "cause" {
				st.ClosedTotal[l.GetValue()] += uint64(m.GetCounter().GetValue())
			}
		}
	}
	for dir, t := range s.relayTotals() {
		st.MessagesTotal[dir], st.BytesTotal[dir] = t.messages, t.bytes
	}
	var buckets []*dto.Bucket
	for _, m := range collected(s.metrics.timing.handshake) {
		h := m.GetHistogram()
		st.HandshakeSeconds.Count += h.GetSampleCount()
		buckets = addBuckets(buckets, h.GetBucket())
	}
	st.HandshakeSeconds.P50 = quantile(buckets, st.HandshakeSeconds.Count, 0.5)
	st.HandshakeSeconds.P99 = quantile(buckets, st.HandshakeSeconds.Count, 0.99)
	st.Rebalances = s.events.last()
	return st
}

// collected reads a collector's metrics as the registry would.
func collected(c prometheus.Collector) []*dto.Metric {
	ch := make(chan prometheus.Metric, 64)
	go func() { c.Collect(ch); close(ch) }()
	var out []*dto.Metric
	for m := range ch {
		var d dto.Metric
		if m.Write(&d) == nil {
			out = append(out, &d)
		}
	}
	return out
}

func counterOf(c prometheus.Counter) float64 {
	var d dto.Metric
	if c.Write(&d) != nil {
		return 0
	}
	return d.GetCounter().GetValue()
}

// addBuckets sums histograms' cumulative buckets, which share bounds.
func addBuckets(sum []*dto.Bucket, more []*dto.Bucket) []*dto.Bucket {
	if sum == nil {
		for _, b := range more {
			n, ub := b.GetCumulativeCount(), b.GetUpperBound()
			sum = append(sum, &dto.Bucket{CumulativeCount: &n, UpperBound: &ub})
		}
		return sum
	}
	for i, b := range more {
		n := sum[i].GetCumulativeCount() + b.GetCumulativeCount()
		sum[i].CumulativeCount = &n
	}
	return sum
}

// quantile estimates the q quantile of count observations from cumulative
// buckets, as Prometheus's histogram_quantile does: linearly within the
// bucket it falls in.
func quantile(buckets []*dto.Bucket, count uint64, q float64) float64 {
	if count == 0 {
		return 0
	}
	rank := q * float64(count)
	lower, below := 0.0, 0.0
	for _, b := range buckets {
		n := float64(b.GetCumulativeCount())
		if n >= rank {
			if n == below {
				return b.GetUpperBound()
			}
			return lower + (b.GetUpperBound()-lower)*(rank-below)/(n-below)
		}
		lower, below = b.GetUpperBound(), n
	}
	return lower // beyond the last bound
}
