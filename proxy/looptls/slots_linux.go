//go:build linux

package looptls

import (
	"container/list"
	"os"
	"sync"
	"time"
)

// computeSlots bounds the handshakes computing at once, and says who
// computes next: a handshake already under way goes before one that has
// not begun. Its next step is a fraction of the first one's work (a
// Finished message to check), and it ends a handshake, so that under a
// flood of ClientHellos a client that was let in gets through in about one
// wait for a slot, not one per flight, and handshakes in flight do not
// pile up. Safe for concurrent use.
type computeSlots struct {
	mu    sync.Mutex // guards free, begun and fresh
	free  int        // slots no one holds; zero while anyone waits
	begun list.List  // chan struct{} of handshakes under way that wait, oldest first
	fresh list.List  // chan struct{} of handshakes yet to begin that wait, oldest first
}

func newComputeSlots(n int) *computeSlots { return &computeSlots{free: n} }

// acquire takes a slot, for a handshake that has begun or not. It gives
// up when stop closes (errPoolStopped) or when deadline passes.
func (s *computeSlots) acquire(begun bool, stop <-chan struct{}, deadline time.Time) error {
	s.mu.Lock()
	if s.free > 0 {
		s.free--
		s.mu.Unlock()
		return nil
	}
	q := &s.fresh
	if begun {
		q = &s.begun
	}
	granted := make(chan struct{}, 1)
	e := q.PushBack(granted)
	s.mu.Unlock()

	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	var err error
	select {
	case <-granted:
		return nil
	case <-stop:
		err = errPoolStopped
	case <-timer.C:
		err = os.ErrDeadlineExceeded
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-granted:
		s.releaseLocked() // given a slot while giving up: the next waiter's
	default:
		q.Remove(e)
	}
	return err
}

// release gives a slot back: to the oldest waiter under way, else to the
// oldest yet to begin.
func (s *computeSlots) release() {
	s.mu.Lock()
	s.releaseLocked()
	s.mu.Unlock()
}

func (s *computeSlots) releaseLocked() {
	for _, q := range [...]*list.List{&s.begun, &s.fresh} {
		if e := q.Front(); e != nil {
			q.Remove(e)
			e.Value.(chan struct{}) <- struct{}{}
			return
		}
	}
	s.free++
}
