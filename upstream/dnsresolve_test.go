package upstream

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

// testClient asks only the server at addr, and gives up on a query after
// 200ms.
func testClient() dnsClient {
	return dnsClient{timeout: 200 * time.Millisecond, resolvConf: "/nonexistent"}
}

func lookupAt(t *testing.T, server string, n DNSName) (dnsAnswer, error) {
	t.Helper()
	n.Resolver = server
	n, err := n.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	return testClient().lookup(ctx, n)
}

func TestLookupAddrs(t *testing.T) {
	d := upstreamtest.StartDNS(t)
	d.SetAddrs("chat.test", 30, "127.0.1.2", "127.0.1.1", "::1")
	d.SetAddrs("short.test", 3, "127.0.1.9")
	d.SetSRV("srvonly.test", 30, upstreamtest.SRV{Port: 1, Target: "chat.test"})
	tests := []struct {
		name    string
		addr    string
		want    []Backend
		wantTTL time.Duration
	}{
		{"every A and AAAA record", "chat.test:8080",
			[]Backend{{"127.0.1.1:8080", 0}, {"127.0.1.2:8080", 0}, {"[::1]:8080", 0}}, 30 * time.Second},
		{"names are case-insensitive and may end in a dot", "CHAT.Test.:9", []Backend{
			{"127.0.1.1:9", 0}, {"127.0.1.2:9", 0}, {"[::1]:9", 0}}, 30 * time.Second},
		{"ttl", "short.test:1", []Backend{{"127.0.1.9:1", 0}}, 3 * time.Second},
		{"nxdomain is an empty answer", "absent.test:1", nil, -1},
		{"no records of the type asked is an empty answer", "srvonly.test:1", nil, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := lookupAt(t, d.Addr, DNSName{Addr: tt.addr})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(a.backends, tt.want) || a.ttl != tt.wantTTL {
				t.Errorf("lookup = %v, ttl %v; want %v, ttl %v", a.backends, a.ttl, tt.want, tt.wantTTL)
			}
		})
	}
}

