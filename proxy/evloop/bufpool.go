package proxy

import (
	"sync"
)

// burstSize is the read buffer borrowed while a connection has data. It
// bounds the memory a busy relay direction holds and the size of its writes.
const burstSize = 32 << 10

// bufPool lends read buffers for the duration of a burst, so that an idle
// connection holds none.
type bufPool struct{ p sync.Pool }

func newBufPool() *bufPool {
	return &bufPool{p: sync.Pool{New: func() any { b := make([]byte, burstSize); return &b }}}
}

func (p *bufPool) get() *[]byte  { return p.p.Get().(*[]byte) }
func (p *bufPool) put(b *[]byte) { p.p.Put(b) }
