//go:build !linux

package proxy

import (
	"context"
	"errors"
	"net"
	"time"
)

// ListenTCP opens a client listener. Off Linux it is Go's own, without
// TCP keepalive probes (the proxy's heartbeats find dead clients), wrapped
// for TLS and the PROXY protocol as opts say, and there are no event
// loops: loops is ignored.
func ListenTCP(address string, loops int, opts ...ListenOption) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", address)
	if err != nil {
		return nil, err
	}
	return goListener(ln, newClientMode(opts), defaultHeaderTimeout), nil
}

// defaultHeaderTimeout bounds the wait for a PROXY header where no Server
// says otherwise.
const defaultHeaderTimeout = 5 * time.Second

// loopListener exists on Linux only.
type loopListener struct{ net.Listener }

func (s *Server) serveLoops(*loopListener) error { return errors.New("no event loop on this platform") }
