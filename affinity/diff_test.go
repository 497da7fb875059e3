package affinity

import (
	"math"
	"slices"
	"testing"
)

// frac is the length of (start, end] over the circle, written out so the
// expectations do not lean on the code under test.
func frac(length uint64) float64 { return float64(length) / (1 << 64) }

func TestDiffHandRings(t *testing.T) {
	ab := handRing(at{10, "A"}, at{20, "B"})
	tests := []struct {
		name         string
		old, new     *Ring
		want         []Arc
		wantFraction float64
	}{
		{
			name: "identical",
			old:  ab,
			new:  handRing(at{20, "B"}, at{10, "A"}),
		},
		{
			name: "both empty",
			old:  nil,
			new:  NewRing(nil, 0),
		},
		{
			name:         "point added inside an arc",
			old:          ab,
			new:          handRing(at{10, "A"}, at{15, "C"}, at{20, "B"}),
			want:         []Arc{{Start: 10, End: 15, From: "B", To: "C"}},
			wantFraction: frac(5),
		},
		{
			name:         "point added past the last point takes from the first owner",
			old:          ab,
			new:          handRing(at{10, "A"}, at{20, "B"}, at{30, "C"}),
			want:         []Arc{{Start: 20, End: 30, From: "A", To: "C"}},
			wantFraction: frac(10),
		},
		{
			name:         "point added before the first point: the arc wraps",
			old:          ab,
			new:          handRing(at{5, "C"}, at{10, "A"}, at{20, "B"}),
			want:         []Arc{{Start: 20, End: 5, From: "A", To: "C"}},
			wantFraction: frac(math.MaxUint64 - 14), // 2^64 - 15
		},
		{
			name:         "point removed",
			old:          handRing(at{10, "A"}, at{15, "C"}, at{20, "B"}),
			new:          ab,
			want:         []Arc{{Start: 10, End: 15, From: "C", To: "B"}},
			wantFraction: frac(5),
		},
		{
			name:         "same member gains a point",
			old:          ab,
			new:          handRing(at{10, "A"}, at{15, "A"}, at{20, "B"}),
			want:         []Arc{{Start: 10, End: 15, From: "B", To: "A"}},
			wantFraction: frac(5),
		},
		{
			name:         "adjacent arcs with the same move merge across zero",
			old:          handRing(at{10, "A"}, at{20, "A"}, at{30, "B"}),
			new:          handRing(at{10, "C"}, at{20, "C"}, at{30, "B"}),
			want:         []Arc{{Start: 30, End: 20, From: "A", To: "C"}},
			wantFraction: frac(math.MaxUint64 - 9),
		},
		{
			name: "different moves stay apart",
			old:  handRing(at{10, "A"}, at{20, "B"}, at{30, "C"}),
			new:  handRing(at{10, "D"}, at{20, "E"}, at{30, "C"}),
			want: []Arc{
				{Start: 10, End: 20, From: "B", To: "E"},
				{Start: 30, End: 10, From: "A", To: "D"},
			},
			wantFraction: frac(10) + frac(math.MaxUint64-19),
		},
		{
			name:         "whole circle renamed",
			old:          handRing(at{10, "A"}),
			new:          handRing(at{10, "B"}),
			want:         []Arc{{Start: 10, End: 10, From: "A", To: "B"}},
			wantFraction: 1,
		},
		{
			name:         "from empty",
			old:          nil,
			new:          handRing(at{10, "A"}, at{20, "A"}),
			want:         []Arc{{Start: 10, End: 10, From: "", To: "A"}},
			wantFraction: 1,
		},
		{
			name: "to empty",
			old:  ab,
			new:  nil,
			want: []Arc{
				{Start: 10, End: 20, From: "B", To: ""},
				{Start: 20, End: 10, From: "A", To: ""},
			},
			wantFraction: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Diff(tt.old, tt.new)
			if !slices.Equal(got.Arcs, tt.want) {
				t.Errorf("Arcs = %+v, want %+v", got.Arcs, tt.want)
			}
			if math.Abs(got.Fraction-tt.wantFraction) > 1e-12 {
				t.Errorf("Fraction = %v, want %v", got.Fraction, tt.wantFraction)
			}
		})
	}
}

func TestArcContains(t *testing.T) {
	tests := []struct {
		name string
		arc  Arc
		give uint64
		want bool
	}{
		{"start excluded", Arc{Start: 10, End: 20}, 10, false},
		{"inside", Arc{Start: 10, End: 20}, 15, true},
		{"end included", Arc{Start: 10, End: 20}, 20, true},
		{"past end", Arc{Start: 10, End: 20}, 21, false},
		{"wrap: above start", Arc{Start: 20, End: 10}, 30, true},
		{"wrap: top", Arc{Start: 20, End: 10}, math.MaxUint64, true},
		{"wrap: zero", Arc{Start: 20, End: 10}, 0, true},
		{"wrap: end included", Arc{Start: 20, End: 10}, 10, true},
		{"wrap: gap", Arc{Start: 20, End: 10}, 15, false},
		{"wrap: start excluded", Arc{Start: 20, End: 10}, 20, false},
		{"whole circle: start", Arc{Start: 7, End: 7}, 7, true},
		{"whole circle: elsewhere", Arc{Start: 7, End: 7}, 8, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.arc.Contains(tt.give); got != tt.want {
				t.Errorf("%+v.Contains(%d) = %t, want %t", tt.arc, tt.give, got, tt.want)
			}
		})
	}
}

