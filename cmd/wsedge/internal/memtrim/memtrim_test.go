package memtrim

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
)

const mib = 1 << 20

// fakeHeap is a heap the test drives: what it allocated, what is live and
// what it retains, and when it was released.
type fakeHeap struct {
	mu       sync.Mutex
	s        Sample
	releases []time.Time
	cost     time.Duration // how long a release takes
}

func (h *fakeHeap) read() Sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.s
}

// release collects: the garbage goes, what is live stays.
func (h *fakeHeap) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.releases = append(h.releases, time.Now())
	time.Sleep(h.cost)
	h.s.Retained = h.s.Live
}

// allocate makes live bytes that stay and garbage that waits for a
// collection.
func (h *fakeHeap) allocate(live, garbage uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.s.Allocated += live + garbage
	h.s.Live += live
	h.s.Retained += live + garbage
}

func (h *fakeHeap) released() []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Time(nil), h.releases...)
}

// run starts a default Trimmer on h inside the caller's bubble; the
// returned func stops it.
func run(h *fakeHeap) (stop func()) {
	t := New(zap.NewNop())
	t.Read, t.Release = h.read, h.release
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t.Run(ctx)
	}()
	return func() { cancel(); <-done }
}

// A reconnect storm: for five seconds clients connect, each leaving live
// state and three times as much garbage. Nothing is released while they
// connect; the first quiet second after it gives the garbage back, once.
func TestTrimsOnceTheBurstIsOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &fakeHeap{s: Sample{Live: 2 * mib, Retained: 4 * mib}}
		h.allocate(0, 0)
		stop := run(h)
		defer stop()
		start := time.Now()
		for range 5 {
			time.Sleep(500 * time.Millisecond)
			h.allocate(2*mib, 6*mib)
			time.Sleep(500 * time.Millisecond)
			if r := h.released(); len(r) > 0 {
				t.Fatalf("released %v into the burst, while clients still connect", r[0].Sub(start))
			}
		}
		time.Sleep(2500 * time.Millisecond)
		r := h.released()
		if len(r) != 1 {
			t.Fatalf("released %d times after the burst, want once", len(r))
		}
		if got := r[0].Sub(start); got > 7*time.Second {
			t.Errorf("released %v after the burst began, want within two ticks of its end (5s)", got)
		}
		if s := h.read(); s.Retained != s.Live {
			t.Errorf("retained %d after the trim, live %d", s.Retained, s.Live)
		}
		time.Sleep(time.Minute)
		if r := h.released(); len(r) != 1 {
			t.Errorf("released %d times in a quiet minute after the trim, want no more", len(r))
		}
	})
}

// Garbage within a quarter of the live heap (plus slack) is not worth a
// collection, however quiet the process is.
func TestLittleGarbageIsLeft(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &fakeHeap{s: Sample{Live: 400 * mib, Retained: 400 * mib}}
		stop := run(h)
		defer stop()
		h.allocate(0, 100*mib) // a quarter of what is live
		time.Sleep(2 * time.Minute)
		if r := h.released(); len(r) != 0 {
			t.Fatalf("released %d times for garbage of a quarter of the live heap", len(r))
		}
	})
}

// Bursts that follow one another closely are trimmed no more than 1% of
// the time: with a heap whose collection takes 300 ms, at most every 30 s,
// so a big proxy under steady churn does not collect every second.
func TestTrimsAreSpacedByTheirCost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &fakeHeap{s: Sample{Live: 2 * mib, Retained: 2 * mib}, cost: 300 * time.Millisecond}
		stop := run(h)
		defer stop()
		for range 20 { // a burst every 3 s for a minute
			time.Sleep(500 * time.Millisecond)
			h.allocate(0, 20*mib)
			time.Sleep(2500 * time.Millisecond)
		}
		r := h.released()
		if len(r) < 2 || len(r) > 3 {
			t.Fatalf("released %d times over a minute of bursts, want 2 or 3 (every 30s at 300ms each)", len(r))
		}
		for i := 1; i < len(r); i++ {
			if gap := r[i].Sub(r[i-1]); gap < 30*time.Second {
				t.Errorf("trims %d and %d %v apart, want at least 30s", i-1, i, gap)
			}
		}
	})
}

// The runtime's own numbers: garbage shows as retained, and release gives
// it back.
func TestReleaseReturnsGarbage(t *testing.T) {
	sink := make([][]byte, 0, 256)
	for range 256 {
		sink = append(sink, make([]byte, 256<<10)) // 64 MiB
	}
	sink = nil
	_ = sink
	before := readRuntime()
	release()
	after := readRuntime()
	t.Logf("retained %d MiB before, %d MiB after; live %d MiB", before.Retained/mib, after.Retained/mib, after.Live/mib)
	if before.Retained < 60*mib {
		t.Fatalf("retained %d MiB with 64 MiB of garbage; the sample misses the heap", before.Retained/mib)
	}
	if after.Retained > before.Retained-48*mib {
		t.Errorf("retained %d MiB after release, %d before: the garbage was not returned", after.Retained/mib, before.Retained/mib)
	}
}
