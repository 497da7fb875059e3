package proxy

import (
	"crypto/tls"
	"net"
	"net/netip"
	"time"

	"github.com/pires/go-proxyproto"
)

// goListener wraps one of Go's listeners for what mode says its clients
// speak, where connections are accepted on goroutines rather than by the
// event loops: on systems without them, and where they cannot start.
// headerTimeout bounds the wait for a PROXY header.
func goListener(ln net.Listener, mode clientMode, headerTimeout time.Duration) net.Listener {
	if mode.proxyProtocol {
		ln = inetListener{&proxyproto.Listener{
			Listener:          ln,
			ConnPolicy:        proxyPolicy(mode),
			ReadHeaderTimeout: headerTimeout,
		}}
	}
	if mode.tls != nil {
		ln = tls.NewListener(ln, mode.tls)
	}
	return ln
}

// proxyPolicy believes PROXY protocol headers from trusted proxies (and
// lets them connect without one) and refuses them from anyone else, who
// would otherwise choose their own client address.
func proxyPolicy(mode clientMode) proxyproto.ConnPolicyFunc {
	return func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
		ap, err := netip.ParseAddrPort(o.Upstream.String())
		if err == nil && mode.trusted.Contains(ap.Addr().Unmap()) {
			return proxyproto.USE, nil
		}
		return proxyproto.REJECT, nil
	}
}

// inetListener hands out PROXY protocol connections whose remote address
// is always an IP: a header naming a Unix socket (or LOCAL, a health check)
// leaves the proxy that connected as the client, as readProxyHeader does
// on the event loops.
type inetListener struct{ *proxyproto.Listener }

func (l inetListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if pc, ok := c.(*proxyproto.Conn); ok {
		return inetConn{pc}, err
	}
	return c, err
}

type inetConn struct{ *proxyproto.Conn }

func (c inetConn) RemoteAddr() net.Addr {
	switch a := c.Conn.RemoteAddr().(type) {
	case *net.TCPAddr:
		return a
	case *net.UDPAddr: // as the event loops take it: an address all the same
		return &net.TCPAddr{IP: a.IP, Port: a.Port, Zone: a.Zone}
	}
	return c.Conn.Raw().RemoteAddr()
}
