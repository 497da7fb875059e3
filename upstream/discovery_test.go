package upstream

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
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

// What a gossip node advertises is checked before it reaches the members,
// counted by reason, and logged with the node's name.
func TestApplyGossipRefuses(t *testing.T) {
	const good = `{"v":1,"role":"backend","addr":"10.0.0.1:80","weight":2,"state":"alive"}`
	tests := []struct {
		name    string
		allowed []string
		give    []string // metadata of node "n1", applied in order
		want    []Member
		reason  string // counted once; "" for none
		warn    string // logged, naming n1; "" for nothing
	}{
		{
			name:   "weight 1e9 is capped to 1000",
			give:   []string{`{"v":1,"role":"backend","addr":"10.0.0.1:80","weight":1000000000,"state":"alive"}`},
			want:   []Member{{Addr: "10.0.0.1:80", Weight: 1000, State: StateRising, Source: SourceGossip, Node: "n1"}},
			reason: "weight_capped",
			warn:   "gossip node weight capped",
		},
		{
			name:   "a bad address is refused",
			give:   []string{`{"v":1,"role":"backend","addr":"10.0.0.1:99999","state":"alive"}`},
			want:   []Member{},
			reason: "bad_address",
			warn:   "gossip node ignored: metadata refused",
		},
		{
			name:   "oversized metadata is refused",
			give:   []string{`{"v":1,"role":"backend","addr":"10.0.0.1:80","state":"alive","x":"` + strings.Repeat("x", 400) + `"}`},
			want:   []Member{},
			reason: "oversized",
			warn:   "gossip node ignored: metadata refused",
		},
		{
			name:    "an address outside the allowed networks is refused",
			allowed: []string{"10.0.0.2/32"},
			give:    []string{good},
			want:    []Member{},
			reason:  "address_not_allowed",
			warn:    "gossip node ignored: metadata refused",
		},
		{
			name:    "a name is refused when networks are allowed",
			allowed: []string{"0.0.0.0/0"},
			give:    []string{`{"v":1,"role":"backend","addr":"app:80","state":"alive"}`},
			want:    []Member{},
			reason:  "address_not_allowed",
			warn:    "gossip node ignored: metadata refused",
		},
		{
			name:    "an address inside the allowed networks is a member",
			allowed: []string{"10.0.0.0/24"},
			give:    []string{good},
			want:    []Member{{Addr: "10.0.0.1:80", Weight: 2, State: StateRising, Source: SourceGossip, Node: "n1"}},
		},
		{
			name:    "networks written as IPv4-mapped IPv6 hold IPv4 addresses",
			allowed: []string{"::ffff:10.0.0.0/120"},
			give:    []string{good},
			want:    []Member{{Addr: "10.0.0.1:80", Weight: 2, State: StateRising, Source: SourceGossip, Node: "n1"}},
		},
		{
			name:   "a negative weight is refused",
			give:   []string{`{"v":1,"role":"backend","addr":"10.0.0.1:80","weight":-1,"state":"alive"}`},
			want:   []Member{},
			reason: "bad_weight",
			warn:   "gossip node ignored: metadata refused",
		},
		{
			name:   "a member whose metadata turns bad is forgotten",
			give:   []string{good, `{"v":1,"role":"backend","addr":"10.0.0.1:80","state":"zombie"}`},
			want:   []Member{},
			reason: "unreadable",
			warn:   "gossip node ignored: metadata refused",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var allowed []netip.Prefix
			for _, a := range tt.allowed {
				allowed = append(allowed, netip.MustParsePrefix(a))
			}
			core, logs := observer.New(zap.WarnLevel)
			s, err := New(Config{Discovery: DiscoveryConfig{Bind: "127.0.0.1:0", AllowedBackends: allowed}}, zap.New(core))
			if err != nil {
				t.Fatal(err)
			}
			for _, meta := range tt.give {
				s.applyGossip([]nodeEvent{{name: "n1", meta: []byte(meta)}}, time.Now())
			}
			if got := s.Snapshot().Members; !slices.Equal(got, tt.want) {
				t.Errorf("members = %+v\nwant %+v", got, tt.want)
			}
			for reason, n := range s.GossipRejections() {
				want := uint64(0)
				if reason == tt.reason {
					want = 1
				}
				if n != want {
					t.Errorf("GossipRejections()[%q] = %d, want %d", reason, n, want)
				}
			}
			if len(s.GossipRejections()) != 6 {
				t.Errorf("GossipRejections() = %v, want every reason", s.GossipRejections())
			}
			warned := logs.FilterMessage(tt.warn).FilterField(zap.String("node", "n1")).Len()
			if tt.warn != "" && warned != 1 || logs.Len() != warned {
				t.Errorf("logged %v, want one %q", logs.All(), tt.warn)
			}
			// A node going away is not counted again.
			s.applyGossip([]nodeEvent{{name: "n1", meta: []byte(tt.give[len(tt.give)-1]), gone: true}}, time.Now())
			if n := s.GossipRejections()[tt.reason]; tt.reason != "" && n != 1 {
				t.Errorf("after the node left, %q counted %d times, want 1", tt.reason, n)
			}
		})
	}
}

// A ring built from a Set never sees a gossip weight above 1000, however a
// node advertises it.
func TestApplyGossipWeightReachesSnapshotCapped(t *testing.T) {
	s, err := New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.applyGossip([]nodeEvent{{name: "rogue", meta: []byte(`{"v":1,"role":"backend","addr":"127.0.0.1:9001","weight":1000000000,"state":"alive"}`)}}, time.Now())
	for range 2 {
		s.observe("127.0.0.1:9001", s.gen, nil)
	}
	if got, want := s.Snapshot().Backends, []Backend{{"127.0.0.1:9001", 1000}}; !slices.Equal(got, want) {
		t.Errorf("ring backends = %v, want %v", got, want)
	}
}
