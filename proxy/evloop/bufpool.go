package evloop

import (
	"sync"
)

// BurstSize is the read buffer borrowed while a connection has data. It
// bounds the memory a busy reader holds and the size of what it writes on.
const BurstSize = 32 << 10

// BufPool lends read buffers of BurstSize bytes for the duration of a
// burst, so that an idle connection holds none. Safe for concurrent use.
type BufPool struct{ p sync.Pool }

// NewBufPool returns an empty pool.
func NewBufPool() *BufPool {
	return &BufPool{p: sync.Pool{New: func() any { b := make([]byte, BurstSize); return &b }}}
}

// Get lends a buffer.
func (p *BufPool) Get() *[]byte { return p.p.Get().(*[]byte) }

// Put takes a buffer back.
func (p *BufPool) Put(b *[]byte) { p.p.Put(b) }
