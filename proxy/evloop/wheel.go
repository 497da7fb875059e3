package proxy

import "time"

const (
	// wheelTick is the resolution of connection timers (heartbeats, write
	// stalls, closing): far finer than any timeout they serve.
	wheelTick = 50 * time.Millisecond
	// wheelSlots × wheelTick is the horizon; a later deadline waits in its
	// slot for as many turns as it needs.
	wheelSlots = 1024
)

// timed is what a wheel holds: a pointer to a T with one deadline at a
// time.
type timed[T any] interface {
	*T
	timer() *wheelEntry[T]
	// expire runs when the deadline passed; it may schedule again.
	expire(now int64)
}

// wheelEntry is the intrusive part of a timed value: linking it costs no
// allocation, so idle connections carry timers for a few words each.
type wheelEntry[T any] struct {
	next, prev *T
	at         int64 // deadline, unix nanoseconds; 0 when not scheduled
	slot       int32
}

// wheel is a hashed timing wheel (Varghese and Lauck): O(1) to schedule and
// cancel, one slot's list walked per tick. It belongs to one event loop and
// is not safe for concurrent use.
type wheel[T any, P timed[T]] struct {
	slots [wheelSlots]*T
	last  int64 // the last tick processed, in ticks since the epoch
	count int   // entries scheduled
}

func newWheel[T any, P timed[T]](now int64) *wheel[T, P] {
	return &wheel[T, P]{last: now / int64(wheelTick)}
}

// schedule sets t's deadline to at, replacing any earlier one.
func (w *wheel[T, P]) schedule(t P, at int64) {
	w.cancel(t)
	e := t.timer()
	e.at = at
	// The first tick at or after the deadline: when advance walks it, the
	// deadline has passed.
	tick := (at + int64(wheelTick) - 1) / int64(wheelTick)
	if tick <= w.last {
		tick = w.last + 1
	}
	e.slot = int32(tick % wheelSlots)
	e.prev = nil
	e.next = w.slots[e.slot]
	if e.next != nil {
		P(e.next).timer().prev = t
	}
	w.slots[e.slot] = t
	w.count++
}

// cancel removes t's deadline, if it has one.
func (w *wheel[T, P]) cancel(t P) {
	e := t.timer()
	if e.at == 0 {
		return
	}
	if e.prev != nil {
		P(e.prev).timer().next = e.next
	} else {
		w.slots[e.slot] = e.next
	}
	if e.next != nil {
		P(e.next).timer().prev = e.prev
	}
	e.next, e.prev, e.at = nil, nil, 0
	w.count--
}

// advance expires every entry whose deadline is at or before now.
func (w *wheel[T, P]) advance(now int64) {
	end := now / int64(wheelTick)
	if end-w.last > wheelSlots {
		w.last = end - wheelSlots // every slot gets walked once
	}
	for w.last < end {
		// Bump first: whatever expire schedules lands in a later slot.
		w.last++
		slot := w.last % wheelSlots
		for p := w.slots[slot]; p != nil; {
			t := P(p)
			e := t.timer()
			next := e.next
			if e.at <= now {
				w.cancel(t)
				t.expire(now)
			}
			p = next
		}
	}
}

// pending reports whether any deadline is set, so an idle loop can sleep
// without ticking.
func (w *wheel[T, P]) pending() bool { return w.count > 0 }
