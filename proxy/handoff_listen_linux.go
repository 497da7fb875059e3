//go:build linux

package proxy

import (
	"errors"
	"net"

	"github.com/wsedge/wsedge/proxy/evloop"
)

// errNotLoopListener is why a listener cannot be handed over: only
// ListenTCP's sockets are the proxy's to lend.
var errNotLoopListener = errors.New("not a listener from ListenTCP")

// ListenerFDs returns duplicates of the sockets of ln, a listener from
// ListenTCP, to lend to a new process; the caller closes them.
func ListenerFDs(ln net.Listener) ([]int, error) {
	l, ok := ln.(*loopListener)
	if !ok {
		return nil, errNotLoopListener
	}
	return l.Dup()
}

// PauseListener stops the loops accepting from ln, a listener from
// ListenTCP; the kernel queues its clients meanwhile. ResumeListener
// undoes it.
func PauseListener(ln net.Listener) error {
	l, ok := ln.(*loopListener)
	if !ok {
		return errNotLoopListener
	}
	return l.Pause()
}

// ResumeListener lets the loops accept from a paused listener again.
func ResumeListener(ln net.Listener) error {
	l, ok := ln.(*loopListener)
	if !ok {
		return errNotLoopListener
	}
	return l.Resume()
}

// AdoptTCP is ListenTCP on sockets an old process lent (ListenerFDs
// there), with at least loops of them. It takes fds over, and closes them
// when it fails.
func AdoptTCP(fds []int, loops int, opts ...ListenOption) (net.Listener, error) {
	ln, err := evloop.Adopt(fds, loops)
	if err != nil {
		return nil, err
	}
	return &loopListener{Listener: ln, mode: newClientMode(opts)}, nil
}
