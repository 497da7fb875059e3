//go:build !linux

package proxy

import (
	"context"
	"errors"
	"net"
)

// ListenTCP opens a plain-TCP client listener. Off Linux it is Go's own,
// without TCP keepalive probes (the proxy's heartbeats find dead clients),
// and there are no event loops: loops is ignored.
func ListenTCP(address string, loops int) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(context.Background(), "tcp", address)
}

// loopListener exists on Linux only.
type loopListener struct{ net.Listener }

func (s *Server) serveLoops(*loopListener) error { return errors.New("no event loop on this platform") }
