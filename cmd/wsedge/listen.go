package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/wsedge/wsedge/affinity"
	"github.com/wsedge/wsedge/cmd/wsedge/internal/config"
	"github.com/wsedge/wsedge/proxy"
)

// listen opens the client listener as f describes it: the proxy's event
// loops accept its connections themselves, loops of them, each from a
// socket of its own, and read the PROXY protocol header (when it is on)
// and terminate TLS (when a certificate is configured) before HTTP.
func listen(f *config.File, certs *certificate, loops int) (net.Listener, error) {
	ln, err := proxy.ListenTCP(f.Listen, loops, listenOptions(f, certs)...)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return ln, nil
}

// listenOptions says what the clients of f's listener speak before HTTP:
// a PROXY protocol header (when it is on), TLS (when a certificate is
// configured).
func listenOptions(f *config.File, certs *certificate) []proxy.ListenOption {
	var opts []proxy.ListenOption
	if f.ProxyProtocol {
		opts = append(opts, proxy.WithProxyProtocol(affinity.NewTrustedProxies(f.Affinity.TrustedProxies)))
	}
	if f.TLS.Cert != "" {
		opts = append(opts, proxy.WithTLS(&tls.Config{
			MinVersion:       tls.VersionTLS12,
			GetCertificate:   certs.get,
			NextProtos:       []string{"http/1.1"}, // WebSockets upgrade HTTP/1.1
			CurvePreferences: curveIDs(f.TLS.Curves),
		}))
	}
	return opts
}

// curveIDs turns tls.curves into Go's key exchange IDs; none means Go's
// defaults. Validation made sure every name is known.
func curveIDs(names []string) []tls.CurveID {
	var ids []tls.CurveID
	for _, n := range names {
		if id, ok := config.CurveID(n); ok {
			ids = append(ids, id)
		}
	}
	return ids
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
