//go:build linux

package looptls

import (
	"sync"

	"github.com/wsedge/wsedge/proxy/evloop"
)

const (
	// pendingSize is a new pending buffer's capacity: a burst the loop
	// relays (evloop.BurstSize), encrypted, with room for its records'
	// headers and tags, so that a burst the socket cuts short fits
	// without growing.
	pendingSize = evloop.BurstSize + 4<<10
	// pendingKeep is the largest buffer that goes back to the pool: one
	// that grew past it, behind a peer that fell far behind, goes to the
	// collector rather than sit in the pool.
	pendingKeep = 4 * pendingSize
)

// pendingBufs lends the buffers in which transports hold ciphertext the
// socket has not taken, for as long as they hold some: a client that
// falls behind borrows one while it is behind, rather than costing a new
// buffer each time the kernel takes a write in part. The zero value is
// ready to use; safe for concurrent use.
type pendingBufs struct{ p sync.Pool }

// get lends an empty buffer.
func (b *pendingBufs) get() *[]byte {
	if buf, ok := b.p.Get().(*[]byte); ok {
		return buf
	}
	buf := make([]byte, 0, pendingSize)
	return &buf
}

// put takes buf back; its lender must not touch it again.
func (b *pendingBufs) put(buf *[]byte) {
	if cap(*buf) > pendingKeep {
		return
	}
	*buf = (*buf)[:0]
	b.p.Put(buf)
}
