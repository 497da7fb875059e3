package main

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
	"github.com/pires/go-proxyproto"
	"golang.org/x/sys/unix"

	"github.com/wsedge/wsedge/cmd/wsedge/internal/config"
)

// The end-to-end tests run in one of three ways of connecting, as the
// proxy serves its clients: plain ws://, TLS (wss://), or behind a
// balancer that opens every connection with a PROXY protocol header.
// WSEDGE_E2E_MODE picks one for the whole test binary:
//
//	go test ./cmd/wsedge                                  # plain
//	WSEDGE_E2E_MODE=tls go test ./cmd/wsedge
//	WSEDGE_E2E_MODE=proxy-protocol go test ./cmd/wsedge
//
// startWsedge and writeConfig give every proxy what the mode needs, and
// the helpers below connect to it as the mode says: wsDial and
// (*proc).wsDialer for gorilla/websocket, (*proc).gobwasDialer for
// frame-level clients, (*proc).dialRaw for hand-written HTTP,
// (*proc).httpClient and proxyGet for plain requests, (*proc).benchFlags
// for `wsedge bench`. The admin listener is plain HTTP in every mode.
const (
	modePlain         = "plain"
	modeTLS           = "tls"
	modeProxyProtocol = "proxy-protocol"
)

// e2eMode is how clients reach the proxies the tests start. TestMain
// builds it once from WSEDGE_E2E_MODE; it is not changed after, so it is
// safe for concurrent use.
type e2eMode struct {
	name string
	// certFile and keyFile hold a self-signed P-256 certificate for
	// 127.0.0.1, made for this test binary, that every proxy serves in
	// tls mode; roots trusts it. Empty in the other modes.
	certFile, keyFile string
	roots             *x509.CertPool
	// proxyHeader: every client connection comes from a balancer address
	// in balancerNet and starts with a PROXY v1 header naming the client,
	// as a balancer in front of the proxy sends it.
	proxyHeader bool
}

// balancerNet is where the balancer of proxy-protocol mode connects
// from. The proxies trust it (trusted_proxies) for its headers; the
// client a header names, 127.0.0.1 unless a test dials from elsewhere,
// keeps whatever trust the test's own config gives it, so that a test of
// who may set X-Forwarded-For means the same behind the balancer.
const balancerNet = "127.255.0.0/16"

// balancerSources is what `wsedge bench` binds in proxy-protocol mode: it
// names its own address in its headers, so its clients come from the
// balancer's network too.
const balancerSources = "127.255.0.2-127.255.15.254"

