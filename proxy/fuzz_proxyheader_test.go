package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/wsedge/wsedge/affinity"
)

// FuzzProxyHeader puts an arbitrary PROXY protocol header (v1 or v2) in
// front of a valid upgrade, on a listener that believes it, as a proxy
// behind a trusted load balancer runs: a header go-proxyproto reads is
// honoured (the backend is told the client address it carries, or the
// peer's for LOCAL and address-less headers), no header at all is plain
// traffic, and a broken one gets no upgrade; the backend is never told a
// client address that is not an IP address (a Unix socket adds nothing to
// X-Forwarded-For).
func FuzzProxyHeader(f *testing.F) {
	for _, seed := range []string{
		"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n",
		"PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n",
		"PROXY UNKNOWN\r\n",
		"PROXY TCP4 203.0.113.7 192.0.2.1 99999 443\r\n",
		"PROXY TCP4 203.0.113",
		"",
	} {
		f.Add([]byte(seed))
	}
	for _, h := range []*proxyproto.Header{
		proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 1}, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 2}),
		proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("2001:db8::7"), Port: 1}, &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 2}),
		{Version: 2, Command: proxyproto.LOCAL},
	} {
		b, err := h.Format()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}

	hb := startHandshakeBackend(f)
	loopback := affinity.NewTrustedProxies([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})
	cfg := Config{HandshakeTimeout: 2 * time.Second, Trusted: loopback}
	fs := startFuzzServer(f, cfg, []string{hb.addr}, true, WithProxyProtocol(loopback))
	request := []byte("GET / HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + fuzzKey + "\r\n\r\n")

	f.Fuzz(func(t *testing.T, header []byte) {
		stream := append(bytes.Clone(header), request...)
		br := bufio.NewReader(bytes.NewReader(stream))
		h, readErr := proxyproto.Read(br)
		rest, _ := io.ReadAll(br)
		status, err := statusOf(fs.addr, stream)
		fs.settle(t, upgrades(status))
		if err != nil && !errors.Is(err, errNoAnswer) {
			t.Fatalf("header %q: %v", clip(header), err)
		}
		if status == http.StatusSwitchingProtocols {
			xff := hb.lastXFF()
			for _, a := range strings.Split(xff, ", ") {
				if _, perr := netip.ParseAddr(a); perr != nil && xff != "" {
					t.Fatalf("header %q: the backend was told X-Forwarded-For %q, not a list of IP addresses", clip(header), xff)
				}
			}
			if want, ok := proxiedClient(h); ok && xff != want {
				t.Fatalf("header %q: the backend was told X-Forwarded-For %q, want %s", clip(header), xff, want)
			}
		}
		switch {
		case readErr != nil && !errors.Is(readErr, proxyproto.ErrNoProxyProtocol):
			if status == http.StatusSwitchingProtocols {
				t.Fatalf("header %q (%v) was upgraded", clip(header), readErr)
			}
		case !bytes.Equal(rest, request):
			// The header is followed by bytes of its own: whatever they make
			// of the request, the answer is a status or a hang-up.
			if err == nil && !handshakeStatuses[status] {
				t.Fatalf("header %q: status %d", clip(header), status)
			}
		case status != http.StatusSwitchingProtocols:
			t.Fatalf("header %q (read as %v): status %d, err %v; want the upgrade", clip(header), h, status, err)
		}
	})
}

// proxiedClient is the X-Forwarded-For the backend must be told for a
// PROXY header h: the client address it carries, or the peer's own for no
// header, LOCAL and UNKNOWN; false when h names something that is not an
// IP address (a Unix socket), which the product's listener replaces by
// the peer and this one leaves out.
func proxiedClient(h *proxyproto.Header) (string, bool) {
	if h == nil || h.Command.IsLocal() || h.SourceAddr == nil {
		return "127.0.0.1", true
	}
	ap, err := netip.ParseAddrPort(h.SourceAddr.String())
	if err != nil {
		return "", false
	}
	return ap.Addr().Unmap().String(), true
}
