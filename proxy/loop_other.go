//go:build !linux

package proxy

import (
	"errors"
	"net"
)

// poller has no event loops off Linux: every connection gets the
// goroutine driver.
type poller struct{}

type loop struct{}

func newPoller(*Server) *poller { return &poller{} }

func (p *poller) pick() (*loop, error) { return nil, errors.New("no event loop on this platform") }

func (p *poller) stop() {}

type econn struct{ session }

func (s *Server) startEconn(*loop, *Config, route, net.Conn, net.Conn, []byte, []byte, bool) (*econn, error) {
	return nil, errors.New("no event loop on this platform")
}

func (p *poller) stats() []*relayStats { return nil }

func (p *poller) running() int { return 0 }

func (s *Server) acceptUpgrade(net.Conn) bool { return false }
