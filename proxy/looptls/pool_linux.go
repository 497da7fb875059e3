//go:build linux

package proxy

import (
	"sync"

	"golang.org/x/sys/unix"
)

// handshakeQueue bounds the TLS handshakes waiting for a worker. Beyond
// it a new client is turned away at once: a flood of ClientHellos costs
// the proxy a queue slot each, never the loops' time.
const handshakeQueue = 1024

// handshakePool runs TLS handshakes off the event loops, on a few workers:
// a handshake is a millisecond of CPU in one piece (the key exchange and
// the certificate's signature), which a loop must not spend while other
// connections wait for their bytes. The loops hand a connection over once
// its ClientHello is there, so a client that connects and says nothing
// costs a worker nothing. Safe for concurrent use.
type handshakePool struct {
	workers int
	once    sync.Once
	jobs    chan func()
	stop    int // eventfd: written once at close, it ends every handshake's waits
	wg      sync.WaitGroup
	mu      sync.Mutex // guards closed
	closed  bool
}

func newHandshakePool(workers int) *handshakePool {
	return &handshakePool{workers: max(workers, 1), stop: -1}
}

// submit runs job on a worker; false when the queue is full or the pool
// closed, and job will not run.
func (p *handshakePool) submit(job func()) bool {
	p.once.Do(p.start)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	select {
	case p.jobs <- job:
		return true
	default:
		return false
	}
}

func (p *handshakePool) start() {
	p.jobs = make(chan func(), handshakeQueue)
	if fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err == nil {
		p.stop = fd
	}
	for range p.workers {
		p.wg.Go(func() {
			for job := range p.jobs {
				job()
			}
		})
	}
}

// stopFD is the descriptor that becomes readable when the pool closes.
func (p *handshakePool) stopFD() int {
	p.once.Do(p.start)
	return p.stop
}

// close ends the handshakes under way and waits for the workers; queued
// ones still run, and fail at once.
func (p *handshakePool) close() {
	p.once.Do(func() {}) // no pool starts after this
	p.mu.Lock()
	if p.closed || p.jobs == nil {
		p.closed = true
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.jobs)
	p.mu.Unlock()
	if p.stop >= 0 {
		one := [8]byte{1}
		unix.Write(p.stop, one[:])
	}
	p.wg.Wait()
	if p.stop >= 0 {
		unix.Close(p.stop)
	}
}
