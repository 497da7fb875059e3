package upstream

// health is one backend's standing with the checks of this proxy: whether
// they let it into the ring, and the runs of results that will change that.
// It is a plain value with no clock and no I/O; its owner feeds it results
// in order.
//
// The rules, as HAProxy's rise and fall have them:
//   - out of the ring, it enters after rise active passes in a row;
//   - in the ring, it leaves after fall active failures in a row, or after
//     fall failures in a row reported by the proxy (failed dials, 5xx
//     answers to upgrades); only active checks bring it back.
//
// So a backend whose results alternate never changes sides faster than
// rise and fall allow, however it flaps.
type health struct {
	up     bool // in the ring as far as health goes
	passes int  // active passes in a row while out
	fails  int  // active failures in a row while in
	// passive counts failures reported by the proxy in a row while in.
	passive int
	// failed is set by the first failure after it last entered (or since
	// it appeared), so that a new backend reads "rising" until something
	// goes wrong and "unhealthy" from then on until it enters: its State
	// changes at most once between two ring changes, however it flaps.
	failed  bool
	lastErr string // the latest failure since it last entered the ring
}

// trusted returns the health of a backend that is in the ring before any
// check: a static backend listed when the proxy starts.
func trusted() health { return health{up: true} }

// pass records a passing active check. It reports whether the backend
// entered the ring.
func (h *health) pass(rise int) bool {
	h.fails = 0
	if h.up {
		return false
	}
	h.passes++
	if h.passes < rise {
		return false
	}
	*h = health{up: true}
	return true
}

// fail records a failed active check. It reports whether the backend left
// the ring.
func (h *health) fail(fall int, reason string) bool {
	h.passes = 0
	h.lastErr = reason
	if !h.up {
		h.failed = true
		return false
	}
	h.fails++
	if h.fails < fall {
		return false
	}
	h.down(reason)
	return true
}

// passiveFail records a failure the proxy saw on real traffic. It reports
// whether the backend left the ring.
func (h *health) passiveFail(fall int, reason string) bool {
	if !h.up {
		return false
	}
	h.lastErr = reason
	h.passive++
	if h.passive < fall {
		return false
	}
	h.down(reason)
	return true
}

// passiveOK records a success the proxy saw on real traffic, which ends a
// run of passive failures.
func (h *health) passiveOK() { h.passive = 0 }

func (h *health) down(reason string) {
	*h = health{failed: true, lastErr: reason}
}

// state says where the backend stands as far as health goes.
func (h *health) state() State {
	switch {
	case h.up:
		return StateHealthy
	case h.failed:
		return StateUnhealthy
	default:
		return StateRising
	}
}
