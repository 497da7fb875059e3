package proxy

import (
	"sync/atomic"
	"time"
)

// messageCounts are a connection's own counts of the messages it relayed
// each way, and its rate: the messages of the last whole second. The
// relay writes them per read, the admin endpoints read them while it
// runs.
type messageCounts struct {
	total  [2]atomic.Uint64 // [0] client to backend, [1] backend to client
	rate   [2]atomic.Uint32 // messages in the whole second before window
	window atomic.Int64     // when the current second began
	inWin  [2]uint32        // messages so far in the current second; the relay's alone
}

func dirIndex(up bool) int {
	if up {
		return 0
	}
	return 1
}

// add counts messages one way at now.
func (m *messageCounts) add(up bool, messages uint64, now int64) {
	if messages == 0 {
		return
	}
	i := dirIndex(up)
	m.total[i].Add(messages)
	if w := m.window.Load(); now-w >= int64(time.Second) {
		last := m.inWin
		if now-w >= 2*int64(time.Second) {
			last = [2]uint32{} // a whole quiet second since
		}
		m.rate[0].Store(last[0])
		m.rate[1].Store(last[1])
		m.window.Store(now)
		m.inWin = [2]uint32{}
	}
	m.inWin[i] += uint32(min(messages, 1<<31))
}

// perSecond is the rate one way as of now: nothing when no message came
// for two seconds.
func (m *messageCounts) perSecond(up bool, now int64) uint32 {
	if now-m.window.Load() >= 2*int64(time.Second) {
		return 0
	}
	return m.rate[dirIndex(up)].Load()
}
