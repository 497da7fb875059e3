package upstream

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/hashicorp/memberlist"
)

func TestMetaRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		give nodeMeta
		want nodeMeta
	}{
		{"backend", nodeMeta{Role: roleBackend, Addr: "10.0.0.7:9001", Weight: 3, State: nodeAlive},
			nodeMeta{Version: 1, Role: roleBackend, Addr: "10.0.0.7:9001", Weight: 3, State: nodeAlive}},
		{"draining backend", nodeMeta{Role: roleBackend, Addr: "[::1]:9001", Weight: 1, State: nodeDraining},
			nodeMeta{Version: 1, Role: roleBackend, Addr: "[::1]:9001", Weight: 1, State: nodeDraining}},
		{"weight 0 reads as 1", nodeMeta{Role: roleBackend, Addr: "app:80", State: nodeAlive},
			nodeMeta{Version: 1, Role: roleBackend, Addr: "app:80", Weight: 1, State: nodeAlive}},
		{"proxy", nodeMeta{Role: roleProxy, State: nodeAlive}, nodeMeta{Version: 1, Role: roleProxy, State: nodeAlive}},
		{"DNS name", nodeMeta{Role: roleBackend, Addr: "app-3.eu_west.internal:8080", Weight: 1000, State: nodeAlive},
			nodeMeta{Version: 1, Role: roleBackend, Addr: "app-3.eu_west.internal:8080", Weight: 1000, State: nodeAlive}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.give.encode()
			if err != nil {
				t.Fatal(err)
			}
			got, capped, err := decodeMeta(b, nil)
			if err != nil {
				t.Fatalf("decodeMeta(%s): %v", b, err)
			}
			if got != tt.want || capped {
				t.Errorf("decodeMeta(%s) = %+v, want %+v", b, got, tt.want)
			}
		})
	}
}

// longestMeta is the longest metadata a node of this version sends.
func longestMeta() nodeMeta {
	host := strings.Repeat(strings.Repeat("a", 62)+".", 5)[:maxHostLen]
	return nodeMeta{Role: roleBackend, Addr: host + ":65535", Weight: maxWeight, State: nodeDraining}
}

// maxMetaSize is exactly the longest legitimate metadata: a bound any
// looser would let through what no node of ours sends, and one tighter
// would refuse a real backend.
func TestMaxMetaSize(t *testing.T) {
	b, err := longestMeta().encode()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != maxMetaSize {
		t.Errorf("the longest metadata is %d bytes, maxMetaSize %d", len(b), maxMetaSize)
	}
	if maxMetaSize > memberlist.MetaMaxSize*3/4 {
		t.Errorf("maxMetaSize %d, not well under memberlist's %d", maxMetaSize, memberlist.MetaMaxSize)
	}
	if _, _, err := decodeMeta(b, nil); err != nil {
		t.Errorf("the longest metadata refused: %v", err)
	}
	m := longestMeta()
	m.Addr = "a" + m.Addr
	if b, err := m.encode(); err == nil {
		t.Errorf("encode of %d bytes succeeded", len(b))
	}
}

