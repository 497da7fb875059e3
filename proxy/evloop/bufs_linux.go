//go:build linux

package evloop

import "time"

// bufsKeptIdle is how long a quiet loop keeps its read buffers at hand.
const bufsKeptIdle = time.Second

// keptBufs is how many read buffers a loop keeps at hand: enough for the
// bursts of one turn, few enough that an idle proxy holds little.
const keptBufs = 16

// quiet notes a wait that ended with no events and, once the loop has been
// quiet for bufsKeptIdle, hands its kept buffers back.
func (l *Loop) quiet(now int64) {
	if l.quietSince == 0 {
		l.quietSince = now
		return
	}
	if now-l.quietSince < int64(bufsKeptIdle) {
		return
	}
	for i, b := range l.bufs {
		l.pool.Put(b)
		l.bufs[i] = nil
	}
	l.bufs = l.bufs[:0]
}

// GetBuf lends a read buffer of BurstSize bytes, for as long as bytes are
// in it.
func (l *Loop) GetBuf() *[]byte {
	if n := len(l.bufs); n > 0 {
		b := l.bufs[n-1]
		l.bufs[n-1] = nil
		l.bufs = l.bufs[:n-1]
		return b
	}
	return l.pool.Get()
}

// PutBuf takes a read buffer back.
func (l *Loop) PutBuf(b *[]byte) {
	if len(l.bufs) < keptBufs {
		l.bufs = append(l.bufs, b)
		return
	}
	l.pool.Put(b)
}
