package affinity

import (
	"net/netip"
	"strings"
	"testing"
)

func TestHashAddr(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		same bool
	}{
		{"ipv4 and its ipv4-mapped form", "203.0.113.7", "::ffff:203.0.113.7", true},
		{"zone ignored", "fe80::1%eth0", "fe80::1", true},
		{"zones ignored", "fe80::1%eth0", "fe80::1%eth1", true},
		{"neighbouring ipv4", "203.0.113.7", "203.0.113.8", false},
		{"ipv4 against ipv4-compatible ipv6", "203.0.113.7", "::203.0.113.7", false},
		{"neighbouring ipv6", "2001:db8::1", "2001:db8::2", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ha, hb := HashAddr(netip.MustParseAddr(tt.a)), HashAddr(netip.MustParseAddr(tt.b))
			if (ha == hb) != tt.same {
				t.Errorf("HashAddr(%s) = %#x, HashAddr(%s) = %#x; want equal %t", tt.a, ha, tt.b, hb, tt.same)
			}
		})
	}
	if got, want := HashAddr(netip.Addr{}), HashString(""); got != want {
		t.Errorf("HashAddr(zero) = %#x, want the empty key's %#x", got, want)
	}
}

func TestHashBytesMatchesHashString(t *testing.T) {
	for _, give := range []string{"", "a", "session-42", strings.Repeat("x", 1000)} {
		if HashBytes([]byte(give)) != HashString(give) {
			t.Errorf("HashBytes(%q) != HashString(%q)", give, give)
		}
	}
}

func TestTrustedProxiesContains(t *testing.T) {
	tp := NewTrustedProxies([]netip.Prefix{
		netip.MustParsePrefix("10.1.2.3/8"), // not masked: still the whole /8
		netip.MustParsePrefix("::ffff:192.168.0.0/112"),
		netip.MustParsePrefix("fe80::/10"),
		{}, // invalid: dropped
	})
	tests := []struct {
		give string
		want bool
	}{
		{"10.200.0.1", true},
		{"::ffff:10.200.0.1", true},
		{"11.0.0.1", false},
		{"192.168.3.4", true},
		{"::ffff:192.168.3.4", true},
		{"192.169.0.1", false},
		{"fe80::1%eth0", true},
		{"fe80::1", true},
		{"2001:db8::1", false},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			if got := tp.Contains(netip.MustParseAddr(tt.give)); got != tt.want {
				t.Errorf("Contains(%s) = %t, want %t", tt.give, got, tt.want)
			}
		})
	}
	if (TrustedProxies{}).Contains(netip.MustParseAddr("10.0.0.1")) {
		t.Error("the zero TrustedProxies trusts 10.0.0.1")
	}
	if tp.Contains(netip.Addr{}) {
		t.Error("the zero Addr is trusted")
	}
}

// testProxies is the trusted set of the ClientIP tests: a private IPv4
// network, an IPv6 /48 and link-local IPv6 (where zones appear).
func testProxies() TrustedProxies {
	return NewTrustedProxies([]netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("2001:db8:f::/48"),
		netip.MustParsePrefix("fe80::/10"),
	})
}

