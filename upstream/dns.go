package upstream

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// DNSName is a name in DNS whose records are backends: a Kubernetes
// headless Service gives every ready pod's address as an A record, Consul
// and Nomad give SRV records with ports and weights. The Set looks the
// name up again and again; an address that appears is a backend joining,
// one that disappears a backend leaving.
//
// Names are looked up as written, fully qualified: the search list of
// resolv.conf is not applied, as nginx's and HAProxy's resolvers do not
// apply it, so that every proxy asks for exactly the same name and a
// short name cannot match some other domain.
type DNSName struct {
	// Addr is host:port: every A and AAAA record of host is a backend
	// ip:port of weight Weight. Set Addr or SRV, not both.
	Addr string
	// SRV names SRV records (RFC 2782), such as
	// "_ws._tcp.chat.default.svc.cluster.local". Only the lowest priority
	// that has targets with addresses is used, as SRV clients do; every
	// address of those targets is a backend on its record's port, weighted
	// as srvWeights says.
	SRV string
	// Weight is the weight of every backend of Addr: below 1 counts as 1
	// and above 1000 as 1000. SRV records carry their own.
	Weight int
	// Interval is how often the name is looked up again. Records whose
	// TTL is shorter bring the next lookup forward, but never to less than
	// a second after the last: a TTL of 0, Consul's default, would
	// otherwise become a stream of queries. Zero means 5s.
	Interval time.Duration
	// Resolver is the DNS server asked, ip:port. Zero means the
	// nameservers of /etc/resolv.conf, read again at every lookup and
	// tried in order.
	Resolver string
}

// defaultResolveInterval is DNSName.Interval's default: as often as
// Kubernetes' cluster DNS lets its answers live (CoreDNS's TTL is 5s), so
// a new pod takes traffic within seconds.
const defaultResolveInterval = 5 * time.Second

// withDefaults fills in zero values and checks the rest.
func (n DNSName) withDefaults() (DNSName, error) {
	switch {
	case n.Addr != "" && n.SRV != "":
		return n, fmt.Errorf("upstream: dns name %q: both an address and SRV name %q", n.Addr, n.SRV)
	case n.Addr != "":
		host, port, err := net.SplitHostPort(n.Addr)
		if err != nil {
			return n, fmt.Errorf("upstream: dns name %q: %w", n.Addr, err)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return n, fmt.Errorf("upstream: dns name %q: bad port", n.Addr)
		}
		if _, err := netip.ParseAddr(host); err == nil || host == "" {
			return n, fmt.Errorf("upstream: dns name %q: want a host name to resolve", n.Addr)
		}
	case n.SRV == "":
		return n, fmt.Errorf("upstream: dns name: neither an address nor an SRV name")
	}
	if n.Resolver != "" {
		host, _, err := net.SplitHostPort(n.Resolver)
		if err != nil {
			return n, fmt.Errorf("upstream: dns resolver %q: %w", n.Resolver, err)
		}
		if _, err := netip.ParseAddr(host); err != nil {
			return n, fmt.Errorf("upstream: dns resolver %q: want an IP address", n.Resolver)
		}
	}
	n.Weight = min(max(n.Weight, 1), maxWeight)
	if n.Interval <= 0 {
		n.Interval = defaultResolveInterval
	}
	return n, nil
}

// label names n in logs and metrics as the config does: its address or
// its SRV name.
func (n DNSName) label() string {
	if n.SRV != "" {
		return n.SRV
	}
	return n.Addr
}

// key identifies n across reloads: what is looked up. Its weight,
// interval and resolver may change under one key without forgetting what
// the name resolved to, so that a reload that only points it at another
// DNS server moves no client.
func (n DNSName) key() string {
	return strings.ToLower(strings.TrimSuffix(n.label(), "."))
}

// dnsNames is what a Set knows of its DNS names. Entries, errs and
// watches are guarded by Set.mu; client and floor are set before Run (by
// New, or by tests) and only read after.
type dnsNames struct {
	entries map[string]*dnsEntry         // by DNSName.key
	errs    map[string]map[string]uint64 // label → kind → failed lookups, never reset
	watches uint64                       // watchers started, to number the next

	client dnsClient
	floor  time.Duration // the soonest a TTL brings a lookup forward
}

// dnsEntry is one DNS name of the config and what its answers made of it.
type dnsEntry struct {
	name  DNSName
	state dnsState
	// watch is the generation of the goroutine looking the name up; the
	// results of an older one, replaced for a new interval or resolver,
	// are dropped.
	watch uint64
}

// minResolveWait is how soon, at the earliest, records with a short TTL
// bring the next lookup of a name forward.
const minResolveWait = time.Second

func newDNSNames() dnsNames {
	return dnsNames{
		entries: make(map[string]*dnsEntry),
		errs:    make(map[string]map[string]uint64),
		client:  dnsClient{timeout: defaultQueryTimeout, resolvConf: defaultResolvConf},
		floor:   minResolveWait,
	}
}

// normalizeDNS copies names with defaults, one per key, in order.
func normalizeDNS(names []DNSName) ([]DNSName, error) {
	out := make([]DNSName, 0, len(names))
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		n, err := n.withDefaults()
		if err != nil {
			return nil, err
		}
		if !seen[n.key()] {
			seen[n.key()] = true
			out = append(out, n)
		}
	}
	return out, nil
}