func TestMetaDecodeRejects(t *testing.T) {
	pad := strings.Repeat(" ", maxMetaSize)
	tests := []struct {
		name string
		give string
		want error // the sentinel it wraps; nil for none of them
	}{
		{"newer version", `{"v":2,"role":"backend","addr":"a:1","state":"alive","shards":[1,2]}`, errMetaVersion},
		{"no version", `{"role":"backend","addr":"a:1","state":"alive"}`, errMetaVersion},
		{"unknown state", `{"v":1,"role":"backend","addr":"a:1","state":"sleeping"}`, nil},
		{"unknown role", `{"v":1,"role":"cache","state":"alive"}`, nil},
		{"not JSON", "\x01\x02", nil},
		{"empty", "", nil},
		{"null", "null", errMetaVersion},
		{"weight not an int", `{"v":1,"role":"backend","addr":"a:1","weight":1e9,"state":"alive"}`, nil},
		{"weight past int64", `{"v":1,"role":"backend","addr":"a:1","weight":99999999999999999999,"state":"alive"}`, nil},
		{"negative weight", `{"v":1,"role":"backend","addr":"a:1","weight":-5,"state":"alive"}`, errMetaWeight},
		{"one byte over the bound", `{"v":1,"role":"backend","addr":"a:1","state":"alive"}` + pad, errMetaSize},
		{"huge", `{"v":1,"role":"backend","addr":"a:1","state":"alive","x":"` + strings.Repeat("x", 1<<20) + `"}`, errMetaSize},
		{"backend without address", `{"v":1,"role":"backend","state":"alive"}`, errMetaAddress},
		{"backend without port", `{"v":1,"role":"backend","addr":"app","state":"alive"}`, errMetaAddress},
		{"port 0", `{"v":1,"role":"backend","addr":"10.0.0.1:0","state":"alive"}`, errMetaAddress},
		{"port 65536", `{"v":1,"role":"backend","addr":"10.0.0.1:65536","state":"alive"}`, errMetaAddress},
		{"port by name", `{"v":1,"role":"backend","addr":"10.0.0.1:http","state":"alive"}`, errMetaAddress},
		{"port with a leading zero", `{"v":1,"role":"backend","addr":"10.0.0.1:080","state":"alive"}`, errMetaAddress},
		{"port with a sign", `{"v":1,"role":"backend","addr":"10.0.0.1:+80","state":"alive"}`, errMetaAddress},
		{"no host", `{"v":1,"role":"backend","addr":":80","state":"alive"}`, errMetaAddress},
		{"space", `{"v":1,"role":"backend","addr":"bad host:80","state":"alive"}`, errMetaAddress},
		{"newline", `{"v":1,"role":"backend","addr":"app\n:80","state":"alive"}`, errMetaAddress},
		{"NUL", `{"v":1,"role":"backend","addr":"app\u0000:80","state":"alive"}`, errMetaAddress},
		{"escape sequence", `{"v":1,"role":"backend","addr":"\u001b[31mapp:80","state":"alive"}`, errMetaAddress},
		{"not UTF-8", "{\"v\":1,\"role\":\"backend\",\"addr\":\"app\xff:80\",\"state\":\"alive\"}", errMetaAddress},
		{"IPv4 in brackets", `{"v":1,"role":"backend","addr":"[10.0.0.1]:80","state":"alive"}`, errMetaAddress},
		{"IPv6 without brackets", `{"v":1,"role":"backend","addr":"::1:80","state":"alive"}`, errMetaAddress},
		{"IPv6 not canonical", `{"v":1,"role":"backend","addr":"[::0001]:80","state":"alive"}`, errMetaAddress},
		{"IPv6 zone", `{"v":1,"role":"backend","addr":"[fe80::1%eth0]:80","state":"alive"}`, errMetaAddress},
		{"IPv4 with a leading zero", `{"v":1,"role":"backend","addr":"010.0.0.1:80","state":"alive"}`, errMetaAddress},
		{"IPv4 out of range", `{"v":1,"role":"backend","addr":"10.0.0.300:80","state":"alive"}`, errMetaAddress},
		{"short IPv4", `{"v":1,"role":"backend","addr":"127.1:80","state":"alive"}`, errMetaAddress},
		{"unspecified", `{"v":1,"role":"backend","addr":"0.0.0.0:80","state":"alive"}`, errMetaAddress},
		{"multicast", `{"v":1,"role":"backend","addr":"[ff02::1]:80","state":"alive"}`, errMetaAddress},
		{"name with a trailing dot", `{"v":1,"role":"backend","addr":"app.internal.:80","state":"alive"}`, errMetaAddress},
		{"label over 63 bytes", `{"v":1,"role":"backend","addr":"` + strings.Repeat("a", 64) + `:80","state":"alive"}`, errMetaAddress},
		{"label starting with a hyphen", `{"v":1,"role":"backend","addr":"-app:80","state":"alive"}`, errMetaAddress},
		{"slash", `{"v":1,"role":"backend","addr":"app/x:80","state":"alive"}`, errMetaAddress},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, _, err := decodeMeta([]byte(tt.give), nil)
			if err == nil {
				t.Fatalf("decodeMeta(%.80q) = %+v, want an error", tt.give, m)
			}
			for _, sentinel := range []error{errMetaVersion, errMetaSize, errMetaAddress, errMetaNotAllowed, errMetaWeight} {
				if got, want := errors.Is(err, sentinel), sentinel == tt.want; got != want {
					t.Errorf("errors.Is(%v, %v) = %v, want %v", err, sentinel, got, want)
				}
			}
		})
	}
}

