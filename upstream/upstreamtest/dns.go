package upstreamtest

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// DNS is a DNS server on loopback whose records a test sets and changes as
// it goes, as a cluster DNS changes its answers when pods come and go. It
// answers over UDP and TCP on one port, authoritatively, for the names it
// was given: NXDOMAIN for any other, and an empty answer for a name that
// has records of other types only. UDP replies larger than the client
// asked for (512 bytes without EDNS0) are truncated, so clients must fall
// back to TCP as real ones do.
//
// A DNS is safe for concurrent use. Close stops it and waits for every
// goroutine it started.
type DNS struct {
	// Addr is the host:port it answers on, UDP and TCP. Read it; do not
	// change it.
	Addr string

	udp, tcp *dns.Server
	served   sync.WaitGroup // the two serve loops

	mu      sync.Mutex          // guards the fields below
	zone    map[string][]dns.RR // lower-case FQDN → its records
	glue    bool                // SRV answers carry their targets' addresses
	rcode   int                 // answer every query with this code; 0: answer from the zone
	silent  bool                // answer nothing
	queries map[string]int      // lower-case FQDN → queries for it, of any type
	closed  bool
}

// SRV is one SRV record (RFC 2782).
type SRV struct {
	Priority, Weight, Port uint16
	Target                 string
}

// StartDNS starts a DNS server and registers its Close with tb.Cleanup. It
// fails the test if the server cannot listen.
func StartDNS(tb testing.TB) *DNS {
	tb.Helper()
	d, err := NewDNS()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(d.Close)
	return d
}

// NewDNS starts a DNS server on a free port of 127.0.0.1, with no records
// and glue on. The caller must Close it.
func NewDNS() (*DNS, error) {
	var pc net.PacketConn
	var ln net.Listener
	var err error
	// The TCP port must be the UDP one, which something else may hold.
	for range 10 {
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("upstreamtest: dns: %w", err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("upstreamtest: dns: %w", err)
	}
	d := &DNS{
		Addr:    pc.LocalAddr().String(),
		zone:    make(map[string][]dns.RR),
		glue:    true,
		queries: make(map[string]int),
	}
	var started sync.WaitGroup
	started.Add(2)
	d.udp = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(d.answer), NotifyStartedFunc: started.Done}
	d.tcp = &dns.Server{Listener: ln, Handler: dns.HandlerFunc(d.answer), NotifyStartedFunc: started.Done}
	for _, srv := range []*dns.Server{d.udp, d.tcp} {
		d.served.Go(func() { srv.ActivateAndServe() })
	}
	started.Wait() // Shutdown refuses a server that has not started
	return d, nil
}

// SetAddrs makes ips, IPv4 or IPv6 addresses, the A and AAAA records of
// name, each with ttl in seconds, in place of those it had. With no ips
// name has none: lookups of it then get NXDOMAIN, unless it has records of
// another type.
func (d *DNS) SetAddrs(name string, ttl uint32, ips ...string) {
	var rrs []dns.RR
	for _, s := range ips {
		ip := netip.MustParseAddr(s)
		hdr := dns.RR_Header{Name: dns.Fqdn(name), Class: dns.ClassINET, Ttl: ttl}
		if ip.Is4() {
			hdr.Rrtype = dns.TypeA
			rrs = append(rrs, &dns.A{Hdr: hdr, A: ip.AsSlice()})
		} else {
			hdr.Rrtype = dns.TypeAAAA
			rrs = append(rrs, &dns.AAAA{Hdr: hdr, AAAA: ip.AsSlice()})
		}
	}
	d.set(name, rrs, dns.TypeA, dns.TypeAAAA)
}

// SetSRV makes recs the SRV records of name, each with ttl in seconds, in
// place of those it had.
func (d *DNS) SetSRV(name string, ttl uint32, recs ...SRV) {
	var rrs []dns.RR
	for _, r := range recs {
		rrs = append(rrs, &dns.SRV{
			Hdr:      dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: ttl},
			Priority: r.Priority, Weight: r.Weight, Port: r.Port, Target: dns.Fqdn(r.Target),
		})
	}
	d.set(name, rrs, dns.TypeSRV)
}

// SetGlue says whether SRV answers carry the A and AAAA records of their
// targets in their additional section, as CoreDNS and Consul send them.
// Without, clients must look the targets up. Default on.
func (d *DNS) SetGlue(on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.glue = on
}

// SetRcode makes the server answer every query with rcode, such as
// dns.RcodeServerFailure, and no records; 0 answers from the records
// again.
func (d *DNS) SetRcode(rcode int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rcode = rcode
}

// SetSilent makes the server read queries and answer none, so that
// lookups time out; false answers again.
func (d *DNS) SetSilent(silent bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.silent = silent
}

// Queries returns how many queries for name, of any type and over either
// transport, the server received.
func (d *DNS) Queries(name string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.queries[strings.ToLower(dns.Fqdn(name))]
}

// Close stops the server and waits for it. Queries sent afterwards reach a
// closed port. Close may be called more than once.
func (d *DNS) Close() {
	d.mu.Lock()
	closed := d.closed
	d.closed = true
	d.mu.Unlock()
	if closed {
		return
	}
	d.udp.Shutdown()
	d.tcp.Shutdown()
	d.served.Wait()
}

// set replaces the records of name of the types given with rrs.
func (d *DNS) set(name string, rrs []dns.RR, types ...uint16) {
	key := strings.ToLower(dns.Fqdn(name))
	d.mu.Lock()
	defer d.mu.Unlock()
	var kept []dns.RR
	for _, rr := range d.zone[key] {
		replaced := false
		for _, t := range types {
			replaced = replaced || rr.Header().Rrtype == t
		}
		if !replaced {
			kept = append(kept, rr)
		}
	}
	if kept = append(kept, rrs...); len(kept) == 0 {
		delete(d.zone, key)
		return
	}
	d.zone[key] = kept
}

// answer serves one query.
func (d *DNS) answer(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	key := strings.ToLower(q.Name)

	d.mu.Lock()
	d.queries[key]++
	silent, rcode := d.silent, d.rcode
	recs, exists := d.zone[key]
	for _, rr := range recs {
		if rr.Header().Rrtype == q.Qtype {
			m.Answer = append(m.Answer, dns.Copy(rr))
		}
	}
	if d.glue && q.Qtype == dns.TypeSRV {
		for _, rr := range m.Answer {
			for _, t := range d.zone[strings.ToLower(rr.(*dns.SRV).Target)] {
				if t.Header().Rrtype == dns.TypeA || t.Header().Rrtype == dns.TypeAAAA {
					m.Extra = append(m.Extra, dns.Copy(t))
				}
			}
		}
	}
	d.mu.Unlock()

	switch {
	case silent:
		return
	case rcode != 0:
		m.Answer, m.Extra = nil, nil
		m.Rcode = rcode
	case !exists:
		m.Rcode = dns.RcodeNameError
	}
	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		size = max(size, int(opt.UDPSize()))
		m.SetEdns0(opt.UDPSize(), false)
	}
	if _, udp := w.LocalAddr().(*net.UDPAddr); udp {
		m.Truncate(size)
	}
	w.WriteMsg(m)
}
