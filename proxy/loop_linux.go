//go:build linux

package proxy

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/wsedge/wsedge/proxy/evloop"
	"github.com/wsedge/wsedge/proxy/looptls"
)

// poller spreads clients over a few event loops (Server.loops, by default
// one per processor the Go runtime may use), so that an idle connection
// costs its state and no goroutine or buffer. It is safe for concurrent
// use.
type poller struct {
	srv *Server
	// handshakes runs TLS handshakes for the loops' clients.
	handshakes *looptls.Pool
	once       sync.Once
	err        error
	loops      []*loop
	started    atomic.Bool // loops is set and final
	next       atomic.Uint32
	wg         sync.WaitGroup // one per running loop
}

func newPoller(srv *Server) *poller {
	return &poller{srv: srv, handshakes: looptls.NewPool(srv.loops)}
}

// pick returns the loop for a new connection, starting the loops the first
// time.
func (p *poller) pick() (*loop, error) {
	loops, err := p.all()
	if err != nil {
		return nil, err
	}
	return loops[p.next.Add(1)%uint32(len(loops))], nil
}

// all returns every loop, starting them the first time.
func (p *poller) all() ([]*loop, error) {
	p.once.Do(func() {
		for range p.srv.loops {
			l, err := newLoop(p.srv)
			if err != nil {
				p.err = err
				return
			}
			p.loops = append(p.loops, l)
			p.wg.Go(l.Run)
		}
		ring, err := "on", p.loops[0].RingErr()
		switch {
		case p.srv.noRing:
			ring, err = "off", nil
		case err != nil:
			ring = "unavailable" // a system call per read and write
		}
		p.started.Store(true)
		p.srv.log.Info("event loops started", zap.Int("loops", len(p.loops)), zap.String("io_uring", ring), zap.Error(err))
	})
	if p.err != nil {
		return nil, p.err
	}
	if len(p.loops) == 0 {
		return nil, errors.New("event loops stopped")
	}
	return p.loops, nil
}

// running returns how many loops run: none until the first plain-TCP
// listener or WebSocket starts them.
func (p *poller) running() int {
	if !p.started.Load() {
		return 0
	}
	return len(p.loops)
}

// stats returns the relay counters of the loops started so far.
func (p *poller) stats() []*relayStats {
	if !p.started.Load() {
		return nil
	}
	out := make([]*relayStats, len(p.loops))
	for i, l := range p.loops {
		out[i] = &l.stats
	}
	return out
}

// stop tears down whatever connections remain and ends the loops.
func (p *poller) stop() {
	p.once.Do(func() {}) // no loops may start after this
	p.handshakes.Close() // before the loops: its workers hand back to them
	for _, l := range p.loops {
		l.Post(l.Stop)
	}
	p.wg.Wait()
}

// loop is one event loop as the proxy runs it: an evloop.Loop, which
// dispatches the events of its sockets to their connections (econn,
// upgrade), and the state those connections share on the loop: their
// timers, the relay's reads and writes asked for during a turn, and the
// relay's counters. Everything but Post runs on the loop's goroutine.
type loop struct {
	*evloop.Loop
	srv      *Server
	wheel    *evloop.Wheel[econn, *econn]
	upgrades *evloop.Wheel[upgrade, *upgrade] // handshake deadlines
	stats    relayStats
	// ops are the relay reads and writes asked for since the last flush;
	// spare is the other half of the double buffer flushIO swaps with it.
	ops, spare []ioOp
}

var (
	_ evloop.Owner   = (*loop)(nil)
	_ evloop.Handler = (*econn)(nil)
	_ evloop.Handler = (*upgrade)(nil)
)

func newLoop(srv *Server) (*loop, error) {
	now := time.Now().UnixNano()
	l := &loop{srv: srv, wheel: evloop.NewWheel[econn](now), upgrades: evloop.NewWheel[upgrade](now)}
	opts := []evloop.Option{evloop.WithLogger(srv.log), evloop.WithBufPool(srv.pool)}
	if srv.noRing {
		opts = append(opts, evloop.WithoutRing())
	}
	el, err := evloop.New(l, opts...)
	if err != nil {
		return nil, err
	}
	l.Loop = el
	return l, nil
}

// Turn advances the connections' timers and does the reads and writes
// they asked for, once a turn.
func (l *loop) Turn(now int64) {
	l.wheel.Advance(now)
	l.upgrades.Advance(now)
	l.flushIO(now)
}

// Sleep lets the loop block while no read or write waits in the batch,
// for a tick of the wheels at most while a timer is set.
func (l *loop) Sleep() (bool, time.Duration) {
	switch {
	case len(l.ops) > 0:
		return false, 0
	case l.wheel.Pending() || l.upgrades.Pending():
		return true, evloop.WheelTick
	}
	return true, -1
}

// Halted gives back what the batch holds once every connection is gone.
func (l *loop) Halted(now int64) { l.flushIO(now) }

// relayInterest is what a socket the loop handshakes and relays is
// registered for, once and for good: edge-triggered reads and writes. No
// stall or resume changes it; the flows remember what an edge told them.
const relayInterest = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET
