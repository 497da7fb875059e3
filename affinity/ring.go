package affinity

import (
	"cmp"
	"slices"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

// DefaultVNodes is the number of points a member of weight 1 gets when
// NewRing is given vnodes <= 0. With 160 points per member the busiest of
// ten equal members carries about 11% more keys than the mean (see
// TestRingBalance), while the ring stays small enough to sit in cache
// (1,600 points of 16 bytes for ten members). nginx's consistent hash and
// Ketama use the same number.
const DefaultVNodes = 160

// MaxWeight is the largest weight a member counts with; more counts as
// MaxWeight. A member holds vnodes × weight points of 16 bytes, and weights
// reach the ring from gossip as well as from the config, so without a bound
// one member advertising a weight of a billion would make every proxy try
// to allocate terabytes. 1000 is the config's own upper bound.
const MaxWeight = 1000

// Member is one backend on the ring. Addr ("host:port") is its identity.
type Member struct {
	Addr   string
	Weight int // 1..MaxWeight; less counts as 1, more as MaxWeight
}

// point is one virtual node: a position on the circle and the index of the
// member that owns the arc ending there. A uint32 index keeps a point at 16
// bytes instead of 24 for a string.
type point struct {
	hash   uint64
	member uint32
}

// tokenEntry maps the hash inside a route token to a member, sorted by
// hash so ByToken can binary search without allocating.
type tokenEntry struct {
	hash   uint64
	member uint32
}

// Ring is an immutable consistent-hash ring. Safe for concurrent use: it is
// never modified after NewRing returns. A nil *Ring behaves as an empty
// ring, so a proxy holding an unset atomic.Pointer can still ask it.
type Ring struct {
	members []Member     // sorted by Addr, unique, Weight >= 1
	points  []point      // sorted by hash, then by member (i.e. by Addr)
	tokens  []tokenEntry // sorted by hash, then by member
	shares  []float64    // per member, fraction of the circle owned
	weight  int          // sum of the members' weights
}

// NewRing builds a ring from members with vnodes points per unit of weight;
// vnodes <= 0 means DefaultVNodes. Members with the same Addr are merged,
// keeping the largest weight. The order of members does not matter: any
// permutation gives an identical ring, which is what lets every proxy of a
// cluster route a key to the same backend. Members with an empty Addr are
// ignored, since they could never be dialled. The ring holds vnodes × the
// sum of weights points of 16 bytes each, so weights are meant to be small
// integers (1 to 100); they are clamped to 1..MaxWeight here whatever the
// caller checked, so that no input can make the ring unboundedly large.
func NewRing(members []Member, vnodes int) *Ring {
	if vnodes <= 0 {
		vnodes = DefaultVNodes
	}
	ms := normalizeMembers(members)
	r := &Ring{members: ms}
	if len(ms) == 0 {
		return r
	}

	total := 0
	for _, m := range ms {
		r.weight += m.Weight
		total += m.Weight * vnodes
	}
	r.points = make([]point, 0, total)
	var buf []byte
	for i, m := range ms {
		for v := range m.Weight * vnodes {
			buf = appendPointKey(buf[:0], m.Addr, v)
			r.points = append(r.points, point{hash: xxhash.Sum64(buf), member: uint32(i)})
		}
	}
	// Ties between hashes are astronomically rare, but when they happen
	// every process must break them the same way: members are indexed in
	// Addr order, so comparing indexes compares addresses.
	slices.SortFunc(r.points, func(a, b point) int {
		if c := cmp.Compare(a.hash, b.hash); c != 0 {
			return c
		}
		return cmp.Compare(a.member, b.member)
	})

	r.tokens = make([]tokenEntry, len(ms))
	for i, m := range ms {
		r.tokens[i] = tokenEntry{hash: tokenHash(m.Addr), member: uint32(i)}
	}
	slices.SortFunc(r.tokens, func(a, b tokenEntry) int {
		if c := cmp.Compare(a.hash, b.hash); c != 0 {
			return c
		}
		return cmp.Compare(a.member, b.member)
	})

	r.shares = computeShares(r.points, len(ms))
	return r
}

// normalizeMembers returns a sorted copy of members with unique, non-empty
// addresses and weights within 1..MaxWeight.
func normalizeMembers(members []Member) []Member {
	ms := make([]Member, 0, len(members))
	for _, m := range members {
		if m.Addr == "" {
			continue
		}
		m.Weight = min(max(m.Weight, 1), MaxWeight)
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b Member) int {
		if c := cmp.Compare(a.Addr, b.Addr); c != 0 {
			return c
		}
		return cmp.Compare(b.Weight, a.Weight) // heaviest first, so it is the one kept
	})
	return slices.CompactFunc(ms, func(a, b Member) bool { return a.Addr == b.Addr })
}

