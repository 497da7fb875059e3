//go:build linux

package evloop

import (
	"time"

	"golang.org/x/sys/unix"
)

// Register adds fd to the loop's epoll set with the given interest, its
// events going to h.
func (l *Loop) Register(fd int, h Handler, events uint32) error {
	for fd >= len(l.handlers) {
		l.handlers = append(l.handlers, nil)
	}
	if l.handlers[fd] == nil {
		l.live++
	}
	l.handlers[fd] = h
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	return unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
}

// Handle sends the events of fd, registered already, to h from now on;
// its interest stays as it was.
func (l *Loop) Handle(fd int, h Handler) { l.handlers[fd] = h }

// Unregister forgets fd; closing it, the only descriptor of its socket,
// takes it out of the epoll set.
func (l *Loop) Unregister(fd int) {
	if fd >= len(l.handlers) || l.handlers[fd] == nil {
		return
	}
	l.handlers[fd] = nil
	if l.live--; l.live < len(l.handlers)/4 && len(l.handlers) > minTable {
		l.trimDue = true
	}
}

// Release forgets fd and takes it out of the epoll set explicitly, for a
// socket that lives on under another descriptor: epoll would otherwise
// keep reporting it under this number after the number is reused.
func (l *Loop) Release(fd int) {
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	l.Unregister(fd)
}

const (
	// minTable is the descriptor table a loop never trims below: 16 KiB,
	// whatever it serves.
	minTable = 1024
	// trimEvery bounds how often a loop looks for an empty high end in
	// its descriptor table: a high descriptor that comes and goes, as
	// when other loops hold every lower one, costs a scan and a copy per
	// trimEvery at most, not per connection.
	trimEvery = time.Second
)

// trimHandlers halves the descriptor table, as often as it can, while no
// descriptor is registered in its upper three quarters: after a burst of
// clients a loop keeps a table sized for what it serves now. A table grows
// only for a descriptor past its end, so one just halved holds twice the
// span of its descriptors before it grows again.
func (l *Loop) trimHandlers(now int64) {
	l.trimDue, l.trimmed = false, now
	top := len(l.handlers) // one past the highest descriptor registered
	for top > 0 && l.handlers[top-1] == nil {
		top--
	}
	n := len(l.handlers)
	for n/2 >= minTable && top <= n/4 {
		n /= 2
	}
	if n == len(l.handlers) {
		return
	}
	next := make([]Handler, n)
	copy(next, l.handlers[:top])
	l.handlers = next
}
