package main

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/memberlist"

	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

// gossipWatcher is a gossip node that is not wsedge: it advertises a
// backend, as an agent would, and records every node memberlist tells it
// left or died.
type gossipWatcher struct {
	ml   *memberlist.Memberlist
	mu   sync.Mutex
	gone []string
}

func (w *gossipWatcher) NotifyJoin(*memberlist.Node)   {}
func (w *gossipWatcher) NotifyUpdate(*memberlist.Node) {}
func (w *gossipWatcher) NotifyLeave(n *memberlist.Node) {
	w.mu.Lock()
	w.gone = append(w.gone, n.Name)
	w.mu.Unlock()
}

func (w *gossipWatcher) left() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.gone)
}

// alive lists the members the watcher sees alive, itself aside.
func (w *gossipWatcher) alive() []string {
	var out []string
	for _, n := range w.ml.Members() {
		if n.Name != "watcher" && n.State == memberlist.StateAlive {
			out = append(out, n.Name)
		}
	}
	return out
}

// startWatcher joins a gossipWatcher advertising meta to the node on port.
func startWatcher(t *testing.T, port int, meta string) *gossipWatcher {
	t.Helper()
	w := &gossipWatcher{}
	c := memberlist.DefaultLocalConfig()
	c.Name = "watcher"
	c.BindAddr, c.BindPort = "127.0.0.1", 0
	c.Label = "wsedge"
	c.Delegate = rogueMeta(meta)
	c.Events = w
	c.LogOutput = io.Discard
	ml, err := memberlist.Create(c)
	if err != nil {
		t.Fatal(err)
	}
	w.ml = ml
	t.Cleanup(func() { ml.Shutdown() })
	if _, err := ml.Join([]string{gossipAddr(port)}); err != nil {
		t.Fatal(err)
	}
	return w
}

// A proxy whose backends come from gossip upgrades to a new binary, twice,
// and stays the same gossip node: the rest of the cluster never sees it
// leave, the new process knows the gossiped backends from its first
// moment (a client that connects right after the upgrade is served), and
// its connections stay open.
func TestUpgradeKeepsGossipNode(t *testing.T) {
	if e2e.name == modeTLS {
		t.Skip("TLS connections do not move; TestUpgradeKeepsEveryConnection covers them")
	}
	second, err := secondBuild()
	if err != nil {
		t.Fatal(err)
	}
	b := upstreamtest.Start(t)
	port := gossipPort(t)
	u := startUpgradable(t, fmt.Sprintf("%s\n[discovery]\nbind = %q\nprofile = \"local\"\n", gossipHealth, gossipAddr(port)))
	w := startWatcher(t, port, backendMeta(b.Addr, 1))
	waitUntil(t, 10*time.Second, func() bool { return slices.Equal(ringOf(t, u.proc), []string{b.Addr}) }, "the gossiped backend in the ring")
	proxyNodes := w.alive()
	if len(proxyNodes) != 1 {
		t.Fatalf("the watcher sees %v alive, want the proxy's node alone", proxyNodes)
	}

	conns := dialMany(t, u.proc, 20, func(int) http.Header { return nil })
	clients := make([]*watched, len(conns))
	for i, c := range conns {
		clients[i] = watch(c)
	}
	defer func() {
		for _, c := range clients {
			c.close()
		}
	}()
	stop := make(chan struct{})
	var sender sync.WaitGroup
	var sent int
	sender.Go(func() { sent = clients[0].echoAt(50, stop) })

	for round, bin := range []string{second, binary} {
		u.upgrade(t, bin, 15*time.Second)
		// At once: the ring did not wait for gossip to come back.
		c, res, err := u.wsDialer(*websocket.DefaultDialer).Dial(u.wsURL("/"), nil)
		if err != nil {
			status := 0
			if res != nil {
				status = res.StatusCode
			}
			t.Fatalf("after upgrade %d, a new client: %v (HTTP %d)", round+1, err, status)
		}
		c.Close()
		u.logs.wait(t, `"msg":"gossip node taken over from the old process"`, 10*time.Second, fmt.Sprintf(`"node":%q`, proxyNodes[0]))
	}
	// Long enough for memberlist's local profile to find a node that
	// stopped answering, suspect it and declare it dead.
	time.Sleep(6 * time.Second)
	close(stop)
	sender.Wait()
	waitUntil(t, 10*time.Second, func() bool { return clients[0].next.Load() >= int64(sent) }, "every echo back")
	for i, c := range clients {
		if err := c.err.Load(); err != nil {
			t.Fatalf("client %d: %v", i, *err)
		}
	}
	if gone := w.left(); len(gone) > 0 {
		t.Errorf("the cluster saw %v leave or die", gone)
	}
	if got := w.alive(); !slices.Equal(got, proxyNodes) {
		t.Errorf("the watcher sees %v alive, want %v", got, proxyNodes)
	}
	if got := ringOf(t, u.proc); !slices.Equal(got, []string{b.Addr}) {
		t.Errorf("the new process's ring is %v, want %v", got, []string{b.Addr})
	}
}