// appendPointKey appends the bytes hashed for virtual node v of addr:
// "addr#v". Changing this moves every key in every deployment; the golden
// test guards it.
func appendPointKey(buf []byte, addr string, v int) []byte {
	buf = append(buf, addr...)
	buf = append(buf, '#')
	return strconv.AppendInt(buf, int64(v), 10)
}

// computeShares sums, per member, the arcs its points own. Point j owns the
// half-open arc (points[j-1].hash, points[j].hash], point 0 the arc that
// wraps through zero. Sums are kept in uint64, exact, and converted once.
func computeShares(points []point, n int) []float64 {
	sums := make([]uint64, n)
	prev := points[len(points)-1].hash
	for _, p := range points {
		sums[p.member] += p.hash - prev // wraps through zero for point 0
		prev = p.hash
	}
	shares := make([]float64, n)
	whole := true
	for i, s := range sums {
		shares[i] = float64(s) / (1 << 64)
		whole = whole && s == 0
	}
	if whole {
		// Only a member owning the whole circle sums to 2^64, which
		// wraps to 0; point 0 owns a non-empty arc, so it is that member.
		shares[points[0].member] = 1
	}
	return shares
}

// arcFraction is the length of the arc (start, end] as a fraction of the
// circle; uint64 subtraction wraps, which is exactly the arc through zero.
// start == end means the empty arc here; callers that mean the whole circle
// handle it themselves.
func arcFraction(start, end uint64) float64 {
	return float64(end-start) / (1 << 64)
}

// Len returns the number of members.
func (r *Ring) Len() int {
	if r == nil {
		return 0
	}
	return len(r.members)
}

// Member returns member i. Members are indexed 0..Len()-1 in Addr order, so
// an index is stable for the life of the ring but not across rings: compare
// addresses, not indexes, between two rings.
func (r *Ring) Member(i int) Member {
	return r.members[i]
}

// Members returns a copy of the members, sorted by Addr, with duplicate
// addresses merged and weights within 1..MaxWeight.
func (r *Ring) Members() []Member {
	if r == nil {
		return nil
	}
	return slices.Clone(r.members)
}

// Index returns the index of the member with address addr.
func (r *Ring) Index(addr string) (int, bool) {
	if r == nil {
		return -1, false
	}
	i, ok := slices.BinarySearchFunc(r.members, addr, func(m Member, a string) int {
		return cmp.Compare(m.Addr, a)
	})
	if !ok {
		return -1, false
	}
	return i, true
}

// Lookup returns the index of the member owning hash h: the owner of the
// first point at or after h, wrapping to the first point past the top of
// the circle. It returns -1 when the ring is empty. It allocates nothing.
func (r *Ring) Lookup(h uint64) int {
	if r == nil || len(r.points) == 0 {
		return -1
	}
	return int(r.points[r.search(h)].member)
}

// search returns the position of the first point with hash >= h, or 0 when
// h is past the last point. A hand-written loop rather than sort.Search
// keeps it free of closures and calls.
func (r *Ring) search(h uint64) int {
	lo, hi := 0, len(r.points)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if r.points[mid].hash < h {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == len(r.points) {
		return 0
	}
	return lo
}

// Share returns the fraction of the 2^64 hash space member i owns: the
// share of uniformly spread keys it should receive.
func (r *Ring) Share(i int) float64 {
	return r.shares[i]
}
