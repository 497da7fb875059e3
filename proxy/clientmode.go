package proxy

import (
	"crypto/tls"

	"github.com/wsedge/wsedge/affinity"
)

// clientMode is what a listener's clients speak before HTTP: a PROXY
// protocol header from a load balancer in front, TLS, both (the header
// first) or neither. The zero value is neither.
type clientMode struct {
	proxyProtocol bool
	trusted       affinity.TrustedProxies // peers whose PROXY headers are believed
	tls           *tls.Config
}

// ListenOption sets what a listener's clients speak before HTTP.
type ListenOption func(*clientMode)

// WithProxyProtocol reads a PROXY protocol header (version 1 or 2) before
// each client's first bytes, and believes the client address it names
// from trusted peers only: a header from any other peer ends its
// connection, so nobody picks their own address. A peer may always send
// none.
func WithProxyProtocol(trusted affinity.TrustedProxies) ListenOption {
	return func(m *clientMode) { m.proxyProtocol, m.trusted = true, trusted }
}

// WithTLS terminates TLS with cfg, which must name the certificate (by
// Certificates or GetCertificate, which a reload can swap) and should
// offer "http/1.1" by ALPN.
func WithTLS(cfg *tls.Config) ListenOption {
	return func(m *clientMode) { m.tls = cfg }
}

func newClientMode(opts []ListenOption) clientMode {
	var m clientMode
	for _, o := range opts {
		o(&m)
	}
	return m
}