func TestLookupSRV(t *testing.T) {
	type srv = upstreamtest.SRV
	tests := []struct {
		name    string
		records []srv
		glue    bool
		want    []Backend
	}{
		{
			name:    "ports and weights from the records, addresses from the glue",
			records: []srv{{Weight: 10, Port: 7001, Target: "a.test"}, {Weight: 30, Port: 7002, Target: "b.test"}},
			glue:    true,
			want:    []Backend{{"127.0.2.1:7001", 1}, {"127.0.2.2:7002", 3}},
		},
		{
			name:    "targets looked up without glue",
			records: []srv{{Weight: 10, Port: 7001, Target: "a.test"}, {Weight: 30, Port: 7002, Target: "b.test"}},
			want:    []Backend{{"127.0.2.1:7001", 1}, {"127.0.2.2:7002", 3}},
		},
		{
			name:    "weight 0 counts as 1",
			records: []srv{{Weight: 0, Port: 7001, Target: "a.test"}, {Weight: 5, Port: 7002, Target: "b.test"}},
			glue:    true,
			want:    []Backend{{"127.0.2.1:7001", 1}, {"127.0.2.2:7002", 5}},
		},
		{
			name: "only the lowest priority",
			records: []srv{{Priority: 20, Weight: 1, Port: 7003, Target: "c.test"},
				{Priority: 10, Weight: 1, Port: 7001, Target: "a.test"}, {Priority: 10, Weight: 1, Port: 7002, Target: "b.test"}},
			glue: true,
			want: []Backend{{"127.0.2.1:7001", 1}, {"127.0.2.2:7002", 1}},
		},
		{
			name: "a priority whose targets have no address is passed over",
			records: []srv{{Priority: 1, Weight: 1, Port: 7000, Target: "gone.test"},
				{Priority: 2, Weight: 1, Port: 7003, Target: "c.test"}},
			want: []Backend{{"127.0.2.3:7003", 1}},
		},
		{
			name:    "a target of \".\" offers nothing",
			records: []srv{{Weight: 1, Port: 7000, Target: "."}, {Priority: 5, Weight: 1, Port: 7001, Target: "a.test"}},
			want:    []Backend{{"127.0.2.1:7001", 1}},
		},
		{
			name:    "one target, two ports, two backends; every address of a target",
			records: []srv{{Weight: 1, Port: 7001, Target: "dual.test"}, {Weight: 2, Port: 7002, Target: "dual.test"}},
			glue:    true,
			want:    []Backend{{"127.0.2.4:7001", 1}, {"127.0.2.4:7002", 2}, {"[::1]:7001", 1}, {"[::1]:7002", 2}},
		},
		{
			name:    "no target with an address",
			records: []srv{{Weight: 1, Port: 7000, Target: "gone.test"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := upstreamtest.StartDNS(t)
			d.SetAddrs("a.test", 30, "127.0.2.1")
			d.SetAddrs("b.test", 30, "127.0.2.2")
			d.SetAddrs("c.test", 30, "127.0.2.3")
			d.SetAddrs("dual.test", 30, "127.0.2.4", "::1")
			d.SetSRV("_ws._tcp.chat.test", 30, tt.records...)
			d.SetGlue(tt.glue)
			a, err := lookupAt(t, d.Addr, DNSName{SRV: "_ws._tcp.chat.test"})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(a.backends, tt.want) {
				t.Errorf("lookup = %v, want %v", a.backends, tt.want)
			}
			if got := d.Queries("a.test"); tt.glue && got > 0 {
				t.Errorf("%d queries for a target the glue gave", got)
			}
		})
	}
}

func TestSRVWeights(t *testing.T) {
	tests := []struct {
		give []uint16
		want []int
	}{
		{[]uint16{1, 1, 1}, []int{1, 1, 1}},
		{[]uint16{33, 33, 33}, []int{1, 1, 1}}, // CoreDNS: 100/3 each
		{[]uint16{25, 25, 25, 25}, []int{1, 1, 1, 1}},
		{[]uint16{10, 30}, []int{1, 3}},
		{[]uint16{100, 150}, []int{1, 2}},
		{[]uint16{0, 0}, []int{1, 1}},
		{[]uint16{0, 7}, []int{1, 7}},
		{[]uint16{1, 65535}, []int{1, 1000}},
		{[]uint16{65535}, []int{1}},
	}
	for _, tt := range tests {
		if got := srvWeights(tt.give); !slices.Equal(got, tt.want) {
			t.Errorf("srvWeights(%v) = %v, want %v", tt.give, got, tt.want)
		}
	}
}

func TestLookupLargeAnswerOverTCP(t *testing.T) {
	d := upstreamtest.StartDNS(t)
	var ips []string
	for i := range 300 { // about 4.8kB of A records: more than any UDP reply asked for
		ips = append(ips, fmt.Sprintf("127.0.%d.%d", 10+i/200, 1+i%200))
	}
	d.SetAddrs("big.test", 30, ips...)
	a, err := lookupAt(t, d.Addr, DNSName{Addr: "big.test:80"})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.backends) != 300 {
		t.Errorf("%d backends, want 300", len(a.backends))
	}
}

func TestLookupFailures(t *testing.T) {
	tests := []struct {
		name     string
		fail     func(d *upstreamtest.DNS)
		wantKind string
	}{
		{"servfail", func(d *upstreamtest.DNS) { d.SetRcode(dns.RcodeServerFailure) }, kindServfail},
		{"refused", func(d *upstreamtest.DNS) { d.SetRcode(dns.RcodeRefused) }, kindRefused},
		{"not implemented", func(d *upstreamtest.DNS) { d.SetRcode(dns.RcodeNotImplemented) }, kindBadAnswer},
		{"timeout", func(d *upstreamtest.DNS) { d.SetSilent(true) }, kindTimeout},
		{"server gone", func(d *upstreamtest.DNS) { d.Close() }, kindUnreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := upstreamtest.StartDNS(t)
			d.SetAddrs("chat.test", 30, "127.0.1.1")
			tt.fail(d)
			start := time.Now()
			_, err := lookupAt(t, d.Addr, DNSName{Addr: "chat.test:80"})
			if got := errorKind(err); err == nil || got != tt.wantKind {
				t.Fatalf("lookup error %v of kind %q, want kind %q", err, got, tt.wantKind)
			}
			if took := time.Since(start); took > time.Second {
				t.Errorf("failed after %v, want within the 200ms query timeout and some", took)
			}
		})
	}
}

