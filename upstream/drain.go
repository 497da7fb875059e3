package upstream

// Drain takes addr out of the ring on an operator's word, whatever its
// health says, until Undrain. It reports false for an unknown backend.
func (s *Set) Drain(addr string) bool { return s.setDrained(addr, true) }

// Undrain puts a drained backend back: it is in the ring again as soon as
// its health allows.
func (s *Set) Undrain(addr string) bool { return s.setDrained(addr, false) }

func (s *Set) setDrained(addr string, drained bool) bool {
	s.mu.Lock()
	m := s.members[addr]
	if m == nil {
		s.mu.Unlock()
		return false
	}
	m.drained = drained
	old, cur := s.commitLocked()
	s.mu.Unlock()
	s.announce(old, cur)
	return true
}