// TestDiffAgreesWithSampling compares Diff with what actually happens to
// keys: every key whose owner changed lies on an arc naming both owners,
// no other key does, and Fraction matches the sampled fraction. Measured
// with 1,000,000 keys: adding an 11th backend, Fraction 0.0949 against
// 0.0950 sampled; removing one of 10, 0.1109 against 0.1114.
func TestDiffAgreesWithSampling(t *testing.T) {
	keys := sampleKeys(t, keyCount())
	// The cases beyond adding and removing check the same code paths;
	// a tenth of the keys keeps the test quick under -race.
	few := keys[:len(keys)/10]
	ten := backends(10)
	heavier := backends(10)
	heavier[2].Weight = 3
	replaced := backends(10)
	replaced[5].Addr = "10.0.9.9:8080"
	tests := []struct {
		name     string
		old, new []Member
		keys     []uint64
	}{
		{"add an 11th backend", ten, backends(11), keys},
		{"remove one of 10", ten, slices.Delete(backends(10), 3, 4), keys},
		{"weight 1 to 3", ten, heavier, few},
		{"replace one", ten, replaced, few},
		{"identical", ten, backends(10), few},
		{"from empty", nil, ten, few},
		{"to empty", ten, nil, few},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			oldRing, newRing := NewRing(tt.old, 160), NewRing(tt.new, 160)
			m := Diff(oldRing, newRing)
			checkArcsWellFormed(t, m.Arcs)
			moved := 0
			for _, h := range tt.keys {
				from, to := addrOf(oldRing, h), addrOf(newRing, h)
				arc, ok := m.Find(h)
				if ok != (from != to) {
					t.Fatalf("key %#x: %q -> %q, but Find reports moved = %t", h, from, to, ok)
				}
				if !ok {
					continue
				}
				moved++
				if arc.From != from || arc.To != to || !arc.Contains(h) {
					t.Fatalf("key %#x moved %q -> %q, Find gives arc %+v", h, from, to, arc)
				}
			}
			sampled := float64(moved) / float64(len(tt.keys))
			// Four standard deviations of the sampled fraction.
			tol := 4*math.Sqrt(sampled*(1-sampled)/float64(len(tt.keys))) + 1e-9
			t.Logf("Diff Fraction %.4f, sampled %.4f of %d keys, %d arcs", m.Fraction, sampled, len(tt.keys), len(m.Arcs))
			if math.Abs(m.Fraction-sampled) > tol {
				t.Errorf("Fraction = %.4f, sampled %.4f (tolerance %.4f)", m.Fraction, sampled, tol)
			}
		})
	}
}

// addrOf returns the address owning h, "" in an empty ring.
func addrOf(r *Ring, h uint64) string {
	i := r.Lookup(h)
	if i < 0 {
		return ""
	}
	return r.Member(i).Addr
}

// checkArcsWellFormed checks the documented shape of Moves.Arcs.
func checkArcsWellFormed(t *testing.T, arcs []Arc) {
	t.Helper()
	for i, a := range arcs {
		if a.From == a.To {
			t.Errorf("arc %d %+v does not move anything", i, a)
		}
		if a.Start >= a.End && i != len(arcs)-1 {
			t.Errorf("arc %d of %d %+v wraps but is not the last", i, len(arcs), a)
		}
		if i == 0 {
			continue
		}
		prev := arcs[i-1]
		if prev.Start >= a.Start {
			t.Errorf("arcs %d and %d out of order: %+v, %+v", i-1, i, prev, a)
		}
		if prev.End == a.Start && prev.From == a.From && prev.To == a.To {
			t.Errorf("arcs %d and %d touch with the same move and were not merged", i-1, i)
		}
	}
}

func TestMovesFind(t *testing.T) {
	m := Moves{Arcs: []Arc{
		{Start: 10, End: 20, From: "A", To: "B"},
		{Start: 30, End: 40, From: "C", To: "D"},
		{Start: 90, End: 5, From: "E", To: "F"},
	}}
	tests := []struct {
		give     uint64
		wantFrom string // "" when h did not move
	}{
		{0, "E"}, {5, "E"}, {6, ""}, {10, ""}, {11, "A"}, {20, "A"}, {25, ""},
		{40, "C"}, {41, ""}, {90, ""}, {91, "E"}, {math.MaxUint64, "E"},
	}
	for _, tt := range tests {
		arc, ok := m.Find(tt.give)
		if ok != (tt.wantFrom != "") || arc.From != tt.wantFrom {
			t.Errorf("Find(%d) = %+v, %t; want from %q", tt.give, arc, ok, tt.wantFrom)
		}
	}
	if _, ok := (Moves{}).Find(1); ok {
		t.Error("Find on no moves found an arc")
	}
}
