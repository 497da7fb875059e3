package affinity

import (
	"strings"
	"testing"
)

// TestTokenPinned: route cookies outlive processes and binaries; a token
// handed out by one version must name the same backend in the next. These
// values are also in testdata/golden_routes.txt.
func TestTokenPinned(t *testing.T) {
	tests := []struct {
		give string
		want string
	}{
		{"10.20.0.11:9000", "10083ea4ef2dcfff9"},
		{"10.20.0.12:9000", "1d45ab7bb1dc5d46b"},
		{"10.20.0.13:9000", "183334732bf8b8cea"},
		{"[2001:db8::5]:9000", "11f07a44145eaad08"},
		{"app-4.internal:9000", "197c4bedc54a50f4d"},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			if got := Token(tt.give); got != tt.want {
				t.Errorf("Token(%q) = %q, want %q", tt.give, got, tt.want)
			}
		})
	}
}

func TestTokenIsOpaqueAndCookieSafe(t *testing.T) {
	seen := map[string]string{}
	for _, m := range backends(200) {
		tok := Token(m.Addr)
		if len(tok) != tokenLen || tok[0] != tokenVersion {
			t.Fatalf("Token(%q) = %q, want %d bytes starting with %q", m.Addr, tok, tokenLen, tokenVersion)
		}
		if strings.Trim(tok, "0123456789abcdef") != "" {
			t.Fatalf("Token(%q) = %q has characters outside [0-9a-f]", m.Addr, tok)
		}
		if strings.Contains(tok, m.Addr) || strings.Contains(tok, "10.0.1") {
			t.Fatalf("Token(%q) = %q reveals the address", m.Addr, tok)
		}
		if other, dup := seen[tok]; dup {
			t.Fatalf("Token(%q) = Token(%q) = %q", m.Addr, other, tok)
		}
		seen[tok] = m.Addr
	}
}

func TestByToken(t *testing.T) {
	r := goldenRing()
	valid := Token("10.20.0.13:9000")
	tests := []struct {
		name   string
		give   string
		want   string // member address; "" when the token must be refused
		wantOK bool
	}{
		{name: "valid", give: valid, want: "10.20.0.13:9000", wantOK: true},
		{name: "ipv6 backend", give: Token("[2001:db8::5]:9000"), want: "[2001:db8::5]:9000", wantOK: true},
		{name: "empty", give: ""},
		{name: "version only", give: "1"},
		{name: "one digit short", give: valid[:tokenLen-1]},
		{name: "one digit long", give: valid + "0"},
		{name: "upper case", give: strings.ToUpper(valid)},
		{name: "non-hex digit", give: valid[:5] + "g" + valid[6:]},
		{name: "unknown version", give: "2" + valid[1:]},
		{name: "address in clear", give: "10.20.0.13:9000"},
		{name: "backend not in the ring", give: Token("10.20.0.99:9000")},
		{name: "one bit off", give: valid[:tokenLen-1] + string(valid[tokenLen-1]^1)},
		{name: "spaces", give: " " + valid[1:]},
		{name: "non-ascii of the right length", give: "1" + strings.Repeat("é", 8)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i, ok := r.ByToken(tt.give)
			if ok != tt.wantOK {
				t.Fatalf("ByToken(%q) ok = %t, want %t", tt.give, ok, tt.wantOK)
			}
			if !ok {
				if i != -1 {
					t.Errorf("ByToken(%q) = %d on failure, want -1", tt.give, i)
				}
				return
			}
			if got := r.Member(i).Addr; got != tt.want {
				t.Errorf("ByToken(%q) names %s, want %s", tt.give, got, tt.want)
			}
		})
	}
}

// TestByTokenAcrossRings: a cookie keeps naming its backend while that
// backend stays in the ring, whatever else changes, and stops once it
// leaves.
func TestByTokenAcrossRings(t *testing.T) {
	ms := backends(5)
	tok := Token(ms[2].Addr)
	grown := NewRing(append(backends(5), Member{Addr: "10.0.0.1:8080", Weight: 3}), 0)
	if i, ok := grown.ByToken(tok); !ok || grown.Member(i).Addr != ms[2].Addr {
		t.Errorf("after a member joined, token names %v (ok %t), want %s", i, ok, ms[2].Addr)
	}
	shrunk := NewRing([]Member{ms[0], ms[1], ms[3]}, 0)
	if i, ok := shrunk.ByToken(tok); ok {
		t.Errorf("after %s left, its token still names %s", ms[2].Addr, shrunk.Member(i).Addr)
	}
}

// FuzzByToken: no input panics, anything accepted is a member's canonical
// token, and a member's token always round-trips.
func FuzzByToken(f *testing.F) {
	f.Fuzz(func(t *testing.T, tok, addr string) {
		r := NewRing([]Member{{Addr: "10.0.0.1:80"}, {Addr: "10.0.0.2:80"}, {Addr: addr}}, 4)
		if i, ok := r.ByToken(tok); ok && Token(r.Member(i).Addr) != tok {
			t.Fatalf("ByToken(%q) accepted a token that is not member %q's", tok, r.Member(i).Addr)
		}
		if addr == "" {
			return
		}
		i, ok := r.ByToken(Token(addr))
		if !ok || r.Member(i).Addr != addr {
			t.Fatalf("Token(%q) = %q does not round-trip: %d, %t", addr, Token(addr), i, ok)
		}
	})
}
