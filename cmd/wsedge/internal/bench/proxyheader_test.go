package bench

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/pires/go-proxyproto"
)

func TestParseProxyVersion(t *testing.T) {
	tests := []struct {
		give    string
		want    ProxyVersion
		wantErr bool
	}{
		{give: "", want: 0},
		{give: "none", want: 0},
		{give: "v1", want: 1},
		{give: "V2", want: 2},
		{give: "1", want: 1},
		{give: "2", want: 2},
		{give: "v3", wantErr: true},
		{give: "yes", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseProxyVersion(tt.give)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseProxyVersion(%q) = %v, %v; want %v (error: %v)", tt.give, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestProxyHeaderParsesBack(t *testing.T) {
	v4src := &net.TCPAddr{IP: net.IPv4(127, 0, 3, 2), Port: 40000}
	v4dst := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8083}
	v6src := &net.TCPAddr{IP: net.IPv6loopback, Port: 40001}
	v6dst := &net.TCPAddr{IP: net.IPv6loopback, Port: 8083}
	tests := []struct {
		name      string
		v         ProxyVersion
		src, dst  *net.TCPAddr
		wantProto proxyproto.AddressFamilyAndProtocol
		wantV1    string // the exact v1 header
	}{
		{"v1 ipv4", 1, v4src, v4dst, proxyproto.TCPv4, "PROXY TCP4 127.0.3.2 127.0.0.1 40000 8083\r\n"},
		{"v1 ipv6", 1, v6src, v6dst, proxyproto.TCPv6, "PROXY TCP6 ::1 ::1 40001 8083\r\n"},
		{"v2 ipv4", 2, v4src, v4dst, proxyproto.TCPv4, ""},
		{"v2 ipv6", 2, v6src, v6dst, proxyproto.TCPv6, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := proxyHeader(tt.v, tt.src, tt.dst)
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantV1 != "" && string(b) != tt.wantV1 {
				t.Errorf("header %q, want %q", b, tt.wantV1)
			}
			if tt.v == 2 && !bytes.HasPrefix(b, proxyproto.SIGV2) {
				t.Errorf("header % x lacks the v2 signature", b)
			}
			// The header and nothing more: the upgrade request follows it.
			br := bufio.NewReader(io.MultiReader(bytes.NewReader(b), strings.NewReader("GET / HTTP/1.1\r\n")))
			h, err := proxyproto.Read(br)
			if err != nil {
				t.Fatal(err)
			}
			if h.Version != byte(tt.v) || h.Command != proxyproto.PROXY || h.TransportProtocol != tt.wantProto {
				t.Errorf("read back version %d, command %v, protocol %v; want %d, PROXY, %v",
					h.Version, h.Command, h.TransportProtocol, tt.v, tt.wantProto)
			}
			src, dst, ok := h.TCPAddrs()
			if !ok || !src.IP.Equal(tt.src.IP) || src.Port != tt.src.Port || !dst.IP.Equal(tt.dst.IP) || dst.Port != tt.dst.Port {
				t.Errorf("read back %v -> %v, want %v -> %v", src, dst, tt.src, tt.dst)
			}
			if rest, _ := br.ReadString('\n'); rest != "GET / HTTP/1.1\r\n" {
				t.Errorf("after the header: %q, want the request line", rest)
			}
		})
	}
}

func TestProxyHeaderRefuses(t *testing.T) {
	tcp := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 1}
	udp := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 1}
	for _, tt := range []struct {
		name     string
		v        ProxyVersion
		src, dst net.Addr
	}{
		{"no version", 0, tcp, tcp},
		{"v3", 3, tcp, tcp},
		{"udp", 1, udp, udp},
		{"mixed", 2, tcp, udp},
	} {
		if b, err := proxyHeader(tt.v, tt.src, tt.dst); err == nil {
			t.Errorf("%s: header %q, want an error", tt.name, b)
		}
	}
	if _, err := newDialer(Targets{mustTarget(t, "ws://127.0.0.1:1/")}, nil, Transport{ProxyHeader: 3}, 0); err == nil {
		t.Error("newDialer took PROXY protocol v3")
	}
}

// startProxyProtocolServer accepts connections that open with a PROXY
// protocol header, then TLS when cert is given, then a WebSocket upgrade;
// it sends each header it read on the returned channel and holds the
// connection until the client closes it.
func startProxyProtocolServer(t *testing.T, cert *tls.Certificate) (net.Addr, <-chan *proxyproto.Header) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	headers := make(chan *proxyproto.Header, 16)
	var wg sync.WaitGroup
	serve := func(raw net.Conn) {
		defer raw.Close()
		_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(raw)
		h, err := proxyproto.Read(br)
		if err != nil {
			t.Errorf("server: %v", err)
			return
		}
		headers <- h
		var conn net.Conn = &bufferedConn{Conn: raw, r: br}
		if cert != nil {
			conn = tls.Server(conn, &tls.Config{Certificates: []tls.Certificate{*cert}})
		}
		if _, err := ws.Upgrade(conn); err != nil {
			t.Errorf("server: upgrade: %v", err)
			return
		}
		_, _ = io.Copy(io.Discard, conn)
	}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr(), headers
}

// bufferedConn reads what a bufio.Reader over the connection holds first.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// The header names the connection's own source, as bound from Sources, and
// its destination, and comes before TLS when there is TLS.
func TestDialSendsProxyHeader(t *testing.T) {
	cert, caFile := selfSigned(t)
	tests := []struct {
		name   string
		v      ProxyVersion
		scheme string
	}{
		{"v1", 1, "ws"},
		{"v2", 2, "ws"},
		{"v1 then tls", 1, "wss"},
		{"v2 then tls", 2, "wss"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var serverCert *tls.Certificate
			tr := Transport{ProxyHeader: tt.v}
			if tt.scheme == "wss" {
				serverCert, tr.TLS = &cert, mustClientTLS(t, false, caFile, "")
			}
			addr, headers := startProxyProtocolServer(t, serverCert)
			tg := mustTarget(t, tt.scheme+"://"+addr.String()+"/")
			d, err := newDialer(Targets{tg}, testSources(t), tr, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 2 { // sources alternate between two /24s
				conn, _, err := d.dial(t.Context(), i, 64)
				if err != nil {
					t.Fatal(err)
				}
				h := <-headers
				src, dst, ok := h.TCPAddrs()
				if !ok || h.Version != byte(tt.v) || src.String() != conn.LocalAddr().String() || dst.String() != conn.RemoteAddr().String() {
					t.Errorf("header v%d %v -> %v, want v%d %v -> %v", h.Version, h.SourceAddr, h.DestinationAddr,
						tt.v, conn.LocalAddr(), conn.RemoteAddr())
				}
				if want := d.sources.At(i).String(); !strings.HasPrefix(src.String(), want+":") {
					t.Errorf("header source %v, want the bound source %s", src, want)
				}
				_, isTLS := conn.(*tls.Conn)
				if isTLS != (tt.scheme == "wss") {
					t.Errorf("conn is TLS: %v, want %v", isTLS, tt.scheme == "wss")
				}
				conn.Close()
			}
		})
	}
}
