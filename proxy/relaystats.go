package proxy

import (
	"sync/atomic"

	"github.com/wsedge/wsedge/proxy/wsframe"
)

// relayStats counts what a driver relays: frames, whole messages, bytes
// and message sizes, each way. Each event loop has its own, so busy loops
// never share a cache line, and the relay adds to it per read, never per
// frame; goroutine sessions share the server's. Read at scrape time, when
// the metrics fold every loop's together.
type relayStats struct {
	up, down directionStats
	_        [64]byte // keep the next loop's counters off these cache lines
}

type directionStats struct {
	frames, messages, bytes atomic.Uint64
	sizes                   wsframe.Sizes
}

// dir returns the counters of one direction: client to backend when up.
func (r *relayStats) dir(up bool) *directionStats {
	if up {
		return &r.up
	}
	return &r.down
}

// add counts frames and messages framed, and bytes read, in a direction.
func (r *relayStats) add(up bool, frames, messages, bytes uint64) {
	d := r.dir(up)
	if frames > 0 {
		d.frames.Add(frames)
	}
	if messages > 0 {
		d.messages.Add(messages)
	}
	if bytes > 0 {
		d.bytes.Add(bytes)
	}
}

// relayTotal is a direction's counts summed over every driver.
type relayTotal struct {
	frames, messages, bytes, sum uint64
	counts                       [wsframe.SizeBuckets]uint64
}

// buckets turns the size counts into a Prometheus histogram's cumulative
// buckets, by upper bound.
func (t relayTotal) buckets() map[float64]uint64 {
	out := make(map[float64]uint64, wsframe.SizeBuckets-1)
	var cum uint64
	for i := range wsframe.SizeBuckets - 1 {
		cum += t.counts[i]
		out[float64(wsframe.SizeBound(i))] = cum
	}
	return out
}

// relayTotals sums every driver's counts, by direction label.
func (s *Server) relayTotals() map[string]relayTotal {
	out := map[string]relayTotal{}
	for _, st := range s.allStats() {
		for dir, d := range map[string]*directionStats{"client_to_backend": &st.up, "backend_to_client": &st.down} {
			t := out[dir]
			t.frames += d.frames.Load()
			t.messages += d.messages.Load()
			t.bytes += d.bytes.Load()
			counts, sum := d.sizes.Snapshot()
			for i, n := range counts {
				t.counts[i] += n
			}
			t.sum += sum
			out[dir] = t
		}
	}
	return out
}
