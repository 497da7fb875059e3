package evloop

import (
	"math/rand/v2"
	"testing"
	"time"
)

type fakeTimed struct {
	WheelEntry[fakeTimed]
	fired []int64
	w     *Wheel[fakeTimed, *fakeTimed]
	again int64 // reschedule this far ahead when fired, if non-zero
}

func (f *fakeTimed) Timer() *WheelEntry[fakeTimed] { return &f.WheelEntry }
func (f *fakeTimed) Expire(now int64) {
	f.fired = append(f.fired, now)
	if f.again != 0 {
		f.w.Schedule(f, now+f.again)
		f.again = 0
	}
}

func TestWheelFiresOnceAtOrAfterDeadline(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	w := NewWheel[fakeTimed](start)
	rng := rand.New(rand.NewPCG(3, 4))
	var items []*fakeTimed
	for range 500 {
		f := &fakeTimed{w: w}
		// Deadlines up to three turns of the wheel ahead.
		w.Schedule(f, start+rng.Int64N(3*wheelSlots*int64(WheelTick)))
		items = append(items, f)
	}
	cancelled := items[:50]
	for _, f := range cancelled {
		w.Cancel(f)
	}
	for now := start; now < start+4*wheelSlots*int64(WheelTick); now += int64(7 * time.Millisecond) {
		w.Advance(now)
	}
	for i, f := range items {
		if i < 50 {
			if len(f.fired) != 0 {
				t.Fatalf("cancelled item fired")
			}
			continue
		}
		if len(f.fired) != 1 {
			t.Fatalf("item fired %d times", len(f.fired))
		}
	}
	if w.Pending() {
		t.Fatalf("%d entries left after all fired", w.count)
	}
}

func TestWheelFiresLateWithinATick(t *testing.T) {
	start := int64(1_000_000_000_000)
	w := NewWheel[fakeTimed](start)
	f := &fakeTimed{w: w}
	at := start + int64(130*time.Millisecond)
	w.Schedule(f, at)
	for now := start; len(f.fired) == 0 && now < start+int64(time.Second); now += int64(time.Millisecond) {
		w.Advance(now)
	}
	if len(f.fired) != 1 || f.fired[0] < at || f.fired[0] > at+int64(WheelTick) {
		t.Fatalf("fired at %v, deadline %v", f.fired, at)
	}
}

func TestWheelRescheduleFromExpire(t *testing.T) {
	start := int64(5_000_000_000_000)
	w := NewWheel[fakeTimed](start)
	f := &fakeTimed{w: w, again: 1} // in the past by the time it is placed
	w.Schedule(f, start+int64(WheelTick))
	for now := start; now < start+int64(300*time.Millisecond); now += int64(10 * time.Millisecond) {
		w.Advance(now)
	}
	if len(f.fired) != 2 {
		t.Fatalf("fired %d times, want the rescheduled deadline to fire on the next tick", len(f.fired))
	}
}