// loadMode reads WSEDGE_E2E_MODE, and in tls mode writes the certificate
// into dir.
func loadMode(dir string) (e2eMode, error) {
	switch name := os.Getenv("WSEDGE_E2E_MODE"); name {
	case "", modePlain:
		return e2eMode{name: modePlain}, nil
	case modeProxyProtocol:
		return e2eMode{name: name, proxyHeader: true}, nil
	case modeTLS:
		m := e2eMode{name: name, certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem")}
		var err error
		m.roots, err = selfSignedCert(m.certFile, m.keyFile)
		return m, err
	default:
		return e2eMode{}, fmt.Errorf("WSEDGE_E2E_MODE=%q: want %s, %s or %s", name, modePlain, modeTLS, modeProxyProtocol)
	}
}

func (m e2eMode) String() string { return m.name }

// selfSignedCert writes a self-signed P-256 certificate for 127.0.0.1
// and its key to certFile and keyFile, and returns a pool trusting it.
func selfSignedCert(certFile, keyFile string) (*x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "wsedge end-to-end tests"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool, nil
}

// serveConfig returns cfg, a whole config file for `wsedge serve`, with
// what the mode needs: in tls mode a [tls] table naming the mode's
// certificate, unless cfg terminates TLS itself with its own; in
// proxy-protocol mode proxy_protocol = true and balancerNet among
// affinity.trusted_proxies, merged into what cfg says of either (TOML
// refuses a key or a table given twice).
func (m e2eMode) serveConfig(cfg string) string {
	var (
		proxyProtocolKey = regexp.MustCompile(`(?m)^[ \t]*proxy_protocol[ \t]*=`)
		tlsTable         = regexp.MustCompile(`(?m)^[ \t]*\[[ \t]*tls[ \t]*\]`)
		affinityTable    = regexp.MustCompile(`(?m)^[ \t]*\[[ \t]*affinity[ \t]*\][ \t]*\n`)
		affinityDotted   = regexp.MustCompile(`(?m)^[ \t]*affinity\.`)
		trustedList      = regexp.MustCompile(`(?m)^([ \t]*(?:affinity\.)?trusted_proxies[ \t]*=[ \t]*\[)`)
	)
	if m.proxyHeader {
		if !proxyProtocolKey.MatchString(cfg) {
			cfg = "proxy_protocol = true\n" + cfg // top-level keys come before any table
		}
		switch trusted := fmt.Sprintf("%q", balancerNet); {
		case trustedList.MatchString(cfg):
			cfg = trustedList.ReplaceAllString(cfg, "${1}"+trusted+", ")
		case affinityTable.MatchString(cfg):
			loc := affinityTable.FindStringIndex(cfg)
			cfg = cfg[:loc[1]] + "trusted_proxies = [" + trusted + "]\n" + cfg[loc[1]:]
		case affinityDotted.MatchString(cfg):
			cfg = "affinity.trusted_proxies = [" + trusted + "]\n" + cfg
		default:
			cfg = strings.TrimSuffix(cfg, "\n") + "\n\n[affinity]\ntrusted_proxies = [" + trusted + "]\n"
		}
	}
	if m.certFile != "" && !tlsTable.MatchString(cfg) {
		cfg = strings.TrimSuffix(cfg, "\n") + fmt.Sprintf("\n\n[tls]\ncert = %q\nkey = %q\n", m.certFile, m.keyFile)
	}
	return cfg
}

// dial connects to a client listener at addr as the client from (the
// zero Addr: 127.0.0.1, as the kernel picks it for loopback). In
// proxy-protocol mode the connection comes from the balancer and carries
// a PROXY v1 header naming from, with the connection's own source port,
// before anything else. It does no TLS: see (*proc).dialRaw.
func (m e2eMode) dial(ctx context.Context, addr string, from netip.Addr) (net.Conn, error) {
	if !m.proxyHeader {
		var nd net.Dialer
		if from.IsValid() {
			nd.LocalAddr = &net.TCPAddr{IP: from.AsSlice()}
		}
		return nd.DialContext(ctx, "tcp", addr)
	}
	client := cmp.Or(from, netip.AddrFrom4([4]byte{127, 0, 0, 1}))
	nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: balancerFor(client).AsSlice()}, Control: bindNoPort}
	conn, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	src := &net.TCPAddr{IP: client.AsSlice(), Port: conn.LocalAddr().(*net.TCPAddr).Port}
	if _, err := proxyproto.HeaderProxyFromAddrs(1, src, conn.RemoteAddr()).WriteTo(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("PROXY header to %s: %w", addr, err)
	}
	return conn, nil
}

// balancerFor is the balancer address the connections of client come
// from: 127.255.c.d for client a.b.c.d, so that clients that a test
// spreads over many source addresses, for ports, stay spread.
func balancerFor(client netip.Addr) netip.Addr {
	if !client.Is4() {
		return netip.AddrFrom4([4]byte{127, 255, 0, 1})
	}
	a := client.As4()
	return netip.AddrFrom4([4]byte{127, 255, a[2], a[3]})
}

// bindNoPort sets IP_BIND_ADDRESS_NO_PORT, so that binding the balancer's
// address leaves the choice of port to connect, which may reuse one
// towards different destinations, as for a socket that binds nothing.
func bindNoPort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	})
	return cmp.Or(err, serr)
}

// tlsConfig is a client config trusting the mode's certificate; nil
// outside tls mode. Each call returns a new one, for the caller to change.
func (m e2eMode) tlsConfig() *tls.Config {
	if m.roots == nil {
		return nil
	}
	return &tls.Config{RootCAs: m.roots}
}

