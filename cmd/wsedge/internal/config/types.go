package config

import (
	"crypto/tls"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// parseInt reads a TOML integer the parser has already checked: decimal with
// underscores, or 0x, 0o, 0b prefixed. Go's base-0 syntax is the same, except
// that Go would read a leading zero as octal; TOML forbids leading zeros, and
// the TOML check in Parse reports them.
func parseInt(raw []byte) (int64, error) {
	return strconv.ParseInt(string(raw), 0, strconv.IntSize)
}

// parseSize reads a size string: a number of bytes, optionally followed by a
// unit, such as "512", "512B", "16KiB" or "1MiB". Binary units (KiB, MiB,
// GiB) are powers of 1024; decimal ones (kB or KB, MB, GB) are powers of
// 1000, as IEC 80000-13 defines them, so "1MB" is 1000000 bytes, not 1048576.
// Fractions are refused so that a size is always an exact number of bytes.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
		{"kB", 1e3}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9},
		{"B", 1}, // last: every other suffix ends in B too
	}
	num, mult := s, int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	if num == "" || strings.Trim(num, "0123456789") != "" {
		return 0, fmt.Errorf("invalid size %q (want bytes or e.g. \"1MiB\", \"16KiB\", \"512B\")", s)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q too large", s)
	}
	return n * mult, nil
}

// parsePrefix reads a CIDR such as "10.0.0.0/8". A bare address is a network
// of one, /32 or /128, and host bits are cleared ("10.1.2.3/8" is
// 10.0.0.0/8), since what matters is which clients match.
func parsePrefix(s string) (netip.Prefix, error) {
	bad := fmt.Errorf("invalid CIDR %q (want e.g. \"10.0.0.0/8\" or \"192.0.2.1\")", s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, bad
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, bad
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// checkHostPort checks a host:port address. The port is a number, 1..65535;
// the host is an IP address (IPv6 in brackets) or a DNS name. For a
// listener the host may be empty, meaning every local address, and the port
// may be 0, meaning any free port (the proxy logs the one it got).
func checkHostPort(s string, listener bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("invalid address %q (want host:port, e.g. \"127.0.0.1:9001\")", s)
	}
	lowest := 1
	if listener {
		lowest = 0
	}
	if n, err := strconv.Atoi(port); err != nil || strings.Trim(port, "0123456789") != "" || n < lowest || n > 65535 {
		return fmt.Errorf("invalid port %q in %q (want %d..65535)", port, s, lowest)
	}
	if host == "" {
		if listener {
			return nil
		}
		return fmt.Errorf("missing host in %q (want host:port, e.g. \"127.0.0.1:9001\")", s)
	}
	if strings.HasPrefix(s, "[") {
		if a, err := netip.ParseAddr(host); err != nil || !a.Is6() {
			return fmt.Errorf("invalid IPv6 address %q in %q", host, s)
		}
		return nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if !isHostname(host) {
		return fmt.Errorf("invalid host %q in %q (want an IP address or a DNS name)", host, s)
	}
	return nil
}

// ipHost reports whether the host of a host:port address is an IP
// address.
func ipHost(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	_, err = netip.ParseAddr(host)
	return err == nil
}

// loopbackHost reports whether the host of a host:port address is a
// loopback address or "localhost": reachable from this host alone. An
// empty host, every address, is not.
func loopbackHost(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// isHostname reports whether s is a plausible DNS name (RFC 1123), allowing
// the underscores that container and service names often carry. A name whose
// last label is all digits was meant as an IPv4 address and is refused, so
// "10.0.0.300" is not looked up in DNS.
func isHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return strings.Trim(labels[len(labels)-1], "0123456789") != ""
}

// isToken reports whether s is an HTTP token (RFC 9110 section 5.6.2), the
// grammar of both header names and cookie names (RFC 6265 section 4.1.1).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// checkOrigin checks an allowed_origins entry: exactly what a browser sends
// in the Origin header (RFC 6454 section 7), scheme://host[:port] with no
// path, so that an entry with a trailing slash cannot silently match nothing.
func checkOrigin(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" || u.Opaque != "" || u.User != nil ||
		u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return fmt.Errorf("invalid origin %q (want scheme://host[:port], e.g. \"https://example.com\"; an empty list allows any)", s)
	}
	return nil
}

// CurveID returns the key exchange tls.curves names name, by its name in
// the TLS registry as Go spells it.
func CurveID(name string) (tls.CurveID, bool) {
	switch name {
	case "X25519MLKEM768":
		return tls.X25519MLKEM768, true
	case "SecP256r1MLKEM768":
		return tls.SecP256r1MLKEM768, true
	case "X25519":
		return tls.X25519, true
	case "P-256":
		return tls.CurveP256, true
	case "P-384":
		return tls.CurveP384, true
	case "P-521":
		return tls.CurveP521, true
	}
	return 0, false
}

// curveNames lists what CurveID takes, for messages.
const curveNames = `"X25519MLKEM768", "SecP256r1MLKEM768", "X25519", "P-256", "P-384" or "P-521"`
