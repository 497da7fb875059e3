//go:build linux

package looptls

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// handshakesInFlight bounds the TLS handshakes under way at once. A
// handshake waiting for its client costs a goroutine and a descriptor,
// not a thread; beyond this many a new client is turned away at once, so
// that a flood of ClientHellos costs the proxy a bounded amount of memory.
const handshakesInFlight = 4096

// errPoolStopped ends a handshake whose pool closed.
var errPoolStopped = errors.New("proxy shutting down")

// Pool runs TLS handshakes off the event loops: a handshake is a
// millisecond of CPU in one piece (the key exchange and the certificate's
// signature), which a loop must not spend while other connections wait
// for their bytes. Each handshake runs on a goroutine of its own and
// waits for its client's next flight in Go's netpoller, so a slow client
// holds up nobody else; but only as many handshakes as the pool has
// compute slots (one per loop) run crypto at once, so a flood of
// ClientHellos takes at most that many cores from the loops' relaying.
// The loops hand a connection over once its ClientHello is there, so a
// client that connects and says nothing costs nothing here. Safe for
// concurrent use.
type Pool struct {
	slots *computeSlots // a slot per handshake computing
	done  chan struct{} // closed by Close: ends the waits for a slot
	limit int           // handshakes in flight at most
	bufs  pendingBufs   // what the loop-driven transports hold, lent

	mu      sync.Mutex            // guards closed, running and waiting
	closed  bool                  // no handshake starts any more
	running int                   // handshakes started, not yet done
	waiting map[*os.File]struct{} // the running handshakes' sockets
	wg      sync.WaitGroup        // the handshakes' goroutines
}

// NewPool returns a pool that computes workers handshakes at once, at
// least one.
func NewPool(workers int) *Pool {
	return &Pool{
		slots:   newComputeSlots(max(workers, 1)),
		done:    make(chan struct{}),
		limit:   handshakesInFlight,
		waiting: map[*os.File]struct{}{},
	}
}

// Server runs the server side of a TLS handshake with cfg on socket fd,
// whose peer is peer, on a goroutine of its own: prefix holds what the
// loop read of the client's first bytes (its ClientHello, at least in
// part), and the handshake waits for the socket until deadline (unix
// nanoseconds) or until the pool closes. done runs on that goroutine with
// the Side the loop then drives, or the handshake's error. The socket is
// the handshake's until done runs. Server reports false when too many
// handshakes are under way or the pool closed, and nothing will run.
func (p *Pool) Server(fd int, peer net.Addr, prefix []byte, cfg *tls.Config, deadline int64, done func(*Side, error)) bool {
	tr := &transport{fd: fd, peer: peer, prefix: prefix, bufs: &p.bufs}
	return p.start(tls.Server(tr, cfg), tr, deadline, done)
}

// Client runs the client side of a TLS handshake with cfg, as Server does
// the server side.
func (p *Pool) Client(fd int, peer net.Addr, cfg *tls.Config, deadline int64, done func(*Side, error)) bool {
	tr := &transport{fd: fd, peer: peer, bufs: &p.bufs}
	return p.start(tls.Client(tr, cfg), tr, deadline, done)
}

// start runs c's handshake on a goroutine; false when too many are under
// way or the pool closed. It costs the loop no system call.
func (p *Pool) start(c *tls.Conn, tr *transport, deadline int64, done func(*Side, error)) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.running >= p.limit {
		return false
	}
	p.running++
	p.wg.Go(func() { p.handshake(c, tr, time.Unix(0, deadline), done) })
	return true
}

// handshake runs on its own goroutine: the handshake, computing in a slot
// and waiting for the socket in the netpoller as long as the deadline
// allows, then done, once the socket is the loop's alone again.
func (p *Pool) handshake(c *tls.Conn, tr *transport, deadline time.Time, done func(*Side, error)) {
	w, err := p.watch(tr.fd, deadline)
	if err == nil {
		tr.hs = w
		if err = w.acquire(); err == nil {
			err = c.Handshake()
		}
		tr.hs = nil
		w.release()
		p.unwatch(w)
	}
	p.mu.Lock()
	p.running--
	p.mu.Unlock()
	if err != nil {
		done(nil, err)
		return
	}
	done(&Side{conn: c, tr: tr}, nil)
}

// watch puts a duplicate of socket fd in Go's netpoller for a handshake
// that must be over by deadline; Close cuts it short.
func (p *Pool) watch(fd int, deadline time.Time) (*netWait, error) {
	w, err := newNetWait(p, fd, deadline)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		w.close()
		return nil, errPoolStopped
	}
	if w.file != nil {
		p.waiting[w.file] = struct{}{}
	}
	return w, nil
}

// unwatch takes a handshake's duplicate out of the netpoller and closes
// it. The loop's own registration of the socket is another descriptor's,
// and stays.
func (p *Pool) unwatch(w *netWait) {
	p.mu.Lock()
	delete(p.waiting, w.file)
	p.mu.Unlock()
	w.close()
}

// Close ends the handshakes under way, which fail at once, and waits for
// their goroutines. No handshake starts after it.
func (p *Pool) Close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.done)
		past := time.Unix(1, 0)
		for f := range p.waiting {
			f.SetDeadline(past) // wakes a wait in the netpoller, and fails the next
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// stopped reports whether the pool closed.
func (p *Pool) stopped() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}
