package upstreamtest

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func ask(t *testing.T, d *DNS, name string, qtype uint16, network string) (*dns.Msg, error) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := dns.Client{Net: network, Timeout: 300 * time.Millisecond}
	r, _, err := c.Exchange(m, d.Addr)
	return r, err
}

func TestDNSAnswers(t *testing.T) {
	d := StartDNS(t)
	d.SetAddrs("pods.test", 5, "127.0.1.1", "::1")
	d.SetAddrs("a.test", 7, "127.0.1.2")
	d.SetSRV("_ws._tcp.pods.test", 9, SRV{Priority: 1, Weight: 2, Port: 7000, Target: "a.test"})
	tests := []struct {
		name      string
		qname     string
		qtype     uint16
		glue      bool
		wantRcode int
		wantAns   int
		wantExtra int
	}{
		{"A", "pods.test", dns.TypeA, true, dns.RcodeSuccess, 1, 0},
		{"AAAA, any case", "PODS.test", dns.TypeAAAA, true, dns.RcodeSuccess, 1, 0},
		{"no records of the type", "pods.test", dns.TypeSRV, true, dns.RcodeSuccess, 0, 0},
		{"unknown name", "nobody.test", dns.TypeA, true, dns.RcodeNameError, 0, 0},
		{"SRV with glue", "_ws._tcp.pods.test", dns.TypeSRV, true, dns.RcodeSuccess, 1, 1},
		{"SRV without glue", "_ws._tcp.pods.test", dns.TypeSRV, false, dns.RcodeSuccess, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d.SetGlue(tt.glue)
			r, err := ask(t, d, tt.qname, tt.qtype, "udp")
			if err != nil {
				t.Fatal(err)
			}
			if r.Rcode != tt.wantRcode || len(r.Answer) != tt.wantAns || len(r.Extra) != tt.wantExtra {
				t.Errorf("answer %s with %d records and %d extra, want %s, %d and %d:\n%v", dns.RcodeToString[r.Rcode],
					len(r.Answer), len(r.Extra), dns.RcodeToString[tt.wantRcode], tt.wantAns, tt.wantExtra, r)
			}
		})
	}
	d.SetAddrs("pods.test", 5)
	if r, err := ask(t, d, "pods.test", dns.TypeA, "udp"); err != nil || r.Rcode != dns.RcodeNameError {
		t.Errorf("after removing every record: %v, %v; want NXDOMAIN", r, err)
	}
	if got := d.Queries("pods.test."); got != 4 {
		t.Errorf("Queries = %d, want 4: A, AAAA, SRV and A again", got)
	}
}

func TestDNSTruncatesOverUDPOnly(t *testing.T) {
	d := StartDNS(t)
	var ips []string
	for i := 1; i <= 100; i++ {
		ips = append(ips, net.IPv4(127, 0, 3, byte(i)).String())
	}
	d.SetAddrs("big.test", 5, ips...)
	r, err := ask(t, d, "big.test", dns.TypeA, "udp")
	if err != nil || !r.Truncated || len(r.Answer) == 100 {
		t.Errorf("over UDP without EDNS0: %d records, truncated %v, %v; want fewer than 100, truncated", len(r.Answer), r.Truncated, err)
	}
	r, err = ask(t, d, "big.test", dns.TypeA, "tcp")
	if err != nil || r.Truncated || len(r.Answer) != 100 {
		t.Errorf("over TCP: %d records, truncated %v, %v; want all 100", len(r.Answer), r.Truncated, err)
	}
}

func TestDNSFailures(t *testing.T) {
	d := StartDNS(t)
	d.SetAddrs("pods.test", 5, "127.0.1.1")
	d.SetRcode(dns.RcodeServerFailure)
	if r, err := ask(t, d, "pods.test", dns.TypeA, "udp"); err != nil || r.Rcode != dns.RcodeServerFailure || len(r.Answer) != 0 {
		t.Errorf("SetRcode: %v, %v; want SERVFAIL and no records", r, err)
	}
	d.SetRcode(0)
	d.SetSilent(true)
	var ne net.Error
	if _, err := ask(t, d, "pods.test", dns.TypeA, "udp"); !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("SetSilent: %v, want a timeout", err)
	}
	d.SetSilent(false)
	d.Close()
	if _, err := ask(t, d, "pods.test", dns.TypeA, "udp"); err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("after Close: %v, want the port closed", err)
	}
	d.Close() // again: a no-op
}