// netDialContext is a dial function for the clients of the mode:
// m.dial from the default source address.
func (m e2eMode) netDialContext(ctx context.Context, _, addr string) (net.Conn, error) {
	return m.dial(ctx, addr, netip.Addr{})
}

// transport returns a new http.Transport that reaches client listeners as
// the mode does: through the balancer, and trusting the mode's
// certificate for https:// URLs.
func (m e2eMode) transport() *http.Transport {
	return &http.Transport{DialContext: m.netDialContext, TLSClientConfig: m.tlsConfig()}
}

// namesBalancer reports whether a comma-separated list of addresses, an
// X-Forwarded-For, names an address of the balancer.
func namesBalancer(list string) bool {
	for item := range strings.SplitSeq(list, ",") {
		if a, err := netip.ParseAddr(strings.TrimSpace(item)); err == nil && netip.MustParsePrefix(balancerNet).Contains(a) {
			return true
		}
	}
	return false
}

// listening records what p's "listening" log line says: where it listens,
// and whether its client listener terminates TLS.
func (p *proc) listening(t *testing.T, line string) {
	t.Helper()
	var fields struct {
		Listen, Admin string
		TLS           bool
	}
	if err := json.Unmarshal([]byte(line), &fields); err != nil {
		t.Fatalf("listening line %q: %v", line, err)
	}
	p.listen, p.admin, p.tls = fields.Listen, fields.Admin, fields.TLS
}

// wsURL is the WebSocket URL of path on p's client listener.
func (p *proc) wsURL(path string) string {
	if p.tls {
		return "wss://" + p.listen + path
	}
	return "ws://" + p.listen + path
}

// httpURL is the URL of path on p's client listener.
func (p *proc) httpURL(path string) string {
	if p.tls {
		return "https://" + p.listen + path
	}
	return "http://" + p.listen + path
}

// scheme is what the backend is told the client used (X-Forwarded-Proto).
func (p *proc) scheme() string {
	if p.tls {
		return "https"
	}
	return "http"
}

// wsDialer returns d set up to reach p as the mode connects, for
// p.wsURL: through the balancer, and trusting the mode's certificate.
// What d sets itself (its own NetDialContext or TLSClientConfig) stays.
func (p *proc) wsDialer(d websocket.Dialer) *websocket.Dialer {
	if d.NetDialContext == nil && e2e.proxyHeader {
		d.NetDialContext = e2e.netDialContext
	}
	if d.TLSClientConfig == nil && p.tls {
		d.TLSClientConfig = e2e.tlsConfig()
	}
	return &d
}

// gobwasDialer is wsDialer for a frame-level client (gobwas/ws).
func (p *proc) gobwasDialer(d ws.Dialer) ws.Dialer {
	if d.NetDial == nil && e2e.proxyHeader {
		d.NetDial = e2e.netDialContext
	}
	if d.TLSConfig == nil && p.tls {
		d.TLSConfig = e2e.tlsConfig()
	}
	return d
}

// dialRaw connects to p's client listener as the client from (zero:
// 127.0.0.1), for a test that writes HTTP by hand: through the balancer,
// and over TLS when p terminates it. The TLS handshake happens on the
// first read or write, as a plain connection's first bytes would go, so a
// client that never writes sends nothing but the mode's PROXY header.
func (p *proc) dialRaw(ctx context.Context, from netip.Addr) (net.Conn, error) {
	conn, err := e2e.dial(ctx, p.listen, from)
	if err != nil || !p.tls {
		return conn, err
	}
	cfg := cmp.Or(e2e.tlsConfig(), &tls.Config{})
	cfg.ServerName, _, _ = net.SplitHostPort(p.listen)
	return tls.Client(conn, cfg), nil
}

