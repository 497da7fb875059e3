package evloop

import "time"

const (
	// WheelTick is the resolution of a Wheel's timers (heartbeats, write
	// stalls, closing): far finer than any timeout they serve.
	WheelTick = 50 * time.Millisecond
	// wheelSlots × WheelTick is the horizon; a later deadline waits in its
	// slot for as many turns as it needs.
	wheelSlots = 1024
)

// Timed is what a Wheel holds: a pointer to a T with one deadline at a
// time, whose WheelEntry it returns from Timer.
type Timed[T any] interface {
	*T
	Timer() *WheelEntry[T]
	// Expire runs when the deadline passed; it may schedule again.
	Expire(now int64)
}

// WheelEntry is the intrusive part of a timed value: linking it costs no
// allocation, so idle connections carry timers for a few words each.
type WheelEntry[T any] struct {
	next, prev *T
	at         int64 // deadline, unix nanoseconds; 0 when not scheduled
	slot       int32
}

// At is the deadline, in unix nanoseconds; 0 when none is scheduled.
func (e *WheelEntry[T]) At() int64 { return e.at }

// Wheel is a hashed timing wheel (Varghese and Lauck): O(1) to schedule and
// cancel, one slot's list walked per tick. It belongs to one event loop and
// is not safe for concurrent use.
type Wheel[T any, P Timed[T]] struct {
	slots [wheelSlots]*T
	last  int64 // the last tick processed, in ticks since the epoch
	count int   // entries scheduled
}

// NewWheel returns a wheel whose time starts at now (unix nanoseconds).
func NewWheel[T any, P Timed[T]](now int64) *Wheel[T, P] {
	return &Wheel[T, P]{last: now / int64(WheelTick)}
}

// Schedule sets t's deadline to at, replacing any earlier one.
func (w *Wheel[T, P]) Schedule(t P, at int64) {
	w.Cancel(t)
	e := t.Timer()
	e.at = at
	// The first tick at or after the deadline: when Advance walks it, the
	// deadline has passed.
	tick := (at + int64(WheelTick) - 1) / int64(WheelTick)
	if tick <= w.last {
		tick = w.last + 1
	}
	e.slot = int32(tick % wheelSlots)
	e.prev = nil
	e.next = w.slots[e.slot]
	if e.next != nil {
		P(e.next).Timer().prev = t
	}
	w.slots[e.slot] = t
	w.count++
}

// Cancel removes t's deadline, if it has one.
func (w *Wheel[T, P]) Cancel(t P) {
	e := t.Timer()
	if e.at == 0 {
		return
	}
	if e.prev != nil {
		P(e.prev).Timer().next = e.next
	} else {
		w.slots[e.slot] = e.next
	}
	if e.next != nil {
		P(e.next).Timer().prev = e.prev
	}
	e.next, e.prev, e.at = nil, nil, 0
	w.count--
}

// Advance expires every entry whose deadline is at or before now.
func (w *Wheel[T, P]) Advance(now int64) {
	end := now / int64(WheelTick)
	if end-w.last > wheelSlots {
		w.last = end - wheelSlots // every slot gets walked once
	}
	for w.last < end {
		// Bump first: whatever Expire schedules lands in a later slot.
		w.last++
		slot := w.last % wheelSlots
		for p := w.slots[slot]; p != nil; {
			t := P(p)
			e := t.Timer()
			next := e.next
			if e.at <= now {
				w.Cancel(t)
				t.Expire(now)
			}
			p = next
		}
	}
}

// Pending reports whether any deadline is set, so an idle loop can sleep
// without ticking.
func (w *Wheel[T, P]) Pending() bool { return w.count > 0 }
