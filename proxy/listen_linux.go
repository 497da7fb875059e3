//go:build linux

package proxy

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/wsedge/wsedge/proxy/evloop"
)

// ListenTCP opens a client listener whose connections the event loops
// accept themselves: one SO_REUSEPORT socket per loop, so that a client is
// accepted, upgraded and relayed on one thread, with no goroutine woken
// and no hand-over between threads per connection, whether it speaks plain
// TCP, TLS (WithTLS) or comes through a PROXY protocol balancer
// (WithProxyProtocol). loops is the number of loops of the Server that
// will serve it (Server.Loops); zero means one per processor the Go runtime
// may use, as for a Server built without WithLoops. Serve it with
// Server.Serve; other servers cannot accept from it.
func ListenTCP(address string, loops int, opts ...ListenOption) (net.Listener, error) {
	ln, err := evloop.Listen(address, loops)
	if err != nil {
		return nil, err
	}
	return &loopListener{Listener: ln, mode: newClientMode(opts)}, nil
}

// loopListener is the set of listening sockets ListenTCP opened, and what
// their clients speak before HTTP. Until Serve gives each to a loop they
// only queue connections.
type loopListener struct {
	*evloop.Listener
	mode clientMode
}

// serveLoops hands ln's sockets to the loops and waits for Close.
func (s *Server) serveLoops(ln *loopListener) error {
	loops, err := s.poll.all()
	if err != nil {
		return fmt.Errorf("event loops: %w", err)
	}
	targets := make([]evloop.Target, len(loops))
	for i, l := range loops {
		targets[i] = evloop.Target{Loop: l.Loop, Accepted: func(fd int, peer netip.AddrPort, now int64) {
			s.acceptedOnLoop(l, fd, peer, &ln.mode, now)
		}}
	}
	return ln.Serve(targets)
}

// acceptedOnLoop starts the handshake of a client accepted on l, which
// speaks what mode says before HTTP. Whatever the loop does not relay
// itself (plain HTTP, backends over TLS) goes to the HTTP path once its
// head is read, as upgrade.handOff decides.
func (s *Server) acceptedOnLoop(l *loop, fd int, peer netip.AddrPort, mode *clientMode, now int64) {
	u := &upgrade{srv: s, loop: l, cfd: fd, bfd: -1, peer: peer, mode: mode, started: now}
	u.start()
}
