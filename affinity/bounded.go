package affinity

import "math"

// stackMembers is the largest ring whose visited set LookupBounded keeps in
// a fixed array on the stack (128 bytes); larger rings allocate a bitset
// per call. Fleets behind one proxy are rarely that big.
const stackMembers = 1024

// LookupBounded implements consistent hashing with bounded loads (Mirrokni,
// Thorup and Zadimoghaddam, "Consistent Hashing with Bounded Loads", 2016;
// HAProxy's hash-balance-factor). It walks clockwise from h's position and
// returns the first member i for which accept(i) is true, asking about each
// distinct member once, in ring order. When no member is accepted it
// returns the plain owner, Lookup(h): an overloaded backend is still better
// than none. It returns -1 when the ring is empty.
//
// accept typically reports load(i) < BoundedLimit(i, ...). Because loads
// differ between proxies, a key placed this way may land on different
// backends on different proxies; the caller should remember where it put a
// key so the key stays put.
//
// It allocates nothing for rings of up to 1024 members.
func (r *Ring) LookupBounded(h uint64, accept func(i int) bool) int {
	if r == nil || len(r.points) == 0 {
		return -1
	}
	start := r.search(h)
	n := len(r.members)
	var small [stackMembers / 64]uint64
	seen := small[:]
	if n > stackMembers {
		seen = make([]uint64, (n+63)/64)
	}
	left := n
	for k := 0; k < len(r.points) && left > 0; k++ {
		j := start + k
		if j >= len(r.points) {
			j -= len(r.points)
		}
		m := r.points[j].member
		word, bit := m/64, uint64(1)<<(m%64)
		if seen[word]&bit != 0 {
			continue
		}
		seen[word] |= bit
		left--
		if accept(int(m)) {
			return int(m)
		}
	}
	return int(r.points[start].member)
}

// BoundedLimit returns the most connections member i may hold under bounded
// loads with the given factor (for example 1.25), when total connections
// are placed: ceil(factor × (total+1) × weight(i) / sum of weights). The +1
// counts the connection being placed, so that the limit is never zero and
// the members' limits add up to at least total+1: some member always has
// room, as the paper requires. factor < 1 is treated as 1.
func (r *Ring) BoundedLimit(i, total int, factor float64) int {
	if factor < 1 || math.IsNaN(factor) {
		factor = 1
	}
	limit := math.Ceil(factor * float64(total+1) * float64(r.members[i].Weight) / float64(r.weight))
	if limit > math.MaxInt32 {
		return math.MaxInt32
	}
	return int(limit)
}
