package bench

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// maxSources bounds a source range: 65,536 addresses already give billions
// of four-tuples, and a larger list would only cost memory.
const maxSources = 1 << 16

// ErrNotLoopback is returned for a target or source outside 127.0.0.0/8
// (or ::1).
var ErrNotLoopback = errors.New("not a loopback address")

// Sources is an ordered list of local addresses that client connections
// bind before connecting, used round-robin. A nil *Sources lets the kernel
// choose. It is immutable once parsed and safe for concurrent use.
type Sources struct {
	addrs []netip.Addr // interleaved by /24; see ParseSources
}

// ParseSources parses a comma-separated list of IPv4 addresses and
// inclusive ranges ("127.0.0.2-127.0.15.254"). Addresses ending in .0 or
// .255 are skipped. The order interleaves /24 networks: the first address
// of each /24, then the second of each, and so on, so that connection i and
// i+1 differ in the third octet whenever the range spans several /24s.
func ParseSources(s string) (*Sources, error) {
	var all []netip.Addr
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		lo, hi, err := parseRange(item)
		if err != nil {
			return nil, err
		}
		for a := lo; ; a = a.Next() {
			if b := a.As4(); b[3] != 0 && b[3] != 255 {
				all = append(all, a)
				if len(all) > maxSources {
					return nil, fmt.Errorf("sources %q: more than %d addresses", s, maxSources)
				}
			}
			if a == hi {
				break
			}
		}
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("sources %q: no usable address", s)
	}
	return &Sources{addrs: interleave(all)}, nil
}

// parseRange parses "A" or "A-B" into loopback IPv4 bounds, lo <= hi.
func parseRange(item string) (lo, hi netip.Addr, err error) {
	first, last, isRange := strings.Cut(item, "-")
	if lo, err = parseSourceAddr(first); err != nil {
		return lo, hi, err
	}
	hi = lo
	if isRange {
		if hi, err = parseSourceAddr(last); err != nil {
			return lo, hi, err
		}
	}
	if hi.Less(lo) {
		return lo, hi, fmt.Errorf("source range %q: ends before it starts", item)
	}
	return lo, hi, nil
}

func parseSourceAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return a, fmt.Errorf("source %q: %w", s, err)
	}
	if !a.Is4() {
		return a, fmt.Errorf("source %q: not an IPv4 address", s)
	}
	if !a.IsLoopback() {
		return a, fmt.Errorf("source %q: %w", s, ErrNotLoopback)
	}
	return a, nil
}

// interleave reorders addrs, grouped by /24 in first-seen order, so that
// consecutive entries come from consecutive /24s.
func interleave(addrs []netip.Addr) []netip.Addr {
	var groups [][]netip.Addr
	index := map[[3]byte]int{}
	for _, a := range addrs {
		b := a.As4()
		k := [3]byte{b[0], b[1], b[2]}
		i, ok := index[k]
		if !ok {
			i = len(groups)
			index[k] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], a)
	}
	out := make([]netip.Addr, 0, len(addrs))
	for round := 0; len(out) < len(addrs); round++ {
		for _, g := range groups {
			if round < len(g) {
				out = append(out, g[round])
			}
		}
	}
	return out
}

// Len returns the number of addresses.
func (s *Sources) Len() int {
	if s == nil {
		return 0
	}
	return len(s.addrs)
}

// At returns the address connection i binds: round-robin over the list.
// A nil *Sources returns the zero Addr, which means "any".
func (s *Sources) At(i int) netip.Addr {
	if s.Len() == 0 {
		return netip.Addr{}
	}
	return s.addrs[i%len(s.addrs)]
}
