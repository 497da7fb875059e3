package proxy

import (
	"sync"
	"time"
)

// keptEvents is how many rebalances /debug/stats remembers.
const keptEvents = 20

// RebalanceEvent is one change the proxy made to where clients are: a
// backend's clients moved away (it left, died or was drained), clients
// moved to a backend that joined, or connections closed for their age.
type RebalanceEvent struct {
	Time        time.Time `json:"time"`
	Kind        string    `json:"kind"` // backend_left, backend_died, backend_joined, drain, max_age
	Backend     string    `json:"backend,omitempty"`
	Connections int       `json:"connections"`
	Rate        int       `json:"rate,omitempty"` // closes a second; 0 when all at once
}

// eventLog keeps the last keptEvents rebalances, for the dashboard. Safe
// for concurrent use.
type eventLog struct {
	mu     sync.Mutex // guards events
	events []RebalanceEvent
}

func (l *eventLog) add(e RebalanceEvent) {
	if e.Connections == 0 && e.Kind != rebalanceLeft && e.Kind != rebalanceDied {
		return // nothing moved
	}
	e.Time = time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.events) == keptEvents {
		copy(l.events, l.events[1:])
		l.events = l.events[:keptEvents-1]
	}
	l.events = append(l.events, e)
}

// last returns the remembered events, oldest first.
func (l *eventLog) last() []RebalanceEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]RebalanceEvent{}, l.events...)
}