func TestClientIP(t *testing.T) {
	const (
		proxy  = "10.0.0.1"       // a trusted peer
		client = "203.0.113.7"    // the real client
		spoof  = "198.51.100.66"  // what a client writes to pick its key
		proxy6 = "2001:db8:f::1"  // a trusted IPv6 peer
		inner  = "10.0.0.2"       // a trusted hop further in
		other6 = "2001:db8:1::77" // an untrusted IPv6 client
	)
	tests := []struct {
		name      string
		peer      string
		xff, fwd  []string
		want      string
		untrusted bool // use the zero TrustedProxies
	}{
		// The peer decides whether headers count.
		{name: "untrusted peer, no headers", peer: client, want: client},
		{name: "untrusted peer, spoofed xff ignored", peer: client, xff: []string{spoof}, want: client},
		{name: "untrusted peer, spoofed forwarded ignored", peer: client, fwd: []string{"for=" + spoof}, want: client},
		{name: "untrusted ipv6 peer", peer: other6, xff: []string{spoof}, want: other6},
		{name: "untrusted zoned peer loses its zone", peer: "2001:db8:1::77%eth0", xff: []string{spoof}, want: other6},
		{name: "untrusted v4-mapped peer is unmapped", peer: "::ffff:" + client, xff: []string{spoof}, want: client},
		{name: "zero TrustedProxies trusts nobody", peer: proxy, xff: []string{spoof}, want: proxy, untrusted: true},
		{name: "invalid peer", peer: "", xff: []string{spoof}, want: ""},
		{name: "trusted peer, no headers", peer: proxy, want: proxy},
		{name: "trusted peer, empty header lines", peer: proxy, xff: []string{"", " "}, fwd: []string{""}, want: proxy},

		// X-Forwarded-For.
		{name: "one hop", peer: proxy, xff: []string{client}, want: client},
		{name: "trusted hops skipped", peer: proxy, xff: []string{client + ", " + inner}, want: client},
		{name: "spoofed entries left of the client ignored", peer: proxy, xff: []string{spoof + ", " + client + ", " + inner}, want: client},
		{name: "several header lines", peer: proxy, xff: []string{spoof + ", " + client, inner + "," + "10.9.9.9"}, want: client},
		{name: "client alone on the first line", peer: proxy, xff: []string{client, inner}, want: client},
		{name: "ipv4 with port", peer: proxy, xff: []string{client + ":51234"}, want: client},
		{name: "ipv6", peer: proxy, xff: []string{other6}, want: other6},
		{name: "ipv6 in brackets with port", peer: proxy, xff: []string{"[" + other6 + "]:443"}, want: other6},
		{name: "ipv6 in brackets", peer: proxy, xff: []string{"[" + other6 + "]"}, want: other6},
		{name: "v4-mapped entry is unmapped", peer: proxy, xff: []string{"::ffff:" + client}, want: client},
		{name: "v4-mapped peer is trusted", peer: "::ffff:" + proxy, xff: []string{client}, want: client},
		{name: "ipv6 peer", peer: proxy6, xff: []string{client + ", 2001:db8:f::2"}, want: client},
		{name: "zoned entry loses its zone", peer: proxy, xff: []string{"2001:db8:1::77%eth0"}, want: other6},
		{name: "zoned trusted hops", peer: "fe80::1%eth0", xff: []string{client + ", fe80::2%eth0, [fe80::3%eth1]:80"}, want: client},
		{name: "tabs and empty elements", peer: proxy, xff: []string{"\t" + client + " ,, " + inner + " ,"}, want: client},
		{name: "all hops trusted: leftmost", peer: proxy, xff: []string{"10.0.0.9, 10.0.0.8", inner}, want: "10.0.0.9"},
		{name: "garbage stops the walk at the hop that wrote it", peer: proxy, xff: []string{client + ", garbage, " + inner}, want: inner},
		{name: "garbage from the peer", peer: proxy, xff: []string{client + ", " + inner + ", garbage"}, want: proxy},
		{name: "garbage only", peer: proxy, xff: []string{"garbage"}, want: proxy},
		{name: "garbage left of the client is never reached", peer: proxy, xff: []string{"garbage, " + client}, want: client},
		{name: "hostname", peer: proxy, xff: []string{"client.example.com, " + inner}, want: inner},
		{name: "unknown", peer: proxy, xff: []string{"unknown"}, want: proxy},
		{name: "port too long", peer: proxy, xff: []string{client + ":123456"}, want: proxy},
		{name: "port not numeric", peer: proxy, xff: []string{client + ":http"}, want: proxy},
		{name: "empty port", peer: proxy, xff: []string{client + ":"}, want: proxy},
		{name: "ipv4 in brackets", peer: proxy, xff: []string{"[" + client + "]"}, want: proxy},
		{name: "unclosed bracket", peer: proxy, xff: []string{"[" + other6}, want: proxy},
		{name: "junk after bracket", peer: proxy, xff: []string{"[" + other6 + "]x"}, want: proxy},
		{name: "zone on ipv4", peer: proxy, xff: []string{client + "%eth0"}, want: proxy},
		{name: "empty zone", peer: proxy, xff: []string{"fe80::9%"}, want: proxy},
		{name: "quoted entry", peer: proxy, xff: []string{`"` + client + `"`}, want: proxy},
		{name: "leading zeros", peer: proxy, xff: []string{"203.0.113.007"}, want: proxy},

		// Forwarded (RFC 7239), used only without X-Forwarded-For.
		{name: "forwarded token", peer: proxy, fwd: []string{"for=" + client}, want: client},
		{name: "forwarded case-insensitive name, other params", peer: proxy, fwd: []string{"proto=https;For=" + client + ";by=10.0.0.1"}, want: client},
		{name: "forwarded quoted with port", peer: proxy, fwd: []string{`for="` + client + `:4711"`}, want: client},
		{name: "forwarded ipv6 with port", peer: proxy, fwd: []string{`for="[` + other6 + `]:4711"`}, want: other6},
		{name: "forwarded ipv6", peer: proxy, fwd: []string{`for="[` + other6 + `]"`}, want: other6},
		{name: "forwarded obfuscated port", peer: proxy, fwd: []string{`for="` + client + `:_p1-x"`}, want: client},
		{name: "forwarded chain", peer: proxy, fwd: []string{"for=" + spoof + ", for=" + client + ", for=" + inner}, want: client},
		{name: "forwarded several lines", peer: proxy, fwd: []string{"for=" + client, "for=" + inner + ";proto=http"}, want: client},
		{name: "forwarded whitespace", peer: proxy, fwd: []string{" for = " + client + " ; proto=https , for=" + inner}, want: client},
		{name: "forwarded comma inside quotes", peer: proxy, fwd: []string{`for=` + client + `;ext="a,b\",c"`}, want: client},
		{name: "forwarded semicolon inside quotes", peer: proxy, fwd: []string{`ext="a;for=` + spoof + `";for=` + client}, want: client},
		{name: "forwarded unknown stops", peer: proxy, fwd: []string{"for=" + spoof + ", for=unknown"}, want: proxy},
		{name: "forwarded obfuscated stops", peer: proxy, fwd: []string{"for=" + spoof + `, for="_hidden", for=` + inner}, want: inner},
		{name: "forwarded element without for", peer: proxy, fwd: []string{"for=" + spoof + ", proto=https"}, want: proxy},
		{name: "forwarded duplicate for", peer: proxy, fwd: []string{"for=" + spoof + ";for=" + client}, want: proxy},
		{name: "forwarded unterminated quote", peer: proxy, fwd: []string{`for="` + client}, want: proxy},
		{name: "forwarded escape in value", peer: proxy, fwd: []string{`for="203.0.113\.7"`}, want: proxy},
		{name: "forwarded pair without value", peer: proxy, fwd: []string{"for=" + client + ";secure"}, want: proxy},
		{name: "forwarded empty elements", peer: proxy, fwd: []string{", for=" + client + ",,"}, want: client},
		{name: "forwarded all trusted", peer: proxy, fwd: []string{"for=10.3.3.3, for=" + inner}, want: "10.3.3.3"},
		{name: "xff wins over forwarded", peer: proxy, xff: []string{client}, fwd: []string{"for=" + spoof}, want: client},
		{name: "empty xff falls back to forwarded", peer: proxy, xff: []string{"", " , "}, fwd: []string{"for=" + client}, want: client},
		{name: "garbage xff still wins over forwarded", peer: proxy, xff: []string{"garbage"}, fwd: []string{"for=" + spoof}, want: proxy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp := testProxies()
			if tt.untrusted {
				tp = TrustedProxies{}
			}
			var peer netip.Addr
			if tt.peer != "" {
				peer = netip.MustParseAddr(tt.peer)
			}
			var want netip.Addr
			if tt.want != "" {
				want = netip.MustParseAddr(tt.want)
			}
			if got := tp.ClientIP(peer, tt.xff, tt.fwd); got != want {
				t.Errorf("ClientIP(%s, xff %q, forwarded %q) = %s, want %s", tt.peer, tt.xff, tt.fwd, got, want)
			}
		})
	}
}

