package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Kinds of failed lookups, as DNSErrors and wsedge_dns_errors_total name
// them.
const (
	kindTimeout     = "timeout"
	kindUnreachable = "unreachable"
	kindServfail    = "servfail"
	kindRefused     = "refused"
	kindBadAnswer   = "bad_answer"
	kindNoServer    = "no_server"
	kindNoRecords   = "no_records"
)

// dnsErrorKinds lists every kind DNSErrors reports.
var dnsErrorKinds = []string{kindTimeout, kindUnreachable, kindServfail, kindRefused, kindBadAnswer, kindNoServer, kindNoRecords}

const (
	// defaultQueryTimeout bounds one query to one server, as the Go and
	// miekg/dns resolvers do by default; with several servers each has
	// its turn.
	defaultQueryTimeout = 2 * time.Second
	// defaultResolvConf names the servers of names that name none.
	defaultResolvConf = "/etc/resolv.conf"
	// udpSize is the largest UDP reply asked for (EDNS0, RFC 6891): the
	// size DNS Flag Day 2020 settled on to stay clear of fragmentation,
	// room for about 60 A records. A larger answer comes back truncated
	// and is asked for again over TCP, so a fleet of any size resolves.
	udpSize = 1232
	// maxCNAMEs bounds the chain of aliases followed within one answer.
	maxCNAMEs = 8
)

// dnsClient asks DNS servers for the records of names. Its zero value is
// not ready: newDNSNames builds one.
type dnsClient struct {
	timeout    time.Duration // bounds one query to one server
	resolvConf string        // read for servers when a name names none
}

// dnsAnswer is what one lookup of a name found.
type dnsAnswer struct {
	// backends are sorted by Addr, one per address; their weights are the
	// SRV records', or 0 for addresses of A and AAAA records, which take
	// their entry's weight.
	backends []Backend
	ttl      time.Duration // the shortest TTL of the records used; -1 when none was
}

// lookupError is a lookup that got no answer worth believing.
type lookupError struct {
	kind   string // one of dnsErrorKinds
	server string // the server asked last; "" when none was
	query  string // name and type asked, as in "chat.default.svc. A"
	err    error
}

func (e *lookupError) Error() string {
	if e.server == "" {
		return "dns: " + e.err.Error()
	}
	return "dns " + e.query + " at " + e.server + ": " + e.err.Error()
}

func (e *lookupError) Unwrap() error { return e.err }

// errorKind returns the kind of a lookup error.
func errorKind(err error) string {
	var le *lookupError
	if errors.As(err, &le) {
		return le.kind
	}
	return kindBadAnswer
}

// lookup looks n up once.
func (c dnsClient) lookup(ctx context.Context, n DNSName) (dnsAnswer, error) {
	servers, err := c.servers(n.Resolver)
	if err != nil {
		return dnsAnswer{}, err
	}
	q := &query{c: c, servers: servers, ttl: -1}
	var backends []Backend
	if n.SRV != "" {
		backends, err = q.srv(ctx, n.SRV)
	} else {
		host, port, _ := net.SplitHostPort(n.Addr) // checked by withDefaults
		var ips []netip.Addr
		ips, err = q.addrs(ctx, host)
		for _, ip := range ips {
			backends = append(backends, Backend{Addr: net.JoinHostPort(ip.String(), port)})
		}
	}
	if err != nil {
		return dnsAnswer{}, err
	}
	return dnsAnswer{backends: uniqueBackends(backends), ttl: q.ttl}, nil
}

// servers returns the servers to ask for a name with resolver: resolver
// itself, or the nameservers of resolv.conf, read now so that a changed
// file takes effect. A file without any means the local server, as the C
// library and Go take it.
func (c dnsClient) servers(resolver string) ([]string, error) {
	if resolver != "" {
		return []string{resolver}, nil
	}
	cc, err := dns.ClientConfigFromFile(c.resolvConf)
	if err != nil {
		return nil, &lookupError{kind: kindNoServer, err: err}
	}
	if len(cc.Servers) == 0 {
		return []string{"127.0.0.1:53", "[::1]:53"}, nil
	}
	out := make([]string, len(cc.Servers))
	for i, s := range cc.Servers {
		out[i] = net.JoinHostPort(s, cc.Port)
	}
	return out, nil
}

