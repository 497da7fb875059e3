package affinity

// Arc is a stretch of the hash circle whose owner changed. It is half-open,
// (Start, End]: it holds h when Start < h <= End, which matches Lookup
// sending a key to the first point at or after it. Start >= End means the
// arc wraps through zero, holding h > Start or h <= End; Start == End is
// the whole circle. From and To are the owners' addresses in the old and
// new ring, "" where that ring was empty.
type Arc struct {
	Start, End uint64
	From, To   string
}

// Contains reports whether hash h lies on the arc.
func (a Arc) Contains(h uint64) bool {
	if a.Start < a.End {
		return a.Start < h && h <= a.End
	}
	return h > a.Start || h <= a.End
}

// Fraction returns the arc's length as a fraction of the circle.
func (a Arc) Fraction() float64 {
	if a.Start == a.End {
		return 1
	}
	return arcFraction(a.Start, a.End)
}

// Moves is the difference between two rings.
type Moves struct {
	// Arcs lists the arcs whose owner changed, in clockwise order by
	// Start; only the last one may wrap through zero. Adjacent arcs with
	// the same From and To are merged.
	Arcs []Arc
	// Fraction is the part of the hash space that changed owner: the
	// expected fraction of uniformly spread keys that move.
	Fraction float64
}

// Find returns the arc holding hash h, if the key at h changed owner. A
// proxy reconciling live connections after a ring change can ask it per
// connection instead of looking the key up in both rings.
func (m Moves) Find(h uint64) (Arc, bool) {
	arcs := m.Arcs
	if len(arcs) == 0 {
		return Arc{}, false
	}
	if last := arcs[len(arcs)-1]; last.Start >= last.End {
		if last.Contains(h) {
			return last, true
		}
		arcs = arcs[:len(arcs)-1]
	}
	// The rest do not wrap and are sorted: find the first ending at or
	// after h.
	lo, hi := 0, len(arcs)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if arcs[mid].End < h {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < len(arcs) && arcs[lo].Start < h {
		return arcs[lo], true
	}
	return Arc{}, false
}

// Diff returns the arcs of the hash space whose owner differs between old
// and new, and the fraction that moved. Owners are compared by address, so
// a member whose weight changed keeps the arcs it still owns. A nil ring is
// empty. It runs in time linear in the number of points of both rings.
func Diff(old, new *Ring) Moves {
	var op, np []point
	if old != nil {
		op = old.points
	}
	if new != nil {
		np = new.points
	}
	// Every point of either ring bounds an arc on which both owners are
	// constant: between two consecutive boundaries b', b, every hash maps
	// to the point of each ring found at or after b. Walking the merged,
	// deduplicated boundaries in order finds each arc's two owners.
	var arcs []Arc
	var wrap Arc // the arc ending at the lowest boundary, through zero
	var first, prev uint64
	i, j := 0, 0
	for k := 0; i < len(op) || j < len(np); k++ {
		var b uint64
		if j >= len(np) || (i < len(op) && op[i].hash <= np[j].hash) {
			b = op[i].hash
		} else {
			b = np[j].hash
		}
		a := Arc{Start: prev, End: b, From: ownerAt(old, i), To: ownerAt(new, j)}
		for i < len(op) && op[i].hash == b {
			i++
		}
		for j < len(np) && np[j].hash == b {
			j++
		}
		if k == 0 {
			first, wrap = b, a // Start is fixed once the last boundary is known
		} else if a.From != a.To {
			arcs = appendArc(arcs, a)
		}
		prev = b
	}
	if wrap.From == wrap.To {
		return finishMoves(arcs)
	}
	wrap.Start = prev
	arcs = appendArc(arcs, wrap)
	// The wrap arc ends where the first arc starts: join them if they
	// carry the same move, unless it is the only arc (the whole circle).
	if n := len(arcs); n > 1 && arcs[0].Start == first && arcs[0].From == wrap.From && arcs[0].To == wrap.To {
		arcs[n-1].End = arcs[0].End
		arcs = arcs[1:]
	}
	return finishMoves(arcs)
}

// ownerAt returns the address owning the point at position p of r, p being
// the first point at or after some boundary; len(points) wraps to 0. An
// empty ring has no owner: "".
func ownerAt(r *Ring, p int) string {
	if r == nil || len(r.points) == 0 {
		return ""
	}
	if p == len(r.points) {
		p = 0
	}
	return r.members[r.points[p].member].Addr
}

// appendArc appends a, merging it into the previous arc when they touch and
// carry the same move.
func appendArc(arcs []Arc, a Arc) []Arc {
	if n := len(arcs); n > 0 {
		last := &arcs[n-1]
		if last.End == a.Start && last.From == a.From && last.To == a.To {
			last.End = a.End
			return arcs
		}
	}
	return append(arcs, a)
}

func finishMoves(arcs []Arc) Moves {
	m := Moves{Arcs: arcs}
	for _, a := range arcs {
		m.Fraction += a.Fraction()
	}
	return m
}
