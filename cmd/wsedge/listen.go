package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/pires/go-proxyproto"

	"github.com/wsedge/wsedge/affinity"
	"github.com/wsedge/wsedge/cmd/wsedge/internal/config"
	"github.com/wsedge/wsedge/proxy"
)

// listen opens the client listener as f describes it: TCP, then the PROXY
// protocol when it is on, then TLS when a certificate is configured. Plain
// TCP is accepted by the proxy's event loops themselves, loops of them,
// each from a socket of its own.
func listen(f *config.File, certs *certificate, loops int) (net.Listener, error) {
	if !f.ProxyProtocol && f.TLS.Cert == "" {
		ln, err := proxy.ListenTCP(f.Listen, loops)
		if err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
		return ln, nil
	}
	// No TCP keepalive probes: the proxy's heartbeats find dead clients,
	// and every accepted socket is spared the system calls.
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", f.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if f.ProxyProtocol {
		ln = inetListener{&proxyproto.Listener{
			Listener:          ln,
			ConnPolicy:        proxyPolicy(f.Affinity.TrustedProxies),
			ReadHeaderTimeout: f.WebSocket.HandshakeTimeout,
		}}
	}
	if f.TLS.Cert != "" {
		ln = tls.NewListener(ln, &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: certs.get,
			NextProtos:     []string{"http/1.1"}, // WebSockets upgrade HTTP/1.1
		})
	}
	return ln, nil
}

// proxyPolicy believes PROXY protocol headers from trusted proxies (and
// lets them connect without one) and refuses them from anyone else, who
// would otherwise choose their own client address.
func proxyPolicy(trusted []netip.Prefix) proxyproto.ConnPolicyFunc {
	tp := affinity.NewTrustedProxies(trusted)
	return func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
		ap, err := netip.ParseAddrPort(o.Upstream.String())
		if err == nil && tp.Contains(ap.Addr().Unmap()) {
			return proxyproto.USE, nil
		}
		return proxyproto.REJECT, nil
	}
}

// inetListener hands out PROXY protocol connections whose remote address
// is always an IP: a header naming a Unix socket (or LOCAL, a health check)
// leaves the proxy that connected as the client.
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
	if a, ok := c.Conn.RemoteAddr().(*net.TCPAddr); ok {
		return a
	}
	return c.Conn.Raw().RemoteAddr()
}

// certificate holds the certificate clients are shown. A reload swaps it;
// handshakes in progress and live connections keep the one they got.
type certificate struct {
	cur atomic.Pointer[tls.Certificate]
}

// load reads the [tls] files; with none configured it holds nothing.
func (c *certificate) load(t config.TLS) error {
	if t.Cert == "" {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	c.cur.Store(&cert)
	return nil
}

// set takes the certificate o holds.
func (c *certificate) set(o *certificate) { c.cur.Store(o.cur.Load()) }

func (c *certificate) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	cert := c.cur.Load()
	if cert == nil {
		return nil, fmt.Errorf("no certificate configured")
	}
	return cert, nil
}

func equalPrefixes(a, b []netip.Prefix) bool { return slices.Equal(a, b) }