// FuzzClientIP: no input panics; the result is the peer or an address
// written in the headers, never one made up; an untrusted peer always gets
// itself; and the result is in key form (unmapped, no zone). Seeds are in
// testdata/fuzz/FuzzClientIP; xff holds header lines separated by "\n".
func FuzzClientIP(f *testing.F) {
	tp := testProxies()
	f.Fuzz(func(t *testing.T, peerText, xff, fwd string) {
		peer, _ := netip.ParseAddr(peerText) // the zero Addr when invalid
		var xffLines, fwdLines []string
		if xff != "" {
			xffLines = strings.Split(xff, "\n")
		}
		if fwd != "" {
			fwdLines = strings.Split(fwd, "\n")
		}
		got := tp.ClientIP(peer, xffLines, fwdLines)
		norm := peer.Unmap().WithZone("")
		if got.Zone() != "" || got.Is4In6() {
			t.Fatalf("ClientIP = %s, want it unmapped and without zone", got)
		}
		if !tp.Contains(peer) && got != norm {
			t.Fatalf("untrusted peer %s got key %s from headers", peer, got)
		}
		if got != norm && !writtenIn(got, xff+"\n"+fwd) {
			t.Fatalf("ClientIP(%s, %q, %q) = %s, which is neither the peer nor in the headers", peer, xff, fwd, got)
		}
	})
}

// writtenIn reports whether a appears in s as an address, possibly with a
// port or brackets around it. It scans for runs of characters that can
// form an address, independently of the parser under test.
func writtenIn(a netip.Addr, s string) bool {
	isAddrChar := func(c byte) bool {
		return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' || c == ':' || c == '.'
	}
	for i := 0; i < len(s); {
		if !isAddrChar(s[i]) {
			i++
			continue
		}
		j := i
		for j < len(s) && isAddrChar(s[j]) {
			j++
		}
		run := s[i:j]
		i = j
		cands := []string{run}
		if host, _, ok := strings.Cut(run, ":"); ok && strings.Count(run, ":") == 1 {
			cands = append(cands, host)
		}
		for _, c := range cands {
			if p, err := netip.ParseAddr(c); err == nil && p.Unmap() == a {
				return true
			}
		}
	}
	return false
}
