package upstream

import (
	"net/http"
	"strconv"
)

// ReportDialFailure tells the Set that the proxy could not connect to addr.
// Fall such failures in a row, with no successful upgrade between them,
// take the backend out of the ring at once; only active checks bring it
// back. A Set from NewSet ignores reports, having no checks to bring a
// backend back.
//
// The proxy does not report dials that failed for want of its own
// resources (see LocalFailure).
func (s *Set) ReportDialFailure(addr string) {
	s.passive(addr, false, "dial failed")
}

// ReportUpgradeStatus tells the Set how addr answered an upgrade request
// the proxy relayed: a 5xx counts as a failure, as ReportDialFailure does;
// any other status ends a run of failures.
func (s *Set) ReportUpgradeStatus(addr string, status int) {
	if status >= 500 {
		s.passive(addr, false, "upgrade answered "+strconv.Itoa(status)+" "+http.StatusText(status))
		return
	}
	s.passive(addr, true, "")
}

func (s *Set) passive(addr string, ok bool, reason string) {
	s.mu.Lock()
	m := s.members[addr]
	if !s.managed || m == nil {
		s.mu.Unlock()
		return
	}
	if ok {
		m.health.passiveOK()
		s.mu.Unlock()
		return
	}
	m.health.passiveFail(s.cfg.Health.Fall, reason)
	old, cur := s.commitLocked()
	s.mu.Unlock()
	s.announce(old, cur)
}
