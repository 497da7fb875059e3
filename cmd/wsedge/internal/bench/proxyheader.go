package bench

import (
	"fmt"
	"net"
	"strings"

	"github.com/pires/go-proxyproto"
)

// ProxyVersion is the PROXY protocol version a client connection opens
// with: 0 for none, 1 for the text header, 2 for the binary one.
type ProxyVersion byte

// ParseProxyVersion parses "v1", "v2" (or "1", "2"), and "" or "none" for
// no header.
func ParseProxyVersion(s string) (ProxyVersion, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "none":
		return 0, nil
	case "v1", "1":
		return 1, nil
	case "v2", "2":
		return 2, nil
	}
	return 0, fmt.Errorf("proxy protocol %q: want v1 or v2", s)
}

func (v ProxyVersion) String() string {
	if v == 0 {
		return "none"
	}
	return fmt.Sprintf("v%d", byte(v))
}

// proxyHeader returns the PROXY protocol header of version v that a
// balancer in front of the proxy would send for a client connecting from
// src to dst: "PROXY TCP4 <src> <dst> <sport> <dport>\r\n" in v1, its
// binary form in v2. Both must be TCP addresses.
func proxyHeader(v ProxyVersion, src, dst net.Addr) ([]byte, error) {
	if v < 1 || v > 2 {
		return nil, fmt.Errorf("proxy protocol %v: want v1 or v2", v)
	}
	h := proxyproto.HeaderProxyFromAddrs(byte(v), src, dst)
	if h.TransportProtocol != proxyproto.TCPv4 && h.TransportProtocol != proxyproto.TCPv6 {
		return nil, fmt.Errorf("proxy protocol: %v to %v is not a TCP connection", src, dst)
	}
	return h.Format()
}
