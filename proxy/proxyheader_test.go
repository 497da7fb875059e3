package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"

	"github.com/pires/go-proxyproto"
)

// FuzzProxyHeaderFraming holds the loop's framing of PROXY protocol
// headers against go-proxyproto's reader: where proxyHeaderEnd says a
// header ends, go-proxyproto's reading of the same bytes ends there too;
// where it says there is none, go-proxyproto finds none; where it wants
// more bytes, go-proxyproto cannot read a header from what there is; and
// the client address readProxyHeader returns is the one go-proxyproto
// reads.
func FuzzProxyHeaderFraming(f *testing.F) {
	for _, s := range []string{
		"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\nGET / HTTP/1.1\r\n",
		"PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n",
		"PROXY UNKNOWN\r\n",
		"PROXY TCP4 203.0.113.7 192.0.2.1 99999 443\r\n",
		"PROXY TCP4 203.0.113",
		"PRI * HTTP/2.0\r\n",
		"GET / HTTP/1.1\r\n",
		"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
	} {
		f.Add([]byte(s))
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
		f.Add(append(b, "GET / HTTP/1.1\r\n"...))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		n, err := proxyHeaderEnd(in)
		br := bufio.NewReaderSize(bytes.NewReader(in), 64<<10+32)
		h, rerr := proxyproto.Read(br)
		consumed := len(in) - br.Buffered()
		switch {
		case err != nil:
			if rerr == nil {
				t.Fatalf("framing refused (%v) what go-proxyproto read: %q", err, in)
			}
		case n < 0:
			if !errors.Is(rerr, proxyproto.ErrNoProxyProtocol) {
				t.Fatalf("no header here, but go-proxyproto says %v: %q", rerr, in)
			}
		case n == 0:
			if rerr == nil {
				t.Fatalf("framing wants more, but go-proxyproto read a header of %d bytes: %q", consumed, in)
			}
		case rerr == nil:
			if consumed != n {
				t.Fatalf("header ends at %d here and at %d for go-proxyproto: %q", n, consumed, in)
			}
			got, ok, perr := readProxyHeader(in[:n])
			if perr != nil {
				t.Fatalf("readProxyHeader: %v", perr)
			}
			want, wantOK := proxiedAddr(h)
			if ok != wantOK || ok && got != want {
				t.Fatalf("client %v %v, go-proxyproto's %v %v: %q", got, ok, want, wantOK, in)
			}
		default:
			// A whole header go-proxyproto refuses: readProxyHeader must too.
			if _, _, perr := readProxyHeader(in[:n]); perr == nil && !errors.Is(rerr, io.ErrUnexpectedEOF) {
				t.Fatalf("readProxyHeader accepted what go-proxyproto refused (%v): %q", rerr, in)
			}
		}
	})
}

// proxiedAddr is the client address go-proxyproto's header names, if any.
func proxiedAddr(h *proxyproto.Header) (netip.AddrPort, bool) {
	if h.Command.IsLocal() {
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(h.SourceAddr.String())
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ap.IsValid()
}
