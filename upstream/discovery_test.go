package upstream

import (
	"slices"
	"testing"
	"time"
)

func ev(t *testing.T, name string, meta nodeMeta, gone bool) nodeEvent {
	t.Helper()
	b, err := meta.encode()
	if err != nil {
		t.Fatal(err)
	}
	return nodeEvent{name: name, meta: b, gone: gone}
}

func backendMeta(addr string, state nodeState) nodeMeta {
	return nodeMeta{Role: roleBackend, Addr: addr, Weight: 2, State: state}
}

func TestApplyGossip(t *testing.T) {
	alive := func(name, addr string) func(*testing.T) nodeEvent {
		return func(t *testing.T) nodeEvent { return ev(t, name, backendMeta(addr, nodeAlive), false) }
	}
	draining := func(name, addr string) func(*testing.T) nodeEvent {
		return func(t *testing.T) nodeEvent { return ev(t, name, backendMeta(addr, nodeDraining), false) }
	}
	gone := func(name, addr string, st nodeState) func(*testing.T) nodeEvent {
		return func(t *testing.T) nodeEvent { return ev(t, name, backendMeta(addr, st), true) }
	}
	tests := []struct {
		name   string
		static []Backend
		give   [][]func(*testing.T) nodeEvent // batches, applied in order
		passes int                            // passing checks of every member after the first batch
		want   []Member                       // LastError ignored
	}{
		{
			name: "a new gossip backend must rise",
			give: [][]func(*testing.T) nodeEvent{{alive("n1", "a:1")}},
			want: []Member{{Addr: "a:1", Weight: 2, State: StateRising, Source: SourceGossip, Node: "n1"}},
		},
		{
			name:   "and enters after rise passes",
			give:   [][]func(*testing.T) nodeEvent{{alive("n1", "a:1")}},
			passes: 2,
			want:   []Member{{Addr: "a:1", Weight: 2, State: StateHealthy, Source: SourceGossip, Node: "n1"}},
		},
		{
			name:   "draining leaves at once",
			give:   [][]func(*testing.T) nodeEvent{{alive("n1", "a:1")}, {draining("n1", "a:1")}},
			passes: 2,
			want:   []Member{{Addr: "a:1", Weight: 2, State: StateDraining, Source: SourceGossip, Node: "n1"}},
		},
		{
			name:   "alive again is back at once: its checks kept passing",
			give:   [][]func(*testing.T) nodeEvent{{alive("n1", "a:1")}, {draining("n1", "a:1")}, {alive("n1", "a:1")}},
			passes: 2,
			want:   []Member{{Addr: "a:1", Weight: 2, State: StateHealthy, Source: SourceGossip, Node: "n1"}},
		},
		{
			name:   "leaving after draining removes it",
			give:   [][]func(*testing.T) nodeEvent{{alive("n1", "a:1")}, {draining("n1", "a:1")}, {gone("n1", "a:1", nodeDraining)}},
			passes: 2,
			want:   []Member{},
		},
		{
			name:   "vanishing while alive is death",
			give:   [][]func(*testing.T) nodeEvent{{alive("n1", "a:1")}, {gone("n1", "a:1", nodeAlive)}},
			passes: 2,
			want:   []Member{{Addr: "a:1", Weight: 2, State: StateDead, Source: SourceGossip, Node: "n1"}},
		},
		{
			name:   "back from the dead it must rise again",
			give:   [][]func(*testing.T) nodeEvent{{alive("n1", "a:1")}, {gone("n1", "a:1", nodeAlive)}, {alive("n1", "a:1")}},
			passes: 2,
			want:   []Member{{Addr: "a:1", Weight: 2, State: StateRising, Source: SourceGossip, Node: "n1"}},
		},
		{
			name: "a node never seen alive that goes away is forgotten",
			give: [][]func(*testing.T) nodeEvent{{gone("n1", "a:1", nodeAlive)}},
			want: []Member{},
		},
		{
			name: "two nodes for one address: the lowest name wins",
			give: [][]func(*testing.T) nodeEvent{{alive("n2", "a:1"), alive("n1", "a:1")}},
			want: []Member{{Addr: "a:1", Weight: 2, State: StateRising, Source: SourceGossip, Node: "n1"}},
		},
		{
			name:   "two nodes for one address: the live one wins over the dead",
			give:   [][]func(*testing.T) nodeEvent{{alive("n1", "a:1"), alive("n2", "a:1")}, {gone("n1", "a:1", nodeAlive)}},
			passes: 2,
			want:   []Member{{Addr: "a:1", Weight: 2, State: StateHealthy, Source: SourceGossip, Node: "n2"}},
		},
		{
			name: "proxies and unreadable nodes are not backends",
			give: [][]func(*testing.T) nodeEvent{{
				func(t *testing.T) nodeEvent { return ev(t, "p1", nodeMeta{Role: roleProxy, State: nodeAlive}, false) },
				func(t *testing.T) nodeEvent { return nodeEvent{name: "x", meta: []byte(`{"v":9}`)} },
			}},
			want: []Member{},
		},
		{
			name:   "a static backend keeps its source and weight, and drains with its agent",
			static: []Backend{{Addr: "a:1", Weight: 5}},
			give:   [][]func(*testing.T) nodeEvent{{draining("n1", "a:1")}},
			want:   []Member{{Addr: "a:1", Weight: 5, State: StateDraining, Source: SourceStatic, Node: "n1"}},
		},
		{
			name:   "a static backend stays when its agent leaves",
			static: []Backend{{Addr: "a:1", Weight: 5}},
			give:   [][]func(*testing.T) nodeEvent{{draining("n1", "a:1")}, {gone("n1", "a:1", nodeDraining)}},
			want:   []Member{{Addr: "a:1", Weight: 5, State: StateHealthy, Source: SourceStatic}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(Config{Static: tt.static}, nil)
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			for i, batch := range tt.give {
				evs := make([]nodeEvent, len(batch))
				for j, f := range batch {
					evs[j] = f(t)
				}
				s.applyGossip(evs, now)
				if i == 0 {
					for range tt.passes {
						for _, m := range s.Snapshot().Members {
							s.observe(m.Addr, s.gen, nil)
						}
					}
				}
			}
			got := s.Snapshot().Members
			for i := range got {
				got[i].LastError = ""
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("members = %+v\nwant %+v", got, tt.want)
			}
			var wantRing []Backend
			for _, m := range tt.want {
				if m.State == StateHealthy {
					wantRing = append(wantRing, Backend{m.Addr, m.Weight})
				}
			}
			if b := s.Snapshot().Backends; !slices.Equal(b, wantRing) && len(b)+len(wantRing) > 0 {
				t.Errorf("ring = %v, want %v", b, wantRing)
			}
		})
	}
}

func TestDeadMembersAreForgottenAfterRetention(t *testing.T) {
	s, err := New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	s.applyGossip([]nodeEvent{ev(t, "n1", backendMeta("a:1", nodeAlive), false)}, t0)
	s.applyGossip([]nodeEvent{ev(t, "n1", backendMeta("a:1", nodeAlive), true)}, t0)
	if m := s.Snapshot().Members; len(m) != 1 || m[0].State != StateDead {
		t.Fatalf("members = %+v, want a:1 dead", m)
	}
	s.pruneDead(t0.Add(deadRetention - time.Second))
	if len(s.Snapshot().Members) != 1 {
		t.Fatal("dead member forgotten before its retention ran out")
	}
	s.pruneDead(t0.Add(deadRetention))
	if m := s.Snapshot().Members; len(m) != 0 {
		t.Errorf("members = %+v after the retention, want none", m)
	}
}
