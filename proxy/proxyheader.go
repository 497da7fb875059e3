package proxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"

	"github.com/pires/go-proxyproto"
)

// The PROXY protocol's signatures (haproxy's proxy-protocol.txt, sections
// 2.1 and 2.2), as go-proxyproto reads them.
var (
	proxyV1Sig = []byte("PROXY")
	proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// maxProxyV1 is the longest version 1 header, CRLF included.
const maxProxyV1 = 107

var errProxyHeaderTooLong = errors.New("PROXY protocol header too long")

// proxyHeaderEnd says how long the PROXY protocol header at the start of
// b is: n > 0 once b holds all of it, 0 while more bytes are needed, and
// -1 when b starts with something else: a connection that sent none. Only
// the framing is read here; what the header says is go-proxyproto's to
// parse (readProxyHeader).
func proxyHeaderEnd(b []byte) (int, error) {
	switch {
	case startsLike(b, proxyV1Sig):
		if len(b) < len(proxyV1Sig) {
			return 0, nil
		}
		i := bytes.IndexByte(b[:min(len(b), maxProxyV1)], '\n')
		switch {
		case i >= 0:
			return i + 1, nil
		case len(b) >= maxProxyV1:
			return 0, errProxyHeaderTooLong
		}
		return 0, nil
	case startsLike(b, proxyV2Sig):
		if len(b) < 16 {
			return 0, nil
		}
		n := 16 + int(binary.BigEndian.Uint16(b[14:16]))
		if len(b) < n {
			return 0, nil
		}
		return n, nil
	}
	return -1, nil
}

// startsLike reports whether b and sig agree on their common length: b
// starts with sig, or is a start of it.
func startsLike(b, sig []byte) bool {
	k := min(len(b), len(sig))
	return k > 0 && bytes.Equal(b[:k], sig[:k])
}

// readProxyHeader parses the header b, as long as proxyHeaderEnd said,
// with go-proxyproto. It returns the client address the header names, or
// ok false for one that names none (LOCAL, a health check of the balancer;
// UNSPEC; a Unix socket), when the connecting peer stays the client.
func readProxyHeader(b []byte) (client netip.AddrPort, ok bool, err error) {
	h, err := proxyproto.Read(bufio.NewReaderSize(bytes.NewReader(b), max(len(b), 16)))
	if err != nil {
		return netip.AddrPort{}, false, err
	}
	if h.Command.IsLocal() {
		return netip.AddrPort{}, false, nil
	}
	var ap netip.AddrPort
	switch src := h.SourceAddr.(type) {
	case *net.TCPAddr:
		ap = src.AddrPort()
	case *net.UDPAddr: // an odd thing to say of a TCP connection, but an address
		ap = src.AddrPort()
	default:
		return netip.AddrPort{}, false, nil
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ap.IsValid(), nil
}
