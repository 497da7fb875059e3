//go:build linux

package looptls

import (
	"errors"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

// waiters counts who waits for a slot.
func (s *computeSlots) waiters() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.begun.Len() + s.fresh.Len()
}

// A freed slot goes to a handshake under way before any that has not
// begun, and otherwise in order of arrival.
func TestComputeSlotsBegunGoFirst(t *testing.T) {
	s := newComputeSlots(1)
	far := time.Now().Add(time.Minute)
	if err := s.acquire(false, nil, far); err != nil {
		t.Fatal(err)
	}
	order := make(chan string, 3)
	var wg sync.WaitGroup
	for i, w := range []struct {
		name  string
		begun bool
	}{{"fresh 1", false}, {"begun", true}, {"fresh 2", false}} {
		wg.Go(func() {
			if err := s.acquire(w.begun, nil, far); err != nil {
				t.Error(err)
				return
			}
			order <- w.name
			s.release()
		})
		waitFor(t, w.name+" to wait", func() bool { return s.waiters() == i+1 })
	}
	s.release()
	wg.Wait()
	close(order)
	var got []string
	for name := range order {
		got = append(got, name)
	}
	if want := []string{"begun", "fresh 1", "fresh 2"}; !slices.Equal(got, want) {
		t.Fatalf("slots went to %q, want %q", got, want)
	}
}

// A wait gives up at its deadline or when the pool stops, and leaves
// nothing queued.
func TestComputeSlotsGiveUp(t *testing.T) {
	s := newComputeSlots(1)
	if err := s.acquire(false, nil, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := s.acquire(true, nil, start.Add(50*time.Millisecond)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("past the deadline: %v", err)
	}
	if took := time.Since(start); took < 40*time.Millisecond || took > 2*time.Second {
		t.Errorf("gave up after %v, want about 50ms", took)
	}
	stop := make(chan struct{})
	time.AfterFunc(20*time.Millisecond, func() { close(stop) })
	if err := s.acquire(false, stop, time.Now().Add(time.Minute)); !errors.Is(err, errPoolStopped) {
		t.Fatalf("stopped: %v", err)
	}
	if n := s.waiters(); n != 0 {
		t.Fatalf("%d waiters left", n)
	}
	s.release()
	if s.free != 1 {
		t.Fatalf("%d slots free, want 1", s.free)
	}
}

// Many waits that give up while slots come and go lose no slot and
// hand none out twice, even when one is granted as its wait gives up.
func TestComputeSlotsUnderChurn(t *testing.T) {
	const slots = 3
	s := newComputeSlots(slots)
	var mu sync.Mutex
	holding := 0
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for range 200 {
				deadline := time.Now().Add(time.Duration(rand.IntN(200)) * time.Microsecond)
				if s.acquire(rand.IntN(2) == 0, nil, deadline) != nil {
					continue
				}
				mu.Lock()
				holding++
				over := holding > slots
				mu.Unlock()
				if over {
					t.Error("more slots held than there are")
				}
				time.Sleep(time.Duration(rand.IntN(50)) * time.Microsecond)
				mu.Lock()
				holding--
				mu.Unlock()
				s.release()
			}
		})
	}
	wg.Wait()
	if n := s.waiters(); n != 0 || s.free != slots {
		t.Fatalf("%d waiters left, %d slots free; want none and %d", n, s.free, slots)
	}
}