// httpClient is a client for plain requests to p's client listener, as
// the mode connects. Its idle connections are closed at cleanup.
func (p *proc) httpClient(t *testing.T) *http.Client {
	tr := e2e.transport()
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// proxyGet sends a GET for path to p's client listener with header h, on
// a connection of its own.
func proxyGet(t *testing.T, p *proc, path string, h http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, p.httpURL(path), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h
	req.Close = true
	res, err := p.httpClient(t).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", req.URL, err)
	}
	return res
}

// benchFlags are the flags with which `wsedge bench` reaches p as the
// mode connects: the target, the certificate to trust, and the PROXY
// header, sent from the balancer's network.
func (p *proc) benchFlags() []string {
	flags := []string{"--target", p.wsURL("/")}
	if p.tls {
		flags = append(flags, "--ca", e2e.certFile)
	}
	if e2e.proxyHeader {
		flags = append(flags, "--proxy-protocol", "v1", "--sources", balancerSources)
	}
	return flags
}

// What a mode adds to a test's config merges with what the test says
// itself, and the result is a config the proxy accepts.
func TestModeConfigMerges(t *testing.T) {
	dir := t.TempDir()
	tlsMode := e2eMode{name: modeTLS, certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem")}
	var err error
	if tlsMode.roots, err = selfSignedCert(tlsMode.certFile, tlsMode.keyFile); err != nil {
		t.Fatal(err)
	}
	proxyMode := e2eMode{name: modeProxyProtocol, proxyHeader: true}
	backend := upstreamAddrs("127.0.0.1:9")
	tests := []struct {
		name        string
		give        string
		wantTrusted []string // besides balancerNet, in proxy-protocol mode
		ownTLS      bool
	}{
		{name: "nothing", give: backend},
		{name: "affinity table", give: "[affinity]\nkey = \"header\"\nheader = \"X-User\"\n" + backend},
		{name: "trusted proxies", give: "[affinity]\ntrusted_proxies = [\"127.0.0.1/32\"]\n[limits]\nmax_connections = 3\n" + backend, wantTrusted: []string{"127.0.0.1/32"}},
		{name: "trusted proxies, then a table", give: "[affinity]\ntrusted_proxies = [\"127.0.0.1/32\"]\n[websocket]\nping_interval = \"0s\"\n" + backend, wantTrusted: []string{"127.0.0.1/32"}},
		{name: "its own proxy protocol", give: "proxy_protocol = true\n[affinity]\ntrusted_proxies = [\"127.0.0.2/32\"]\n" + backend, wantTrusted: []string{"127.0.0.2/32"}},
		{name: "dotted affinity keys", give: "affinity.key = \"header\"\naffinity.header = \"X-User\"\n" + backend},
		{name: "ends in a table of keys", give: backend + "[discovery]\nbind = \"127.0.0.1:7946\"\nallow_plaintext_gossip = true"},
		{name: "its own TLS", give: "[tls]\ncert = \"/own/cert.pem\"\nkey = \"/own/key.pem\"\n" + backend, ownTLS: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			give := "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n" + tt.give
			for _, m := range []e2eMode{{name: modePlain}, tlsMode, proxyMode} {
				got := m.serveConfig(give)
				f, err := config.Parse("proxy.toml", []byte(got))
				if err != nil {
					t.Fatalf("%s mode: %v\n%s", m, err, got)
				}
				if m.name == modePlain && got != give {
					t.Errorf("plain mode changed the config:\n%s", got)
				}
				var trusted []string
				for _, pr := range f.Affinity.TrustedProxies {
					trusted = append(trusted, pr.String())
				}
				if want := slices.Concat([]string{balancerNet}, tt.wantTrusted); m.proxyHeader && (!f.ProxyProtocol || !slices.Equal(trusted, want)) {
					t.Errorf("%s mode: proxy_protocol %v, trusted_proxies %v; want true and %v", m, f.ProxyProtocol, trusted, want)
				}
				wantCert := m.certFile
				if tt.ownTLS {
					wantCert = "/own/cert.pem"
				}
				if f.TLS.Cert != wantCert {
					t.Errorf("%s mode: tls.cert %q, want %q", m, f.TLS.Cert, wantCert)
				}
			}
		})
	}
}