func TestMetaWeight(t *testing.T) {
	tests := []struct {
		give       string
		want       int
		wantCapped bool
	}{
		{`{"v":1,"role":"backend","addr":"a:1","state":"alive"}`, 1, false},
		{`{"v":1,"role":"backend","addr":"a:1","weight":0,"state":"alive"}`, 1, false},
		{`{"v":1,"role":"backend","addr":"a:1","weight":7,"state":"alive"}`, 7, false},
		{`{"v":1,"role":"backend","addr":"a:1","weight":1000,"state":"alive"}`, 1000, false},
		{`{"v":1,"role":"backend","addr":"a:1","weight":1001,"state":"alive"}`, 1000, true},
		{`{"v":1,"role":"backend","addr":"a:1","weight":1000000000,"state":"alive"}`, 1000, true},
		{`{"v":1,"role":"backend","addr":"a:1","weight":9223372036854775807,"state":"alive"}`, 1000, true},
	}
	for _, tt := range tests {
		m, capped, err := decodeMeta([]byte(tt.give), nil)
		if err != nil || m.Weight != tt.want || capped != tt.wantCapped {
			t.Errorf("decodeMeta(%s) = weight %d, capped %v, %v; want %d, %v", tt.give, m.Weight, capped, err, tt.want, tt.wantCapped)
		}
	}
}

func TestMetaAllowedBackends(t *testing.T) {
	allowed := []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("fd00::/8")}
	tests := []struct {
		give string
		want bool
	}{
		{"10.1.2.3:80", true},
		{"[::ffff:10.1.2.3]:80", true},
		{"[fd00::7]:80", true},
		{"10.2.0.1:80", false},
		{"127.0.0.1:80", false},
		{"[::1]:80", false},
		{"[::ffff:127.0.0.1]:80", false},
		{"app.internal:80", false}, // a name cannot be checked against networks
		{"localhost:80", false},
	}
	for _, tt := range tests {
		meta := `{"v":1,"role":"backend","addr":"` + tt.give + `","state":"alive"}`
		_, _, err := decodeMeta([]byte(meta), allowed)
		if got := err == nil; got != tt.want {
			t.Errorf("%s allowed = %v (%v), want %v", tt.give, got, err, tt.want)
		}
		if err != nil && !errors.Is(err, errMetaNotAllowed) {
			t.Errorf("%s: %v, want errMetaNotAllowed", tt.give, err)
		}
		if _, _, err := decodeMeta([]byte(meta), nil); err != nil {
			t.Errorf("%s refused with no allowed networks: %v", tt.give, err)
		}
	}
}

func TestMetaIgnoresUnknownFields(t *testing.T) {
	m, _, err := decodeMeta([]byte(`{"v":1,"role":"backend","addr":"a:1","weight":2,"state":"alive","zone":"eu-1"}`), nil)
	if err != nil || m.Addr != "a:1" || m.Weight != 2 {
		t.Errorf("decodeMeta = %+v, %v; want the fields it knows", m, err)
	}
}