func TestLookupTriesServersInTurn(t *testing.T) {
	dead, live := upstreamtest.StartDNS(t), upstreamtest.StartDNS(t)
	dead.Close()
	live.SetAddrs("chat.test", 30, "127.0.1.1")
	q := &query{c: testClient(), servers: []string{dead.Addr, live.Addr}, ttl: -1}
	ips, err := q.addrs(t.Context(), "chat.test")
	if err != nil || len(ips) != 1 {
		t.Errorf("addrs = %v, %v; want the live server's answer", ips, err)
	}
}

func TestResolvConfServers(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tests := []struct {
		name     string
		path     string
		resolver string
		want     []string
		wantKind string
	}{
		{"resolver named", "/nonexistent", "10.96.0.10:53", []string{"10.96.0.10:53"}, ""},
		{"nameservers in order", write("k8s", "search default.svc.cluster.local svc.cluster.local\n"+
			"nameserver 10.96.0.10\nnameserver fd00::10\noptions ndots:5\n"), "", []string{"10.96.0.10:53", "[fd00::10]:53"}, ""},
		{"no nameserver means the local one", write("empty", "search example.com\n"), "", []string{"127.0.0.1:53", "[::1]:53"}, ""},
		{"no file", filepath.Join(dir, "absent"), "", nil, kindNoServer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dnsClient{timeout: time.Second, resolvConf: tt.path}
			got, err := c.servers(tt.resolver)
			if tt.wantKind != "" {
				if errorKind(err) != tt.wantKind {
					t.Fatalf("servers error %v, want kind %s", err, tt.wantKind)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("servers = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestCollectFollowsAliases(t *testing.T) {
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	answer := []dns.RR{
		rr("chat.test. 60 IN CNAME web.test."),
		rr("web.test. 20 IN CNAME pods.test."),
		rr("pods.test. 40 IN A 127.0.1.1"),
		rr("pods.test. 40 IN AAAA ::1"),
		rr("other.test. 1 IN A 127.0.1.9"), // not on the way: ignored, TTL too
	}
	q := &query{ttl: -1}
	got := q.collect(answer, "CHAT.test")
	if want := "[127.0.1.1 ::1]"; fmt.Sprint(got) != want {
		t.Errorf("collect = %v, want %s", got, want)
	}
	if q.ttl != 20*time.Second {
		t.Errorf("ttl = %v, want the shortest on the way, 20s", q.ttl)
	}
	loop := []dns.RR{rr("a.test. 60 IN CNAME b.test."), rr("b.test. 60 IN CNAME a.test.")}
	if got := (&query{ttl: -1}).collect(loop, "a.test"); len(got) != 0 {
		t.Errorf("collect of a loop = %v, want nothing", got)
	}
}

func TestDNSNameDefaults(t *testing.T) {
	tests := []struct {
		give    DNSName
		want    DNSName
		wantErr string
	}{
		{give: DNSName{Addr: "chat.test:80"}, want: DNSName{Addr: "chat.test:80", Weight: 1, Interval: 5 * time.Second}},
		{give: DNSName{SRV: "_ws._tcp.chat.test", Weight: 5000, Interval: time.Second, Resolver: "[::1]:53"},
			want: DNSName{SRV: "_ws._tcp.chat.test", Weight: 1000, Interval: time.Second, Resolver: "[::1]:53"}},
		{give: DNSName{Addr: "chat.test:80", SRV: "_ws._tcp.chat.test"}, wantErr: "both an address and SRV name"},
		{give: DNSName{}, wantErr: "neither"},
		{give: DNSName{Addr: "127.0.0.1:80"}, wantErr: "want a host name"},
		{give: DNSName{Addr: "chat.test"}, wantErr: "missing port"},
		{give: DNSName{Addr: "chat.test:0"}, wantErr: "bad port"},
		{give: DNSName{Addr: "chat.test:80", Resolver: "dns.test:53"}, wantErr: "want an IP address"},
		{give: DNSName{Addr: "chat.test:80", Resolver: "10.0.0.1"}, wantErr: "missing port"},
	}
	for _, tt := range tests {
		got, err := tt.give.withDefaults()
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%+v: error %v, want %q", tt.give, err, tt.wantErr)
			}
		case err != nil || got != tt.want:
			t.Errorf("%+v: %+v, %v; want %+v", tt.give, got, err, tt.want)
		}
	}
}
