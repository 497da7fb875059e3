package upstream

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"
)

// What an old process bequeaths, a new one inherits: the gossiped backends
// that were in the ring are in it at once, without rising again; a dead
// node's backend is known but out; metadata the new config does not allow
// is refused as gossip's would be.
func TestInheritedMembers(t *testing.T) {
	meta := func(addr string) []byte {
		return []byte(`{"v":1,"role":"backend","addr":"` + addr + `","weight":2,"state":"alive"}`)
	}
	old, err := New(Config{Discovery: DiscoveryConfig{Bind: "127.0.0.1:0"}}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	old.applyGossip([]nodeEvent{
		{name: "up", meta: meta("10.0.0.1:80")},
		{name: "rising", meta: meta("10.0.0.2:80")},
		{name: "outside", meta: meta("10.9.0.1:80")},
	}, time.Now())
	old.mu.Lock()
	old.members["10.0.0.1:80"].health = trusted()
	old.members["10.9.0.1:80"].health = trusted()
	old.mu.Unlock()
	old.applyGossip([]nodeEvent{{name: "dead", meta: meta("10.0.0.3:80")}}, time.Now())
	old.applyGossip([]nodeEvent{{name: "dead", meta: meta("10.0.0.3:80"), gone: true}}, time.Now())
	in := old.Bequest()
	if len(in.Peers) != 4 || in.Node != "" {
		t.Fatalf("bequest = %+v, want four peers and no gossip node", in)
	}

	allowed := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16")}
	s, err := New(Config{Discovery: DiscoveryConfig{Bind: "127.0.0.1:0", AllowedBackends: allowed}}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	s.Inherit(in)
	want := []Member{
		{Addr: "10.0.0.1:80", Weight: 2, Source: SourceGossip, Node: "up", State: StateHealthy},
		{Addr: "10.0.0.2:80", Weight: 2, Source: SourceGossip, Node: "rising", State: StateRising},
		{Addr: "10.0.0.3:80", Weight: 2, Source: SourceGossip, Node: "dead", State: StateDead},
	}
	if got := s.Snapshot().Members; !slices.Equal(got, want) {
		t.Errorf("members = %+v\nwant %+v", got, want)
	}
	if got := s.Snapshot().Backends; len(got) != 1 || got[0].Addr != "10.0.0.1:80" {
		t.Errorf("ring = %+v, want 10.0.0.1:80 alone", got)
	}
}
