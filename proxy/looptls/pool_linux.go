//go:build linux

package looptls

import (
	"crypto/tls"
	"net"
	"sync"

	"golang.org/x/sys/unix"
)

// handshakeQueue bounds the TLS handshakes waiting for a worker. Beyond
// it a new client is turned away at once: a flood of ClientHellos costs
// the proxy a queue slot each, never the loops' time.
const handshakeQueue = 1024

// Pool runs TLS handshakes off the event loops, on a few workers:
// a handshake is a millisecond of CPU in one piece (the key exchange and
// the certificate's signature), which a loop must not spend while other
// connections wait for their bytes. The loops hand a connection over once
// its ClientHello is there, so a client that connects and says nothing
// costs a worker nothing. Safe for concurrent use.
type Pool struct {
	workers int
	once    sync.Once
	jobs    chan func()
	stop    int // eventfd: written once at close, it ends every handshake's waits
	wg      sync.WaitGroup
	mu      sync.Mutex // guards closed
	closed  bool
}

// NewPool returns a pool of workers, at least one; they start with the
// first handshake.
func NewPool(workers int) *Pool {
	return &Pool{workers: max(workers, 1), stop: -1}
}

// Server runs the server side of a TLS handshake with cfg on socket fd,
// whose peer is peer, on a worker: prefix holds what the loop read of the
// client's first bytes (its ClientHello, at least in part), and the
// handshake waits for the socket until deadline (unix nanoseconds) or
// until the pool closes. done runs on the worker with the Side the loop
// then drives, or the handshake's error. The socket is the worker's until
// done runs. Server reports false when the queue is full or the pool
// closed, and nothing will run.
func (p *Pool) Server(fd int, peer net.Addr, prefix []byte, cfg *tls.Config, deadline int64, done func(*Side, error)) bool {
	tr := &transport{fd: fd, peer: peer, prefix: prefix, waiting: true, deadline: deadline, stop: p.stopFD()}
	return p.submit(func() { p.handshake(tls.Server(tr, cfg), tr, done) })
}

// Client runs the client side of a TLS handshake with cfg, as Server does
// the server side.
func (p *Pool) Client(fd int, peer net.Addr, cfg *tls.Config, deadline int64, done func(*Side, error)) bool {
	tr := &transport{fd: fd, peer: peer, waiting: true, deadline: deadline, stop: p.stopFD()}
	return p.submit(func() { p.handshake(tls.Client(tr, cfg), tr, done) })
}

// handshake runs on a worker: the handshake, waiting for the socket as
// long as the deadline allows, then done.
func (p *Pool) handshake(c *tls.Conn, tr *transport, done func(*Side, error)) {
	err := c.Handshake()
	tr.waiting = false
	if err != nil {
		done(nil, err)
		return
	}
	done(&Side{conn: c, tr: tr}, nil)
}

// submit runs job on a worker; false when the queue is full or the pool
// closed, and job will not run.
func (p *Pool) submit(job func()) bool {
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

func (p *Pool) start() {
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
func (p *Pool) stopFD() int {
	p.once.Do(p.start)
	return p.stop
}

// Close ends the handshakes under way and waits for the workers; queued
// ones still run, and fail at once.
func (p *Pool) Close() {
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
