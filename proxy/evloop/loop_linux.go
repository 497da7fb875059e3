//go:build linux

package evloop

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Handler is what a loop dispatches a descriptor's events to. Its methods
// run on the loop's goroutine.
type Handler interface {
	// OnEvent reports the epoll events of fd, one of the descriptors h is
	// registered for, at now (unix nanoseconds).
	OnEvent(fd int, events uint32, now int64)
	// Halt closes it at once: the loop is stopping, or a method of it
	// panicked.
	Halt(now int64)
}

// Owner is the work a loop does for whoever owns it besides dispatching
// events: its timers and the reads and writes its handlers asked for. Its
// methods run on the loop's goroutine.
type Owner interface {
	// Turn runs once a turn, after the turn's events and posted tasks.
	Turn(now int64)
	// Sleep says whether the loop may block when no event is ready
	// (false: the owner has work for the next turn already) and for how
	// long at most before a Turn is due; a negative d has no bound.
	Sleep() (ok bool, d time.Duration)
	// Halted runs once as the loop stops, after every handler was halted
	// and the last posted tasks ran.
	Halted(now int64)
}

// Loop is one event loop: an epoll instance, the descriptors registered
// with it and the handler of each, the tasks other goroutines post to it,
// the read buffers its handlers borrow, and an io_uring ring for batches
// of reads and writes. Everything but Post runs on the loop's goroutine.
type Loop struct {
	owner Owner
	log   *zap.Logger
	pool  *BufPool
	epfd  int
	wake  int // eventfd that interrupts the wait for posted tasks

	mu      sync.Mutex // guards tasks and stopped
	tasks   []func()
	stopped bool
	// sleeping is set while the loop may block in epoll_wait: only then
	// does Post need to wake it, which spares a busy loop two system calls
	// per handed-over connection.
	sleeping atomic.Bool

	handlers []Handler // by file descriptor
	// live counts the handlers in handlers. When it falls below a quarter
	// of the table, trimDue asks for a look at the table's high end, at
	// most once per trimEvery (trimmed is the last look).
	live    int
	trimDue bool
	trimmed int64
	running bool
	bufs    []*[]byte // read buffers kept at hand, so a busy loop does not wait on the shared pool
	// ring does a batch's operations in one system call; nil where
	// io_uring is not available, and each is then a system call of its own.
	ring      *ioRing
	ringErr   error // why ring is nil
	ringCalls int   // system calls the ring made
	// quietSince is when the loop last woke to no events, zero while
	// events keep coming: a loop quiet for bufsKeptIdle gives its buffers
	// back to the shared pool, which the collector may then free.
	quietSince int64
	yielded    int64 // when the loop last yielded to the scheduler
}

// Option sets up a Loop beyond its owner.
type Option func(*Loop)

// WithLogger reports, through l, a handler that panicked, a failed
// epoll_wait, a ring set aside and failed accepts; by default nothing is
// logged.
func WithLogger(l *zap.Logger) Option { return func(lp *Loop) { lp.log = l } }

// WithBufPool lends read buffers from p, shared with other loops and with
// whatever else reads in bursts; by default the loop has a pool of its own.
func WithBufPool(p *BufPool) Option { return func(lp *Loop) { lp.pool = p } }

// WithoutRing makes Do use a system call per operation even where io_uring
// is available.
func WithoutRing() Option { return func(lp *Loop) { lp.ringErr = errors.New("turned off") } }

// New opens a loop for owner; nil for one with no work of its own. Run
// runs it.
func New(owner Owner, opts ...Option) (*Loop, error) {
	if owner == nil {
		owner = noOwner{}
	}
	l := &Loop{owner: owner, log: zap.NewNop(), running: true}
	for _, o := range opts {
		o(l)
	}
	if l.pool == nil {
		l.pool = NewBufPool()
	}
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
	l.epfd, l.wake = epfd, wake
	if l.ringErr == nil {
		l.ring, l.ringErr = newIORing()
	}
	return l, nil
}

type noOwner struct{}

func (noOwner) Turn(int64)                   {}
func (noOwner) Sleep() (bool, time.Duration) { return true, -1 }
func (noOwner) Halted(int64)                 {}

// RingErr says why the loop started without an io_uring ring, so that Do
// makes a system call per operation: nil when it started with one. Safe
// for concurrent use once New returned.
func (l *Loop) RingErr() error { return l.ringErr }

// RingCalls is how many system calls the loop's ring made; read it on the
// loop's goroutine, or once Run returned.
func (l *Loop) RingCalls() int { return l.ringCalls }

// Post runs f on the loop's goroutine soon. It reports false when the loop
// has stopped and f will never run. Safe for concurrent use.
func (l *Loop) Post(f func()) bool {
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

// Run dispatches events until Stop, then closes the loop.
func (l *Loop) Run() {
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
			idle := len(l.tasks) == 0
			l.mu.Unlock()
			if ok, wait := l.owner.Sleep(); idle && ok {
				n, err = unix.EpollWait(l.epfd, events, l.timeout(wait))
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
			l.log.Error("epoll_wait failed; closing this loop's connections", zap.Error(err))
			l.Stop()
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
			if fd < len(l.handlers) && l.handlers[fd] != nil {
				l.dispatch(l.handlers[fd], fd, events[i].Events, now)
			}
		}
		l.runTasks()
		l.owner.Turn(now)
		if l.trimDue && now-l.trimmed >= int64(trimEvery) {
			l.trimHandlers(now)
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

// timeout is how long, in milliseconds, an idle loop waits in epoll_wait:
// no longer than the owner's next Turn is due, nor than its own look at
// its buffers and descriptor table; -1 for as long as it takes.
func (l *Loop) timeout(owner time.Duration) int {
	wait := owner
	if len(l.bufs) > 0 || l.trimDue {
		if own := min(bufsKeptIdle, trimEvery); wait < 0 || own < wait {
			wait = own
		}
	}
	if wait < 0 {
		return -1
	}
	return int(wait / time.Millisecond)
}

// yieldEvery is how often a busy loop yields to the Go scheduler: within
// the runtime's 10ms time slice.
const yieldEvery = int64(5 * time.Millisecond)

// dispatch hands an event to its handler.
func (l *Loop) dispatch(h Handler, fd int, events uint32, now int64) {
	l.Guard(h, now, func() { h.OnEvent(fd, events, now) })
}

// Guard runs f for h. A bug that panics there halts h, not the process and
// every other client with it.
func (l *Loop) Guard(h Handler, now int64, f func()) {
	defer func() {
		if r := recover(); r != nil {
			l.log.Error("connection handler panicked; closing the connection",
				zap.Any("panic", r), zap.Stack("stack"))
			func() {
				defer func() { recover() }()
				h.Halt(now)
			}()
		}
	}()
	f()
}

func (l *Loop) runTasks() {
	l.mu.Lock()
	tasks := l.tasks
	l.tasks = nil
	l.mu.Unlock()
	for _, f := range tasks {
		f()
	}
}

// Stop halts every handler of the loop and ends it: no task is taken
// after it, and Run returns at the end of the turn. It runs on the loop's
// goroutine: Post it.
func (l *Loop) Stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
	now := time.Now().UnixNano()
	for _, h := range l.handlers {
		if h != nil {
			h.Halt(now)
		}
	}
	l.runTasks()
	l.owner.Halted(now)
	l.running = false
}