// setDNSNamesLocked makes names the DNS names of the Set. A name that
// stays keeps what it resolved to, under its new settings (its weight
// applies at once); a name that goes takes its backends with it; a new
// one has none until it is looked up.
// s.mu must be held.
func (s *Set) setDNSNamesLocked(names []DNSName) {
	keep := make(map[string]bool, len(names))
	for _, n := range names {
		k := n.key()
		keep[k] = true
		e := s.dns.entries[k]
		if e == nil {
			e = &dnsEntry{}
			s.dns.entries[k] = e
		}
		e.name = n
		if n.SRV == "" {
			for i := range e.state.backends {
				e.state.backends[i].Weight = n.Weight
			}
		}
		if s.dns.errs[n.label()] == nil {
			s.dns.errs[n.label()] = make(map[string]uint64)
		}
	}
	for k := range s.dns.entries {
		if !keep[k] {
			delete(s.dns.entries, k)
		}
	}
	s.syncDNSLocked(rising) // nothing new can appear here
}

// syncDNSLocked makes the members agree with what the DNS names resolved
// to. An address several names give takes the largest of their weights.
// New addresses start with the health fresh returns. s.mu must be held.
func (s *Set) syncDNSLocked(fresh func() health) {
	want := make(map[string]int)
	for _, e := range s.dns.entries {
		for _, b := range e.state.backends {
			want[b.Addr] = max(want[b.Addr], b.Weight)
		}
	}
	for addr, m := range s.members {
		if m.dnsWeight == 0 || want[addr] > 0 {
			continue
		}
		m.dnsWeight = 0
		if !m.static && m.node == "" {
			delete(s.members, addr)
		}
	}
	for addr, w := range want {
		m := s.members[addr]
		if m == nil {
			m = &member{addr: addr, health: fresh()}
			s.members[addr] = m
		}
		m.dnsWeight = w
	}
}

// applyDNS folds the result of one lookup of the name under key, by the
// watcher of generation watch, into the Set, and returns how long to wait
// before the next. The first answer a name gets is what the config lists,
// trusted as static backends are so that a restarted proxy routes at
// once; addresses that appear later are new pods, which may be in DNS
// before their server listens, so they must pass rise checks first, as
// gossiped backends do.
func (s *Set) applyDNS(key string, watch uint64, a dnsAnswer, err error) time.Duration {
	s.mu.Lock()
	e := s.dns.entries[key]
	if e == nil || e.watch != watch {
		s.mu.Unlock()
		return defaultResolveInterval // the watcher is stopping
	}
	fresh := rising
	if !e.state.answered {
		fresh = trusted
	}
	if e.name.SRV == "" {
		for i := range a.backends {
			a.backends[i].Weight = e.name.Weight
		}
	}
	out := e.state.observe(a, err)
	if kind := out.count; kind != "" {
		s.dns.errs[e.name.label()][kind]++
	}
	var old, cur *Snapshot
	if out.changed {
		s.syncDNSLocked(fresh)
		old, cur = s.commitLocked()
	}
	name, kept := e.name, len(e.state.backends)
	wait := e.name.Interval
	if err == nil {
		wait = resolveWait(e.name.Interval, a.ttl, s.dns.floor)
	}
	s.mu.Unlock()

	s.logDNS(name, out, err, kept)
	s.announce(old, cur)
	if out.changed {
		s.wakeRun() // new members to probe, or old ones to stop probing
	}
	return wait
}

// resolveWait is how long to wait before looking a name up again after an
// answer whose records live ttl (-1: it had none): interval, or the TTL
// when that is shorter, but never less than floor on the TTL's account.
// After a failed lookup the wait is interval.
func resolveWait(interval, ttl, floor time.Duration) time.Duration {
	if ttl < 0 {
		return interval
	}
	return min(interval, max(ttl, floor))
}

// logDNS logs what a lookup changed: the start and the end of an outage,
// once each however many lookups fail, and empty answers.
func (s *Set) logDNS(n DNSName, out dnsOutcome, err error, kept int) {
	name := zap.String("name", n.label())
	switch {
	case out.failing:
		s.log.Warn("dns lookup failed; keeping the backends it last gave", name, zap.Error(err),
			zap.Int("backends", kept))
	case out.recovered > 0:
		s.log.Info("dns lookup answers again", name, zap.Int("failed_lookups", out.recovered),
			zap.Int("backends", kept))
	}
	switch {
	case out.doubted:
		s.log.Warn("dns name has no records; its backends stay unless the next lookup agrees", name,
			zap.Int("backends", kept))
	case out.emptied:
		s.log.Warn("dns name has no records twice in a row; its backends leave", name)
	case out.changed:
		s.log.Info("dns name resolved", name, zap.Int("backends", kept))
	}
}

// DNSErrors returns how many lookups of each DNS name failed since New,
// by name (its address or SRV name, as the config writes it) and kind:
//
//   - "timeout": no answer in time from any server;
//   - "unreachable": no server could be reached (connection refused,
//     no route);
//   - "servfail", "refused": the server answered with that error;
//   - "bad_answer": another error code, or a reply that does not parse;
//   - "no_server": no resolver given and none in /etc/resolv.conf;
//   - "no_records": the name exists nowhere or has no records (NXDOMAIN
//     or an empty answer). Not a failure of the resolver, and believed
//     when seen twice in a row; counted so that a name gone empty shows.
//
// A failed lookup changes nothing: the name keeps the backends it last
// gave. Every current name has every kind in the map, counted or not;
// a name removed from the config keeps its counts. Safe for concurrent
// use.
func (s *Set) DNSErrors() map[string]map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]map[string]uint64, len(s.dns.errs))
	for name, kinds := range s.dns.errs {
		m := make(map[string]uint64, len(dnsErrorKinds))
		for _, k := range dnsErrorKinds {
			m[k] = kinds[k]
		}
		out[name] = m
	}
	return out
}
