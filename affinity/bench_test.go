package affinity

import (
	"fmt"
	"net/netip"
	"testing"
)

// Measured on the shared 2-core machine (AMD EPYC, load average 5 to 8,
// go test -bench . -benchmem -count 3; ranges over the runs):
//
//	BenchmarkLookup/members=10       21-22 ns/op       0 allocs/op
//	BenchmarkLookup/members=100      26-29 ns/op       0 allocs/op
//	BenchmarkLookupBounded           37-49 ns/op       0 allocs/op
//	BenchmarkHashAddr                15-17 ns/op       0 allocs/op
//	BenchmarkClientIP               280-760 ns/op      0 allocs/op
//	BenchmarkByToken                 29-58 ns/op       0 allocs/op
//	BenchmarkNewRing/members=10     250-285 µs/op      8 allocs/op (28 KB)
//	BenchmarkNewRing/members=100    4.3-4.4 ms/op      8 allocs/op (269 KB)
//
// Absolute numbers on a shared machine mean little; the allocation counts
// are what TestZeroAllocs holds CI to.

// benchKeys spreads lookups over the ring so that the benchmark is not one
// cached path.
func benchKeys() []uint64 {
	ks := make([]uint64, 1024)
	for i := range ks {
		ks[i] = HashString(fmt.Sprintf("client-%d", i))
	}
	return ks
}

func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{10, 100} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			r := NewRing(backends(n), 0)
			ks := benchKeys()
			b.ReportAllocs()
			sink := 0
			for i := 0; b.Loop(); i++ {
				sink += r.Lookup(ks[i&1023])
			}
			_ = sink
		})
	}
}

func BenchmarkLookupBounded(b *testing.B) {
	r := NewRing(backends(10), 0)
	ks := benchKeys()
	// Half the members full: most walks pass one or two members.
	accept := func(i int) bool { return i%2 == 0 }
	b.ReportAllocs()
	sink := 0
	for i := 0; b.Loop(); i++ {
		sink += r.LookupBounded(ks[i&1023], accept)
	}
	_ = sink
}

func BenchmarkHashAddr(b *testing.B) {
	addrs := []netip.Addr{
		netip.MustParseAddr("203.0.113.7"),
		netip.MustParseAddr("2001:db8::77"),
		netip.MustParseAddr("::ffff:198.51.100.1"),
	}
	b.ReportAllocs()
	var sink uint64
	for i := 0; b.Loop(); i++ {
		sink += HashAddr(addrs[i%len(addrs)])
	}
	_ = sink
}

func BenchmarkClientIP(b *testing.B) {
	tp := testProxies()
	peer := netip.MustParseAddr("10.0.0.1")
	xff := []string{"203.0.113.7, 10.0.0.3, 10.0.0.2"}
	b.ReportAllocs()
	var sink netip.Addr
	for b.Loop() {
		sink = tp.ClientIP(peer, xff, nil)
	}
	_ = sink
}

func BenchmarkByToken(b *testing.B) {
	r := NewRing(backends(10), 0)
	toks := make([]string, r.Len())
	for i := range toks {
		toks[i] = Token(r.Member(i).Addr)
	}
	b.ReportAllocs()
	sink := 0
	for i := 0; b.Loop(); i++ {
		j, _ := r.ByToken(toks[i%len(toks)])
		sink += j
	}
	_ = sink
}

func BenchmarkNewRing(b *testing.B) {
	for _, n := range []int{10, 100} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			ms := backends(n)
			b.ReportAllocs()
			for b.Loop() {
				NewRing(ms, 0)
			}
		})
	}
}

// TestZeroAllocs keeps the per-request paths free of allocations: they run
// for every connection and every plain HTTP request.
func TestZeroAllocs(t *testing.T) {
	r := NewRing(backends(10), 0)
	tok := Token(r.Member(3).Addr)
	tp := testProxies()
	peer := netip.MustParseAddr("10.0.0.1")
	xff := []string{"203.0.113.7, 10.0.0.3, [2001:db8:f::9]:443"}
	fwd := []string{`for="[2001:db8::1]:4711";proto=https, for=10.0.0.2`}
	zoned := []string{"2001:db8::1%eth0, fe80::2%eth1"}
	zonedPeer := netip.MustParseAddr("fe80::1%eth0")
	v6 := netip.MustParseAddr("2001:db8::77")
	key := []byte("session-42")
	accept := func(i int) bool { return i == 7 }
	tests := []struct {
		name string
		fn   func()
	}{
		{"Lookup", func() { r.Lookup(12345) }},
		{"ByToken", func() { r.ByToken(tok) }},
		{"ByToken refused", func() { r.ByToken("1zzzzzzzzzzzzzzzz") }},
		{"LookupBounded", func() { r.LookupBounded(12345, accept) }},
		{"HashAddr", func() { HashAddr(v6) }},
		{"HashBytes", func() { HashBytes(key) }},
		{"HashString", func() { HashString("session-42") }},
		{"ClientIP X-Forwarded-For", func() { tp.ClientIP(peer, xff, nil) }},
		{"ClientIP Forwarded", func() { tp.ClientIP(peer, nil, fwd) }},
		{"ClientIP zones", func() { tp.ClientIP(zonedPeer, zoned, nil) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, tt.fn); n != 0 {
				t.Errorf("%s allocates %v times per call, want 0", tt.name, n)
			}
		})
	}
}
