package upstream

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"

	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

// fastGossip shortens memberlist's timers below the local profile's, so
// that a node that stops answering is declared dead within about a second
// on loopback.
func fastGossip(c *memberlist.Config) {
	c.ProbeInterval = 250 * time.Millisecond
	c.ProbeTimeout = 150 * time.Millisecond
	c.GossipInterval = 50 * time.Millisecond
	c.PushPullInterval = 2 * time.Second
	c.TCPTimeout = time.Second
}

// fastHealth checks often so that gossip backends rise quickly.
var fastHealth = HealthConfig{Interval: 100 * time.Millisecond, Timeout: 90 * time.Millisecond, Rise: 2, Fall: 2}

// within bounds every wait on the gossip cluster.
const within = 10 * time.Second

// waitUntil polls cond until it holds, failing the test after limit.
func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("not %s within %v", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// startProxy runs a Set with gossip on a loopback port, joined to join,
// until the test ends. It returns the Set and its gossip address.
func startProxy(t *testing.T, secretFile string, join ...string) (*Set, string) {
	t.Helper()
	s, err := New(Config{
		Health: fastHealth,
		Discovery: DiscoveryConfig{
			Bind: "127.0.0.1:0", Join: join, SecretFile: secretFile, Profile: ProfileLocal,
		},
	}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	s.tune = fastGossip
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	waitUntil(t, within, "gossiping", func() bool { return s.gossip.Load() != nil })
	return s, s.gossip.Load().addr()
}

// startNode runs a bare gossip node advertising meta, as an agent would
// without its checks, and joins it to join. The test stops it (leave or
// shutdown); cleanup shuts it down if not.
func startNode(t *testing.T, secret []byte, meta nodeMeta, join ...string) (*gossipNode, error) {
	t.Helper()
	g, err := startGossip(DiscoveryConfig{Bind: "127.0.0.1:0", Profile: ProfileLocal}, secret, meta, zap.NewNop(), fastGossip)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.ml.Shutdown() })
	_, err = g.ml.Join(join)
	return g, err
}

// lookupMember returns addr's member in s, and whether there is one.
func lookupMember(s *Set, addr string) (Member, bool) {
	for _, m := range s.Snapshot().Members {
		if m.Addr == addr {
			return m, true
		}
	}
	return Member{}, false
}

func hasState(s *Set, addr string, st State) bool {
	m, ok := lookupMember(s, addr)
	return ok && m.State == st
}

// switchable serves 200 on every path while ok, 503 otherwise.
func switchable(t *testing.T) (url string, ok *atomic.Bool) {
	ok = new(atomic.Bool)
	ok.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ok.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/healthz", ok
}

func TestGossipAgentJoinsDrainsAndLeaves(t *testing.T) {
	p1, addr1 := startProxy(t, "")
	p2, _ := startProxy(t, "", addr1)
	proxies := []*Set{p1, p2}
	b := upstreamtest.Start(t)
	healthURL, healthy := switchable(t)

	a, err := NewAgent(AgentConfig{
		Discovery:     DiscoveryConfig{Bind: "127.0.0.1:0", Join: []string{addr1}, Profile: ProfileLocal},
		Advertise:     b.Addr,
		Weight:        3,
		Health:        healthURL,
		CheckInterval: 50 * time.Millisecond,
		Rise:          1,
		Fall:          1,
		Grace:         500 * time.Millisecond,
	}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	a.tune = fastGossip
	ctx, stopAgent := context.WithCancel(context.Background())
	var agentErr error
	agentDone := make(chan struct{})
	go func() {
		defer close(agentDone)
		agentErr = a.Run(ctx)
	}()
	t.Cleanup(func() { stopAgent(); <-agentDone })

	inRingEverywhere := func() bool {
		for _, p := range proxies {
			if !slices.Contains(p.Snapshot().Backends, Backend{Addr: b.Addr, Weight: 3}) {
				return false
			}
		}
		return true
	}
	took := waitUntil(t, within, "in both rings", inRingEverywhere)
	t.Logf("agent start to both rings: %v", took)
	for _, p := range proxies {
		m, _ := lookupMember(p, b.Addr)
		if m.Source != SourceGossip || m.Node == "" {
			t.Errorf("member %+v, want from gossip with its node", m)
		}
		if n := p.GossipMembers(); n != 3 {
			t.Errorf("GossipMembers = %d, want 3 (two proxies and the agent)", n)
		}
	}

	healthy.Store(false)
	took = waitUntil(t, within, "draining in both", func() bool {
		return hasState(p1, b.Addr, StateDraining) && hasState(p2, b.Addr, StateDraining)
	})
	t.Logf("local check failing to draining in both proxies: %v", took)
	if len(p1.Snapshot().Backends) != 0 {
		t.Errorf("a draining backend is still in the ring: %v", p1.Snapshot().Backends)
	}

	healthy.Store(true)
	waitUntil(t, within, "back in both rings", inRingEverywhere)

	stopAgent()
	waitUntil(t, within, "draining after stop", func() bool {
		return hasState(p1, b.Addr, StateDraining) && hasState(p2, b.Addr, StateDraining)
	})
	took = waitUntil(t, within, "removed from both", func() bool {
		_, in1 := lookupMember(p1, b.Addr)
		_, in2 := lookupMember(p2, b.Addr)
		return !in1 && !in2
	})
	t.Logf("stop to removal, grace 500ms included: %v", took)
	<-agentDone
	if agentErr != nil {
		t.Errorf("agent Run = %v", agentErr)
	}
	if n := p1.GossipMembers(); n != 2 {
		t.Errorf("GossipMembers = %d after the agent left, want 2", n)
	}
}

func TestGossipDeadNodeLeavesAtOnce(t *testing.T) {
	p1, addr1 := startProxy(t, "")
	p2, _ := startProxy(t, "", addr1)
	b := upstreamtest.Start(t)
	g, err := startNode(t, nil, backendMeta(b.Addr, nodeAlive), addr1)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, within, "healthy in both", func() bool {
		return hasState(p1, b.Addr, StateHealthy) && hasState(p2, b.Addr, StateHealthy)
	})
	// Shut down without leaving, as a killed process or host would. Its
	// backend still answers checks: only gossip can tell.
	g.ml.Shutdown()
	took := waitUntil(t, within, "dead in both", func() bool {
		return hasState(p1, b.Addr, StateDead) && hasState(p2, b.Addr, StateDead)
	})
	t.Logf("node failure to dead in both proxies: %v (probe 250ms, suspicion 3 x probe)", took)
	if len(p1.Snapshot().Backends)+len(p2.Snapshot().Backends) != 0 {
		t.Error("a dead node's backend is still in a ring")
	}
}

