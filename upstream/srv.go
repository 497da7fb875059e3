package upstream

import (
	"context"
	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"

	"github.com/miekg/dns"
)

// srv returns the backends the SRV records of name give (RFC 2782): the
// targets of the lowest priority that has any target with an address,
// each address on its record's port, weighted by srvWeights. A target of
// "." says the service is not offered there and is skipped. Addresses the
// reply carries for a target in its additional section, as CoreDNS and
// Consul send them, are used as given; a target without any is looked up.
func (q *query) srv(ctx context.Context, name string) ([]Backend, error) {
	r, err := q.ask(ctx, name, dns.TypeSRV)
	if err != nil {
		return nil, err
	}
	owner := q.follow(r.Answer, name)
	var recs []*dns.SRV
	for _, rr := range r.Answer {
		if s, ok := rr.(*dns.SRV); ok && sameName(s.Hdr.Name, owner) && s.Target != "." {
			recs = append(recs, s)
			q.used(s)
		}
	}
	slices.SortStableFunc(recs, func(a, b *dns.SRV) int { return int(a.Priority) - int(b.Priority) })

	found := make(map[string][]netip.Addr) // target → its addresses
	for len(recs) > 0 {
		n := 1
		for n < len(recs) && recs[n].Priority == recs[0].Priority {
			n++
		}
		group := recs[:n]
		recs = recs[n:]
		var live []*dns.SRV // records of the group whose target has addresses
		for _, s := range group {
			ips, ok := found[s.Target]
			if !ok {
				if ips = q.collect(r.Extra, s.Target); len(ips) == 0 {
					if ips, err = q.addrs(ctx, s.Target); err != nil {
						return nil, err
					}
				}
				found[s.Target] = ips
			}
			if len(ips) > 0 {
				live = append(live, s)
			}
		}
		if len(live) == 0 {
			continue
		}
		weights := make([]uint16, len(live))
		for i, s := range live {
			weights[i] = s.Weight
		}
		var out []Backend
		for i, w := range srvWeights(weights) {
			port := strconv.Itoa(int(live[i].Port))
			for _, ip := range found[live[i].Target] {
				out = append(out, Backend{Addr: net.JoinHostPort(ip.String(), port), Weight: w})
			}
		}
		return out, nil
	}
	return nil, nil
}

// srvWeights maps the SRV weights of one priority group onto ring weights
// of 1..maxWeight: a weight of 0 counts as 1, the lightest record gets 1
// and every other its weight relative to the lightest, rounded, at most
// maxWeight. Only ratios matter on a ring, and keeping them small keeps
// the ring small: equal weights are 1 each however large they are. That
// also keeps the ring still when a resolver splits 100 among the targets
// (CoreDNS gives each of n endpoints 100/n): a pod coming or going
// changes everyone's SRV weight but no one's ring weight.
func srvWeights(ws []uint16) []int {
	lightest := math.MaxUint16
	for _, w := range ws {
		lightest = min(lightest, max(int(w), 1))
	}
	out := make([]int, len(ws))
	for i, w := range ws {
		ratio := float64(max(int(w), 1)) / float64(lightest)
		out[i] = min(int(math.Round(ratio)), maxWeight)
	}
	return out
}
