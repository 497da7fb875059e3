// Package memtrim gives the heap's garbage back to the operating system
// once a burst of allocation has gone quiet.
//
// A proxy's memory is mostly its idle connections, and they allocate
// nothing. What allocates is their handshakes: a reconnect storm leaves
// several KiB of garbage per client behind, and with Go's default GOGC the
// heap is let grow to twice what is live before it is collected. The
// runtime keeps that high-water mark mapped: after 5,000 clients connect, a
// proxy holding 1.1 KiB of live heap per connection keeps about twice that
// resident for as long as nobody else allocates. Once the storm is over a
// collection and a scavenge cost one GC cycle and hand the difference back,
// which is what an operator reading RSS (or paying for it) expects.
package memtrim

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"go.uber.org/zap"
)

// Sample is what the trimmer reads of the heap, in bytes.
type Sample struct {
	Allocated uint64 // allocated since the process started
	Live      uint64 // marked live by the last collection
	Retained  uint64 // held from the OS: objects, unused span space and free pages not yet released
}

// Trimmer decides when to give memory back. Its zero value is not usable;
// New returns one that reads the runtime and releases with a collection.
type Trimmer struct {
	// Tick is how often the heap is read.
	Tick time.Duration
	// Quiet is the most a tick may allocate for the process to count as
	// quiet: a trim waits for the burst that made the garbage to end.
	Quiet uint64
	// Slack is how much the retained heap may exceed what was live, on top
	// of a quarter of it, before a trim is worth a collection.
	Slack uint64
	// MaxShare bounds the time spent trimming: after a trim that took d,
	// the next waits at least d/MaxShare. A trim costs about one
	// collection, which grows with the live heap: a few milliseconds for
	// thousands of connections, a second or so for a million.
	MaxShare float64

	Read    func() Sample
	Release func()
	Log     *zap.Logger
}

// New returns a Trimmer on the running process: it reads the heap every
// second and trims once a second allocated less than 1 MiB and at least a
// quarter of the heap plus 1 MiB is garbage, spending at most 1% of the
// time trimming.
func New(log *zap.Logger) *Trimmer {
	return &Trimmer{
		Tick:     time.Second,
		Quiet:    1 << 20,
		Slack:    1 << 20,
		MaxShare: 0.01,
		Read:     readRuntime,
		Release:  release,
		Log:      log,
	}
}

// Run trims until ctx ends.
func (t *Trimmer) Run(ctx context.Context) {
	tick := time.NewTicker(t.Tick)
	defer tick.Stop()
	prev := t.Read()
	var next time.Time // no trim before this
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s := t.Read()
		quiet := s.Allocated-prev.Allocated < t.Quiet
		prev = s
		if !quiet || !t.worth(s) || time.Now().Before(next) {
			continue
		}
		start := time.Now()
		t.Release()
		took := time.Since(start)
		next = start.Add(time.Duration(float64(took) / t.MaxShare))
		after := t.Read()
		prev = after
		t.Log.Debug("heap garbage returned after a burst",
			zap.Uint64("retained_before", s.Retained), zap.Uint64("retained_after", after.Retained),
			zap.Uint64("live", after.Live), zap.Duration("took", took))
	}
}

// worth reports whether enough of the retained heap is garbage to pay for
// a collection.
func (t *Trimmer) worth(s Sample) bool {
	return s.Retained > s.Live+s.Live/4+t.Slack
}

// readRuntime samples the heap from runtime/metrics, which, unlike
// ReadMemStats, does not stop the world.
func readRuntime() Sample {
	m := []metrics.Sample{
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
	}
	metrics.Read(m)
	v := func(i int) uint64 {
		if m[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return m[i].Value.Uint64()
	}
	return Sample{Allocated: v(0), Live: v(1), Retained: v(2) + v(3) + v(4)}
}

// release collects twice, so that what sync.Pools hold (kept through one
// collection as a victim cache) goes too, and returns the freed pages.
func release() {
	runtime.GC()
	debug.FreeOSMemory()
}
