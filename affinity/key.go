package affinity

import (
	"net/netip"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// HashString returns the ring position of a string key, such as a session
// header. It allocates nothing.
func HashString(s string) uint64 {
	return xxhash.Sum64String(s)
}

// HashBytes returns the ring position of a byte key; it equals
// HashString(string(b)) and allocates nothing, so a header value borrowed
// from a read buffer can be hashed in place.
func HashBytes(b []byte) uint64 {
	return xxhash.Sum64(b)
}

// HashAddr returns the ring position of a client IP address. An IPv4
// address and its IPv4-mapped IPv6 form hash the same, and the zone is
// ignored, because a dual-stack listener reports the same client either
// way and the client must not change backend with it. The zero Addr hashes
// like an empty key. It allocates nothing.
func HashAddr(a netip.Addr) uint64 {
	a = a.Unmap()
	switch {
	case a.Is4():
		b := a.As4()
		return xxhash.Sum64(b[:])
	case a.Is6():
		b := a.As16()
		return xxhash.Sum64(b[:])
	default:
		return xxhash.Sum64(nil)
	}
}

// TrustedProxies is the set of networks whose forwarding headers are
// believed. The zero value trusts nobody. It is immutable and safe for
// concurrent use.
type TrustedProxies struct {
	prefixes []netip.Prefix // masked, IPv4-mapped prefixes turned into IPv4
}

// NewTrustedProxies returns the set of the given networks. Invalid prefixes
// are dropped (configuration validation reports them; this package cannot
// log). IPv4-mapped IPv6 prefixes such as ::ffff:10.0.0.0/104 are stored as
// their IPv4 equivalent, so either spelling trusts the same peers.
func NewTrustedProxies(prefixes []netip.Prefix) TrustedProxies {
	ps := make([]netip.Prefix, 0, len(prefixes))
	for _, p := range prefixes {
		if !p.IsValid() {
			continue
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		ps = append(ps, p.Masked())
	}
	return TrustedProxies{prefixes: ps}
}

// Contains reports whether a is a trusted proxy. IPv4-mapped addresses
// match IPv4 networks and zones are ignored.
func (t TrustedProxies) Contains(a netip.Addr) bool {
	a = normalizeAddr(a)
	for _, p := range t.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// normalizeAddr returns the form of a used as a key: IPv4-mapped IPv6
// becomes IPv4 and the zone is dropped. A zone names an interface of
// whichever host wrote it, so it says nothing about who the client is.
func normalizeAddr(a netip.Addr) netip.Addr {
	return a.Unmap().WithZone("")
}

// ClientIP returns the address to key a request on. peer is the TCP peer;
// xForwardedFor and forwarded are every line of the X-Forwarded-For and
// Forwarded (RFC 7239) headers, in the order received. The result is
// normalized (IPv4-mapped becomes IPv4, no zone) so it can also serve as a
// map key for per-IP limits. It allocates nothing.
//
// When peer is not trusted the headers are ignored and peer is returned:
// a client connecting directly can never choose its own key. When peer is
// trusted, the X-Forwarded-For entries (all lines joined by commas) are
// walked from the right, skipping empty list elements, and the first
// address that is not itself trusted is returned. Only when no line of
// X-Forwarded-For has an entry are the for= parameters of Forwarded walked
// the same way. Two cases end the walk early:
//
//   - An entry that cannot be parsed as an address (garbage, a hostname,
//     a bad port), or a Forwarded element whose for= is missing, repeated,
//     "unknown" or an obfuscated identifier: the walk stops and returns the
//     last trusted hop seen, the one that wrote the bad entry (peer if it is
//     the rightmost). Anything further left was written by a party no trusted
//     proxy vouched for, so it is never believed.
//   - Every hop is trusted: the leftmost entry is returned, since the
//     request originated inside the trusted networks.
//
// Entries may carry ports ("192.0.2.1:1234", "[2001:db8::1]:443") and IPv6
// zones ("fe80::1%eth0"); both are dropped.
func (t TrustedProxies) ClientIP(peer netip.Addr, xForwardedFor, forwarded []string) netip.Addr {
	peer = normalizeAddr(peer)
	if !t.Contains(peer) {
		return peer
	}
	var w hopWalk
	for _, line := range xForwardedFor {
		t.walkXFF(&w, line)
	}
	if !w.seen {
		for _, line := range forwarded {
			t.walkForwarded(&w, line)
		}
	}
	if !w.found {
		return peer
	}
	return w.client
}

// hopWalk finds the client in a chain of hops in one left-to-right pass,
// which needs no storage for the chain and handles quoting naturally. The
// answer of the right-to-left walk described on ClientIP is the rightmost
// hop that is untrusted or bad: an untrusted hop is the client itself; a
// bad hop hands the answer to the hop right of it (peer if none). Hops left
// of that one never matter, and scanning forward, each untrusted or bad hop
// simply overrides what came before it. The price is parsing hops the
// right-to-left walk would never reach: linear in the header's length,
// which the proxy's header size limit bounds.
type hopWalk struct {
	client  netip.Addr
	found   bool // client is the answer if the chain ended here
	pending bool // the next trusted hop becomes the answer (after a bad hop)
	seen    bool // at least one non-empty entry
}

// hop records the next entry of the chain, left to right.
func (w *hopWalk) hop(t TrustedProxies, a netip.Addr, ok bool) {
	first := !w.seen
	w.seen = true
	switch {
	case !ok:
		w.client, w.found, w.pending = netip.Addr{}, false, true
	case !t.Contains(a):
		w.client, w.found, w.pending = a, true, false
	case first || w.pending:
		// The leftmost hop, or the one that wrote a bad entry: it
		// answers unless an untrusted or bad hop follows.
		w.client, w.found, w.pending = a, true, false
	}
}

// walkXFF feeds the comma-separated entries of one X-Forwarded-For line.
func (t TrustedProxies) walkXFF(w *hopWalk, line string) {
	for len(line) > 0 {
		var entry string
		entry, line, _ = strings.Cut(line, ",")
		entry = trimOWS(entry)
		if entry == "" {
			continue // RFC 9110 §5.6.1: empty list elements are ignored
		}
		a, ok := parseNode(entry)
		w.hop(t, a, ok)
	}
}

// walkForwarded feeds the for= value of each element of one Forwarded line
// (RFC 7239 §4): elements are separated by commas, pairs within an element
// by semicolons, and values are tokens or quoted strings that may hide
// either separator.
func (t TrustedProxies) walkForwarded(w *hopWalk, line string) {
	for len(line) > 0 {
		var elem string
		elem, line = cutElement(line)
		if trimOWS(elem) == "" {
			continue
		}
		v, ok := forValue(elem)
		if !ok {
			w.hop(t, netip.Addr{}, false)
			continue
		}
		a, ok := parseNode(v)
		w.hop(t, a, ok)
	}
}

// cutElement splits s at the first comma outside a quoted string.
func cutElement(s string) (elem, rest string) {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++ // quoted-pair: the next byte is literal
		case c == '"':
			quoted = !quoted
		case !quoted && c == ',':
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}

// forValue returns the value of the single for= pair of a Forwarded
// element, without its quotes. An element with no for=, two of them, a
// malformed quoted string or an escape inside the for= value reports false:
// none of those name one address that a proxy vouched for.
func forValue(elem string) (string, bool) {
	var val string
	found := false
	for len(elem) > 0 {
		pair, rest, ok := cutPair(elem)
		if !ok {
			return "", false
		}
		elem = rest
		pair = trimOWS(pair)
		if pair == "" {
			continue
		}
		name, v, ok := strings.Cut(pair, "=")
		if !ok {
			return "", false
		}
		// RFC 7239 allows no whitespace around "=", but some proxies
		// write it; tolerating it loses nothing.
		name, v = trimOWS(name), trimOWS(v)
		if !strings.EqualFold(name, "for") {
			continue
		}
		if found {
			return "", false
		}
		if len(v) > 0 && v[0] == '"' {
			if len(v) < 2 || v[len(v)-1] != '"' || strings.ContainsAny(v[1:len(v)-1], "\\\"") {
				return "", false
			}
			v = v[1 : len(v)-1]
		}
		val, found = v, true
	}
	return val, found
}

// cutPair splits an element at the first semicolon outside a quoted string;
// it reports false for an unterminated quoted string.
func cutPair(s string) (pair, rest string, ok bool) {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == ';':
			return s[:i], s[i+1:], true
		}
	}
	return s, "", !quoted
}

// parseNode parses one hop as written by proxies in X-Forwarded-For or in a
// Forwarded for= value (RFC 7239 §6): "192.0.2.1", "192.0.2.1:80",
// "2001:db8::1", "[2001:db8::1]" or "[2001:db8::1]:80", with an optional
// IPv6 zone. A port may be obfuscated ("_abc") as RFC 7239 allows. Names,
// "unknown" and obfuscated identifiers are not addresses: false.
func parseNode(s string) (netip.Addr, bool) {
	host := s
	port := ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.Addr{}, false
		}
		host, port = s[1:end], s[end+1:]
		if port != "" {
			if port[0] != ':' {
				return netip.Addr{}, false
			}
			port = port[1:]
			if port == "" {
				return netip.Addr{}, false
			}
		}
		if strings.IndexByte(host, ':') < 0 {
			return netip.Addr{}, false // brackets are for IPv6 only
		}
	case strings.Count(s, ":") == 1:
		// One colon cannot be IPv6 (which has at least two), so it is
		// IPv4 with a port.
		host, port, _ = strings.Cut(s, ":")
		if port == "" || strings.IndexByte(host, '.') < 0 {
			return netip.Addr{}, false
		}
	}
	if port != "" && !validPort(port) {
		return netip.Addr{}, false
	}
	// Drop the zone before parsing: it would make netip allocate, and it
	// is dropped from the result anyway. IPv4 has no zones.
	if i := strings.IndexByte(host, '%'); i >= 0 {
		if strings.IndexByte(host[:i], ':') < 0 || i == len(host)-1 {
			return netip.Addr{}, false
		}
		host = host[:i]
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// validPort accepts a decimal port (1 to 5 digits) or an obfuscated port,
// "_" followed by ALPHA / DIGIT / "." / "_" / "-" (RFC 7239 §6.3).
func validPort(p string) bool {
	if p[0] == '_' {
		if len(p) == 1 {
			return false
		}
		for i := 1; i < len(p); i++ {
			c := p[i]
			if !isAlnum(c) && c != '.' && c != '_' && c != '-' {
				return false
			}
		}
		return true
	}
	if len(p) > 5 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// trimOWS trims the optional whitespace (spaces and tabs) HTTP allows
// around list elements.
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