// query is one lookup under way: where it asks, and the shortest TTL of
// the records it used so far.
type query struct {
	c       dnsClient
	servers []string
	ttl     time.Duration
}

// used notes the TTL of a record the answer relies on.
func (q *query) used(rr dns.RR) {
	ttl := time.Duration(rr.Header().Ttl) * time.Second
	if q.ttl < 0 || ttl < q.ttl {
		q.ttl = ttl
	}
}

// ask asks the servers in turn for name's records of type qtype, until one
// answers. NXDOMAIN is an answer, with no records.
func (q *query) ask(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(udpSize, false)
	var err error
	for _, server := range q.servers {
		var r *dns.Msg
		if r, err = q.c.exchange(ctx, m, server); err == nil || ctx.Err() != nil {
			return r, err
		}
	}
	return nil, err
}

// exchange sends m to server over UDP, and again over TCP when the reply
// is truncated, and judges the reply.
func (c dnsClient) exchange(ctx context.Context, m *dns.Msg, server string) (*dns.Msg, error) {
	fail := func(kind string, err error) error {
		q := m.Question[0]
		return &lookupError{kind: kind, server: server, query: q.Name + " " + dns.TypeToString[q.Qtype], err: err}
	}
	cl := dns.Client{Net: "udp", Timeout: c.timeout, UDPSize: udpSize}
	r, _, err := cl.ExchangeContext(ctx, m, server)
	if err == nil && r.Truncated {
		cl.Net = "tcp"
		r, _, err = cl.ExchangeContext(ctx, m, server)
	}
	var ne net.Error
	var oe *net.OpError
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return nil, fail(kindTimeout, err)
	case errors.As(err, &oe):
		return nil, fail(kindUnreachable, err)
	case err != nil:
		return nil, fail(kindBadAnswer, err)
	}
	switch r.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		return r, nil
	case dns.RcodeServerFailure:
		return nil, fail(kindServfail, errors.New("answered SERVFAIL"))
	case dns.RcodeRefused:
		return nil, fail(kindRefused, errors.New("answered REFUSED"))
	}
	return nil, fail(kindBadAnswer, fmt.Errorf("answered %s", dns.RcodeToString[r.Rcode]))
}

// addrs returns the A and AAAA addresses of host. Either query failing
// fails both: half an answer would take half the fleet out of the ring.
func (q *query) addrs(ctx context.Context, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		r, err := q.ask(ctx, host, qtype)
		if err != nil {
			return nil, err
		}
		out = append(out, q.collect(r.Answer, host)...)
	}
	return out, nil
}

// collect returns the addresses rrs give name, following the aliases
// (CNAME records) rrs hold from name on, and notes the TTL of every record
// it uses.
func (q *query) collect(rrs []dns.RR, name string) []netip.Addr {
	owner := q.follow(rrs, name)
	var out []netip.Addr
	for _, rr := range rrs {
		if !sameName(rr.Header().Name, owner) {
			continue
		}
		var ip net.IP
		switch rr := rr.(type) {
		case *dns.A:
			ip = rr.A
		case *dns.AAAA:
			ip = rr.AAAA
		default:
			continue
		}
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, a.Unmap())
			q.used(rr)
		}
	}
	return out
}

// follow returns the name the aliases in rrs lead to from name.
func (q *query) follow(rrs []dns.RR, name string) string {
	for range maxCNAMEs {
		i := slices.IndexFunc(rrs, func(rr dns.RR) bool {
			_, ok := rr.(*dns.CNAME)
			return ok && sameName(rr.Header().Name, name)
		})
		if i < 0 {
			break
		}
		q.used(rrs[i])
		name = rrs[i].(*dns.CNAME).Target
	}
	return name
}

// sameName compares DNS names as DNS does: without regard to case, and to
// the final dot.
func sameName(a, b string) bool {
	return strings.EqualFold(strings.TrimSuffix(a, "."), strings.TrimSuffix(b, "."))
}

// uniqueBackends sorts backends by address and keeps one per address,
// with the largest weight it came with.
func uniqueBackends(backends []Backend) []Backend {
	slices.SortFunc(backends, func(a, b Backend) int {
		if c := strings.Compare(a.Addr, b.Addr); c != 0 {
			return c
		}
		return b.Weight - a.Weight // heaviest first: Compact keeps it
	})
	return slices.CompactFunc(backends, func(a, b Backend) bool { return a.Addr == b.Addr })
}
