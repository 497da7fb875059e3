//go:build linux

package evloop

import (
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// countingConn counts the events a loop dispatches to it.
type countingConn struct{ events atomic.Int32 }

func (c *countingConn) OnEvent(int, uint32, int64) { c.events.Add(1) }
func (c *countingConn) Halt(int64)                 {}

// runLoop starts an event loop of its own, stopped at cleanup.
func runLoop(t *testing.T) *Loop {
	t.Helper()
	l, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); l.Run() }()
	t.Cleanup(func() {
		l.Post(l.Stop)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("loop did not stop")
		}
	})
	return l
}

// onLoop runs f on l's goroutine and returns what it returns.
func onLoop[T any](t *testing.T, l *Loop, f func() T) T {
	t.Helper()
	got := make(chan T, 1)
	if !l.Post(func() { got <- f() }) {
		t.Fatal("loop stopped")
	}
	select {
	case v := <-got:
		return v
	case <-time.After(5 * time.Second):
		t.Fatal("loop did not run the task")
	}
	panic("unreachable")
}

// dupFrom duplicates fd onto the lowest free descriptor number from min
// on, closed at cleanup.
func dupFrom(t *testing.T, fd, min int) int {
	t.Helper()
	d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, min)
	if err != nil {
		t.Fatalf("dup onto %d or above: %v", min, err)
	}
	t.Cleanup(func() { unix.Close(d) })
	return d
}

// After a burst of 10,000 connections the loop's descriptor table shrinks
// back, by itself, to what the connections left need; those keep getting
// their events. One connection left on a high descriptor keeps the table
// whole.
func TestLoopDescriptorTableShrinks(t *testing.T) {
	const burst = 10_000
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < burst+2_000 {
		t.Skipf("a burst of %d descriptors needs a higher limit than %d", burst, lim.Cur)
	}
	l := runLoop(t)
	ev, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(ev) })

	// Each descriptor is a duplicate of one eventfd: a socket's worth of
	// table slot, readable when the test writes to the eventfd.
	stay := &countingConn{}
	stayFD := dupFrom(t, ev, 0)
	if err := onLoop(t, l, func() error { return l.Register(stayFD, stay, unix.EPOLLIN|unix.EPOLLET) }); err != nil {
		t.Fatal(err)
	}
	burstFDs := make([]int, burst)
	for i := range burstFDs {
		burstFDs[i] = dupFrom(t, ev, 0)
	}
	keepFD := dupFrom(t, ev, burstFDs[burst-1]+1) // above the whole burst
	err = onLoop(t, l, func() error {
		for _, fd := range append(burstFDs, keepFD) {
			if err := l.Register(fd, &countingConn{}, unix.EPOLLIN|unix.EPOLLET); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	full := onLoop(t, l, func() int { return len(l.handlers) })
	if full <= burst {
		t.Fatalf("table of %d slots for %d descriptors", full, burst)
	}

	// The burst ends; a connection on the highest descriptor stays, and
	// the loop's look at its table, at the end of that turn, keeps it all.
	onLoop(t, l, func() int {
		for _, fd := range burstFDs {
			l.Unregister(fd)
		}
		return 0
	})
	if n := onLoop(t, l, func() int { return len(l.handlers) }); n != full {
		t.Fatalf("table cut from %d to %d slots under a live descriptor %d", full, n, keepFD)
	}

	// It goes too, too soon after that look for another: the loop, idle
	// from then on, wakes to look again by itself.
	onLoop(t, l, func() int { l.Unregister(keepFD); return 0 })
	time.Sleep(2*trimEvery + time.Second)
	n := onLoop(t, l, func() int { return len(l.handlers) })
	if n > 2*minTable || n <= stayFD {
		t.Fatalf("table of %d slots (%d at the burst's height) with one descriptor, %d, registered", n, full, stayFD)
	}
	t.Logf("table: %d slots at the burst's height, %d after it", full, n)
	if got := onLoop(t, l, func() int { return l.live }); got != 1 {
		t.Fatalf("loop counts %d connections, want 1", got)
	}

	// What is left is still served.
	if _, err := unix.Write(ev, []byte{1, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); stay.events.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the connection that stayed got no event after the table shrank")
		}
	}
}

// The table is halved only while nothing is registered above its first
// quarter, and never below minTable.
func TestTrimConns(t *testing.T) {
	tests := []struct {
		name      string
		give, top int // table length; one past the highest descriptor registered
		want      int
	}{
		{"empty", 10_000, 0, 1250},
		{"low descriptor", 10_000, 20, 1250},
		{"just under a quarter", 16_384, 4096, 8192},
		{"above a quarter", 16_384, 4097, 16_384},
		{"a quarter of a half", 16_384, 2048, 4096},
		{"small", 2047, 0, 2047},
		{"down to the floor", 4096, 1, 1024},
		{"not below the floor", 1500, 0, 1500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &Loop{handlers: make([]Handler, tt.give), trimDue: true}
			c := &countingConn{}
			if tt.top > 0 {
				l.handlers[tt.top-1], l.handlers[0] = c, c
			}
			l.trimHandlers(1)
			if len(l.handlers) != tt.want {
				t.Fatalf("%d slots with descriptor %d registered: trimmed to %d, want %d", tt.give, tt.top-1, len(l.handlers), tt.want)
			}
			if tt.top > 0 && (l.handlers[tt.top-1] != Handler(c) || l.handlers[0] != Handler(c)) {
				t.Fatal("trimming lost a registered descriptor")
			}
			if l.trimDue || l.trimmed != 1 {
				t.Fatalf("trimDue %v, trimmed %d after a look", l.trimDue, l.trimmed)
			}
		})
	}
}