func TestGossipBackendMustPassProxyChecks(t *testing.T) {
	p, addr := startProxy(t, "")
	b := upstreamtest.Start(t)
	backendAddr := b.Addr
	b.Close()
	if _, err := startNode(t, nil, backendMeta(backendAddr, nodeAlive), addr); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, within, "unhealthy", func() bool { return hasState(p, backendAddr, StateUnhealthy) })
	time.Sleep(5 * fastHealth.Interval)
	if len(p.Snapshot().Backends) != 0 {
		t.Fatal("an advertised backend that fails the proxy's checks is in the ring")
	}
	upstreamtest.Start(t, upstreamtest.WithAddr(backendAddr))
	waitUntil(t, within, "healthy once it answers", func() bool { return hasState(p, backendAddr, StateHealthy) })
}

func writeKey(t *testing.T) (path string, key []byte) {
	key = make([]byte, 32)
	rand.Read(key)
	path = filepath.Join(t.TempDir(), "gossip.key")
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, key
}

func TestGossipEncryption(t *testing.T) {
	keyFile, key := writeKey(t)
	_, otherKey := writeKey(t)
	p1, addr1 := startProxy(t, keyFile)
	p2, _ := startProxy(t, keyFile, addr1)
	waitUntil(t, within, "two proxies joined", func() bool { return p1.GossipMembers() == 2 && p2.GossipMembers() == 2 })

	tests := []struct {
		name    string
		key     []byte
		wantIn  bool
		backend string
	}{
		{"wrong key", otherKey, false, "10.0.0.1:9001"},
		{"no key", nil, false, "10.0.0.2:9001"},
		{"same key", key, true, "10.0.0.3:9001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := startNode(t, tt.key, backendMeta(tt.backend, nodeAlive), addr1)
			if tt.wantIn {
				if err != nil {
					t.Fatalf("join with the cluster's key: %v", err)
				}
				waitUntil(t, within, "admitted", func() bool { _, ok := lookupMember(p2, tt.backend); return ok })
				return
			}
			if err == nil {
				t.Error("join succeeded")
			}
			time.Sleep(time.Second) // any gossip that got through would have spread by now
			if _, ok := lookupMember(p1, tt.backend); ok {
				t.Error("its backend reached the proxy")
			}
			if n := p1.GossipMembers(); n != 2 {
				t.Errorf("proxy knows %d nodes, want 2", n)
			}
			if n := g.ml.NumMembers(); n != 1 {
				t.Errorf("outsider knows %d nodes, want only itself", n)
			}
		})
	}
}

func TestRunGossipBindError(t *testing.T) {
	_, addr := startProxy(t, "")
	s, err := New(Config{Discovery: DiscoveryConfig{Bind: addr, Profile: ProfileLocal}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if err := s.Run(ctx); err == nil || ctx.Err() != nil {
		t.Errorf("Run on a taken address = %v, want an error at once", err)
	}
}
