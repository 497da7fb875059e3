//go:build linux

package proxy

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// poller spreads plain-TCP WebSockets over a few event loops (Server.loops,
// by default one per processor the Go runtime may use), so that an idle
// connection costs its state and no goroutine or buffer. It is safe for
// concurrent use.
type poller struct {
	srv *Server
	// handshakes runs TLS handshakes for the loops' clients.
	handshakes *handshakePool
	once       sync.Once
	err        error
	loops      []*loop
	started    atomic.Bool // loops is set and final
	next       atomic.Uint32
	wg         sync.WaitGroup // one per running loop
}

func newPoller(srv *Server) *poller {
	return &poller{srv: srv, handshakes: newHandshakePool(srv.loops)}
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
			p.wg.Go(l.run)
		}
		ring, err := "on", p.loops[0].ringErr
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
	p.handshakes.close() // before the loops: its workers hand back to them
	for _, l := range p.loops {
		l.post(l.stop)
	}
	p.wg.Wait()
}

// loop is one event loop: an epoll instance and the connections registered
// with it. Everything but post runs on the loop's goroutine.
type loop struct {
	srv  *Server
	epfd int
	wake int // eventfd that interrupts the wait for posted tasks

	mu      sync.Mutex // guards tasks and stopped
	tasks   []func()
	stopped bool
	// sleeping is set while the loop may block in epoll_wait: only then
	// does post need to wake it, which spares a busy loop two system calls
	// per handed-over connection.
	sleeping atomic.Bool

	conns []loopConn // by file descriptor
	// live counts the connections in conns. When it falls below a quarter
	// of the table, trimDue asks for a look at the table's high end, at
	// most once per trimEvery (trimmed is the last look).
	live     int
	trimDue  bool
	trimmed  int64
	wheel    *wheel[econn, *econn]
	upgrades *wheel[upgrade, *upgrade] // handshake deadlines
	running  bool
	stats    relayStats
	bufs     []*[]byte // read buffers kept at hand, so a busy loop does not wait on the shared pool
	// ops are the relay reads and writes asked for since the last flush;
	// spare is the other half of the double buffer flushIO swaps with it.
	ops, spare []ioOp
	// ring does a flush's operations in one system call; nil where
	// io_uring is not available, and each is then a system call of its own.
	ring    *ioRing
	ringErr error // why ring is nil
	batches int   // system calls the ring made, for tests
	// quietSince is when the loop last woke to no events, zero while
	// events keep coming: a loop quiet for bufsKeptIdle gives its buffers
	// back to the shared pool, which the collector may then free.
	quietSince int64
	yielded    int64 // when the loop last yielded to the scheduler
}

// bufsKeptIdle is how long a quiet loop keeps its read buffers at hand.
const bufsKeptIdle = time.Second

// quiet notes a wait that ended with no events and, once the loop has been
// quiet for bufsKeptIdle, hands its kept buffers back.
func (l *loop) quiet(now int64) {
	if l.quietSince == 0 {
		l.quietSince = now
		return
	}
	if now-l.quietSince < int64(bufsKeptIdle) {
		return
	}
	for i, b := range l.bufs {
		l.srv.pool.put(b)
		l.bufs[i] = nil
	}
	l.bufs = l.bufs[:0]
}

// loopBufs is how many read buffers a loop keeps at hand: enough for the
// bursts of one turn, few enough that an idle proxy holds little.
const loopBufs = 16

// getBuf lends a read buffer.
func (l *loop) getBuf() *[]byte {
	if n := len(l.bufs); n > 0 {
		b := l.bufs[n-1]
		l.bufs[n-1] = nil
		l.bufs = l.bufs[:n-1]
		return b
	}
	return l.srv.pool.get()
}

// putBuf takes a read buffer back.
func (l *loop) putBuf(b *[]byte) {
	if len(l.bufs) < loopBufs {
		l.bufs = append(l.bufs, b)
		return
	}
	l.srv.pool.put(b)
}

// loopConn is what a loop dispatches events to: a relayed connection, or
// one still in its handshake.
type loopConn interface {
	onEvent(fd int, events uint32, now int64)
	// halt closes it at once: the loop is stopping.
	halt(now int64)
}

func newLoop(srv *Server) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	now := time.Now().UnixNano()
	l := &loop{srv: srv, epfd: epfd, wake: wake, running: true,
		wheel: newWheel[econn](now), upgrades: newWheel[upgrade](now)}
	if srv.noRing {
		l.ringErr = errors.New("turned off")
	} else {
		l.ring, l.ringErr = newIORing()
	}
	return l, nil
}

// post runs f on the loop's goroutine soon. It reports false when the loop
// has stopped and f will never run.
func (l *loop) post(f func()) bool {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return false
	}
	l.tasks = append(l.tasks, f)
	l.mu.Unlock()
	if l.sleeping.CompareAndSwap(true, false) {
		var one = [8]byte{1}
		unix.Write(l.wake, one[:])
	}
	return true
}

