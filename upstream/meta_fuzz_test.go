package upstream

import (
	"bytes"
	"net"
	"net/netip"
	"strconv"
	"testing"
)

// FuzzDecodeMeta: no input panics, and whatever decodeMeta accepts is
// something the ring can take: an input no longer than maxMetaSize, a
// backend's weight within 1..maxWeight and an address that parses, inside
// the allowed networks when there are some, and a value that encodes to
// metadata decodeMeta reads back the same. The corpus in
// testdata/fuzz/FuzzDecodeMeta holds the cases that matter: a weight of a
// billion, negative weights, huge JSON, addresses with spaces, newlines and
// control bytes, unknown roles, IPv6, DNS names.
func FuzzDecodeMeta(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte, restrict bool) {
		var allowed []netip.Prefix
		if restrict {
			allowed = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
		}
		m, capped, err := decodeMeta(b, allowed)
		if err != nil {
			return
		}
		if len(b) > maxMetaSize {
			t.Fatalf("accepted %d bytes, over %d", len(b), maxMetaSize)
		}
		if m.Version != metaVersion || m.State != nodeAlive && m.State != nodeDraining {
			t.Fatalf("accepted %+v", m)
		}
		switch m.Role {
		case roleProxy:
			if m.Addr != "" || m.Weight != 0 || capped {
				t.Fatalf("a proxy with a backend: %+v", m)
			}
		case roleBackend:
			checkBackend(t, m, capped, allowed)
		default:
			t.Fatalf("accepted role %q", m.Role)
		}
		again, err := m.encode()
		if err != nil {
			t.Fatalf("%+v does not encode: %v", m, err)
		}
		m2, capped2, err := decodeMeta(again, allowed)
		if err != nil || m2 != m || capped2 {
			t.Fatalf("%+v encodes to %s, which reads as %+v, capped %v, %v", m, again, m2, capped2, err)
		}
	})
}

// checkBackend fails t unless m, a backend decodeMeta accepted, is one a
// proxy can put in its ring and dial.
func checkBackend(t *testing.T, m nodeMeta, capped bool, allowed []netip.Prefix) {
	t.Helper()
	if m.Weight < 1 || m.Weight > maxWeight || capped && m.Weight != maxWeight {
		t.Fatalf("accepted weight %d (capped %v)", m.Weight, capped)
	}
	host, port, err := net.SplitHostPort(m.Addr)
	if err != nil || host == "" {
		t.Fatalf("accepted address %q: %v", m.Addr, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		t.Fatalf("accepted address %q: port %q", m.Addr, port)
	}
	if i := bytes.IndexFunc([]byte(m.Addr), func(r rune) bool { return r <= ' ' || r >= 0x7f }); i >= 0 {
		t.Fatalf("accepted address %q: byte %d", m.Addr, i)
	}
	if len(allowed) == 0 {
		return
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		t.Fatalf("accepted name %q with allowed networks", m.Addr)
	}
	for _, p := range allowed {
		if p.Contains(ip.Unmap()) {
			return
		}
	}
	t.Fatalf("accepted %q, outside %v", m.Addr, allowed)
}