func (l *loop) run() {
	defer unix.Close(l.epfd)
	defer unix.Close(l.wake)
	defer func() {
		if l.ring != nil {
			l.ring.close()
		}
	}()
	events := make([]unix.EpollEvent, 256)
	for l.running {
		// A busy loop collects events without entering the scheduler; only
		// a loop with nothing to do blocks in epoll_wait.
		n, err := epollPoll(l.epfd, events)
		if n == 0 && err == nil {
			// Nothing ready. Announce the sleep before looking for tasks:
			// a task posted after the look sees the flag and wakes us.
			l.sleeping.Store(true)
			l.mu.Lock()
			idle := len(l.tasks) == 0 && len(l.ops) == 0
			l.mu.Unlock()
			if idle {
				timeout := -1
				switch {
				case l.wheel.pending() || l.upgrades.pending():
					timeout = int(wheelTick / time.Millisecond)
				case len(l.bufs) > 0 || l.trimDue:
					timeout = int(min(bufsKeptIdle, trimEvery) / time.Millisecond)
				}
				n, err = unix.EpollWait(l.epfd, events, timeout)
				if n == 0 && err == nil {
					l.quiet(time.Now().UnixNano())
				}
			}
			l.sleeping.Store(false)
		}
		if n > 0 {
			l.quietSince = 0
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			l.srv.log.Error("epoll_wait failed; closing this loop's connections", zap.Error(err))
			l.stop()
			return
		}
		now := time.Now().UnixNano()
		for i := range n {
			fd := int(events[i].Fd)
			if fd == l.wake {
				var buf [8]byte
				unix.Read(l.wake, buf[:])
				continue
			}
			if fd < len(l.conns) && l.conns[fd] != nil {
				l.dispatch(l.conns[fd], fd, events[i].Events, now)
			}
		}
		l.runTasks()
		l.wheel.advance(now)
		l.upgrades.advance(now)
		l.flushIO(now)
		if l.trimDue && now-l.trimmed >= int64(trimEvery) {
			l.trimConns(now)
		}
		if now-l.yielded > yieldEvery {
			// A goroutine that has not been rescheduled for 10ms is
			// preempted by the runtime's monitor thread, or, caught in
			// epoll_wait, has its processor taken away, and either way the
			// monitor goes back to waking every 20µs for a while. A busy
			// loop that yields first costs the runtime one reschedule.
			l.yielded = now
			runtime.Gosched()
		}
	}
}

// yieldEvery is how often a busy loop yields to the Go scheduler: within
// the runtime's 10ms time slice.
const yieldEvery = int64(5 * time.Millisecond)

// dispatch hands an event to its connection.
func (l *loop) dispatch(c loopConn, fd int, events uint32, now int64) {
	l.guard(c, now, func() { c.onEvent(fd, events, now) })
}

// guard runs f for c. A bug that panics there ends that connection, not
// the process and every other client with it.
func (l *loop) guard(c loopConn, now int64, f func()) {
	defer func() {
		if r := recover(); r != nil {
			l.srv.log.Error("connection handler panicked; closing the connection",
				zap.Any("panic", r), zap.Stack("stack"))
			func() {
				defer func() { recover() }()
				c.halt(now)
			}()
		}
	}()
	f()
}

// epollPoll collects ready events without waiting: a raw system call,
// since it never blocks.
func epollPoll(epfd int, events []unix.EpollEvent) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])),
		uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func (l *loop) runTasks() {
	l.mu.Lock()
	tasks := l.tasks
	l.tasks = nil
	l.mu.Unlock()
	for _, f := range tasks {
		f()
	}
}

// stop tears down every connection of the loop and ends it.
func (l *loop) stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
	now := time.Now().UnixNano()
	for _, c := range l.conns {
		if c != nil {
			c.halt(now)
		}
	}
	l.runTasks()
	l.flushIO(now) // every connection is gone: only gives buffers back
	l.running = false
}

// register adds fd for c with the given interest.
func (l *loop) register(fd int, c loopConn, events uint32) error {
	for fd >= len(l.conns) {
		l.conns = append(l.conns, nil)
	}
	if l.conns[fd] == nil {
		l.live++
	}
	l.conns[fd] = c
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	return unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
}

// unregister forgets fd; closing it, the only descriptor of its socket,
// takes it out of the epoll set.
func (l *loop) unregister(fd int) {
	if fd >= len(l.conns) || l.conns[fd] == nil {
		return
	}
	l.conns[fd] = nil
	if l.live--; l.live < len(l.conns)/4 && len(l.conns) > minConnTable {
		l.trimDue = true
	}
}

const (
	// minConnTable is the descriptor table a loop never trims below:
	// 16 KiB, whatever it serves.
	minConnTable = 1024
	// trimEvery bounds how often a loop looks for an empty high end in
	// its descriptor table: a high descriptor that comes and goes, as
	// when other loops hold every lower one, costs a scan and a copy per
	// trimEvery at most, not per connection.
	trimEvery = time.Second
)

// trimConns halves the descriptor table, as often as it can, while no
// descriptor is registered in its upper three quarters: after a burst of
// clients a loop keeps a table sized for what it serves now. A table grows
// only for a descriptor past its end, so one just halved holds twice the
// span of its descriptors before it grows again.
func (l *loop) trimConns(now int64) {
	l.trimDue, l.trimmed = false, now
	top := len(l.conns) // one past the highest descriptor registered
	for top > 0 && l.conns[top-1] == nil {
		top--
	}
	n := len(l.conns)
	for n/2 >= minConnTable && top <= n/4 {
		n /= 2
	}
	if n == len(l.conns) {
		return
	}
	next := make([]loopConn, n)
	copy(next, l.conns[:top])
	l.conns = next
}

// release forgets fd and takes it out of the epoll set explicitly, for a
// socket that lives on under another descriptor: epoll would otherwise
// keep reporting it under this number after the number is reused.
func (l *loop) release(fd int) {
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	l.unregister(fd)
}
