package upstream

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"
)

// gossipLabel is put on every gossip packet and stream, so that a wsedge
// node never joins (nor lets in) another memberlist cluster, such as
// Consul's, that happens to listen on the same port.
const gossipLabel = "wsedge"

// timing is what a profile sets beyond memberlist's own configuration.
type timing struct {
	config func() *memberlist.Config
	// rejoin is how often a node alone in its cluster tries its seeds
	// again: at start, when they may not be up yet, and after a partition
	// that lasted long enough for the others to forget it.
	rejoin time.Duration
	// broadcast bounds the wait for a metadata update or a leave to reach
	// another node.
	broadcast time.Duration
}

// retransmitMult replaces memberlist's RetransmitMult in every profile.
// memberlist gossips each update to only mult x log10(n+1) random nodes per
// node that has it (2 in the local profile for a small cluster), relying on
// push/pull every 15-60s to repair the nodes it missed. Membership can wait
// that long; a drain cannot: a proxy that missed one would send new clients
// to a backend on its way out. With 6, a small cluster misses a node about
// once in a thousand updates instead of once in ten, for a few hundred
// bytes per update, and updates are rare.
const retransmitMult = 6

func timingFor(profile string) timing {
	switch profile {
	case ProfileLocal:
		return timing{localConfig, 500 * time.Millisecond, 2 * time.Second}
	case ProfileWAN:
		return timing{withRetransmits(memberlist.DefaultWANConfig), 30 * time.Second, 10 * time.Second}
	default:
		return timing{withRetransmits(memberlist.DefaultLANConfig), 5 * time.Second, 5 * time.Second}
	}
}

func withRetransmits(base func() *memberlist.Config) func() *memberlist.Config {
	return func() *memberlist.Config {
		c := base()
		c.RetransmitMult = retransmitMult
		return c
	}
}

// localConfig is memberlist's configuration for nodes on one host, with
// probes every 500ms instead of every second, so a killed process is
// declared dead in about 2-4s rather than 4-7s, and full state exchanged
// every 5s instead of 15s, which bounds how long a missed update can last.
// Over loopback a round trip takes microseconds: both cost nothing.
func localConfig() *memberlist.Config {
	c := memberlist.DefaultLocalConfig()
	c.RetransmitMult = retransmitMult
	c.ProbeInterval = 500 * time.Millisecond
	c.PushPullInterval = 5 * time.Second
	return c
}

// gossipNode is this process's node in the memberlist cluster, with the
// metadata it advertises and the events it has seen of other nodes. One Run
// (a Set's or an Agent's) owns it: starts it, keeps it joined and leaves.
// Its methods are safe for concurrent use.
type gossipNode struct {
	ml     *memberlist.Memberlist
	name   string
	join   []string
	timing timing
	log    *zap.Logger

	meta   atomic.Pointer[[]byte] // what this node advertises; NodeMeta reads it
	events *nodeEvents
	// released: the node was stopped without leaving, for a new process
	// to go on as it (ReleaseGossip).
	released atomic.Bool
}

// startGossip creates the memberlist node for d, advertising meta. It binds
// at once and joins nobody yet: keepJoined does that. tune, when not nil,
// adjusts memberlist's configuration (tests shorten its timers).
func startGossip(d DiscoveryConfig, key []byte, meta nodeMeta, log *zap.Logger, tune func(*memberlist.Config)) (*gossipNode, error) {
	host, port, err := splitBind(d.Bind)
	if err != nil {
		return nil, err
	}
	ip, err := bindIP(host)
	if err != nil {
		return nil, err
	}
	t := timingFor(d.Profile)
	name := nodeName(d.Name, port)
	g := &gossipNode{
		name:   name,
		join:   slices.Clone(d.Join),
		timing: t,
		log:    log.With(zap.String("gossip_node", name)),
		events: newNodeEvents(name),
	}
	b, err := meta.encode()
	if err != nil {
		return nil, err
	}
	g.meta.Store(&b)

	c := t.config()
	c.Name = name
	c.BindAddr, c.BindPort, c.AdvertisePort = ip, port, port
	c.SecretKey = key
	c.Label = gossipLabel
	c.Delegate = metaDelegate{meta: &g.meta}
	c.Events = g.events
	c.Conflict = conflictLogger{log: g.log}
	c.Logger = newGossipLogger(g.log)
	if tune != nil {
		tune(c)
	}
	ml, err := memberlist.Create(c)
	if err != nil {
		return nil, fmt.Errorf("upstream: gossip on %s: %w", d.Bind, err)
	}
	g.ml = ml
	log.Info("gossip started", zap.String("node", name), zap.String("addr", g.addr()),
		zap.Strings("join", d.Join), zap.String("profile", d.Profile), zap.Bool("encrypted", key != nil))
	if key == nil && !loopbackBind(d.Bind) {
		log.Warn("gossip unencrypted beyond this host: anyone who reaches it can join and advertise backends",
			zap.String("bind", d.Bind))
	}
	return g, nil
}

// bindIP resolves the bind host, which memberlist needs as an IP address.
func bindIP(host string) (string, error) {
	if net.ParseIP(host) != nil {
		return host, nil
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return "", fmt.Errorf("upstream: gossip bind host %q: %v", host, err)
	}
	return ips[0].String(), nil
}

// nodeName is name, or else the hostname and port, which tell apart several
// nodes on one host. With port 0 the port is not known yet, so a random
// suffix stands in.
func nodeName(name string, port int) string {
	if name != "" {
		return name
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "wsedge"
	}
	if port != 0 {
		return host + ":" + strconv.Itoa(port)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

// addr is where other nodes reach this one.
func (g *gossipNode) addr() string {
	n := g.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// setMeta advertises meta. With wait, it returns once memberlist has sent
// the news as often as it will (a bounded time, about retransmitMult gossip
// rounds); without, at once, the news going out all the same.
func (g *gossipNode) setMeta(meta nodeMeta, wait bool) error {
	b, err := meta.encode()
	if err != nil {
		return err
	}
	g.meta.Store(&b)
	if !wait {
		// UpdateNode queues the broadcast before it waits, and its only
		// error is the wait timing out.
		_ = g.ml.UpdateNode(time.Nanosecond)
		return nil
	}
	return g.ml.UpdateNode(g.timing.broadcast)
}

// keepJoined joins the seeds until ctx ends: at once, then whenever this
// node is alone. It logs when joining starts to fail and when it succeeds,
// not every attempt.
func (g *gossipNode) keepJoined(ctx context.Context) {
	if len(g.join) == 0 {
		return
	}
	failing := false
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if g.released.Load() {
			return
		}
		if g.ml.NumMembers() <= 1 {
			n, err := g.ml.Join(g.join)
			switch {
			case err != nil && !failing:
				failing = true
				g.log.Warn("gossip join failed; retrying", zap.Strings("seeds", g.join),
					zap.Duration("every", g.timing.rejoin), zap.Error(err))
			case err == nil:
				failing = false
				g.log.Info("gossip joined", zap.Int("seeds_reached", n), zap.Int("members", g.ml.NumMembers()))
			}
		}
		t.Reset(g.timing.rejoin)
	}
}

// leave tells the cluster this node is going, waits a bounded time for
// the news to get out, and stops the node.
func (g *gossipNode) leave() {
	if g.released.Load() {
		return
	}
	if err := g.ml.Leave(g.timing.broadcast); err != nil {
		g.log.Warn("gossip leave not confirmed", zap.Error(err))
	}
	if err := g.ml.Shutdown(); err != nil {
		g.log.Warn("gossip shutdown", zap.Error(err))
	}
}

// release stops the node without a word to the cluster, which goes on
// knowing it, as the process that takes it over.
func (g *gossipNode) release() {
	if g.released.CompareAndSwap(false, true) {
		if err := g.ml.Shutdown(); err != nil {
			g.log.Warn("gossip shutdown", zap.Error(err))
		}
		g.log.Info("gossip node released to the new process")
	}
}

// nodeEvent is a copy of what memberlist said of a node: its metadata and
// whether it went away (left, or died: memberlist does not say which).
type nodeEvent struct {
	name string
	meta []byte
	gone bool
}

// nodeEvents receives memberlist's notifications. memberlist calls them
// with its node lock held, so they only copy the node and signal; the owner
// takes the events on its own goroutine. Per node only the latest event is
// kept: it carries the node's latest metadata, which is all that matters.
type nodeEvents struct {
	self    string
	ready   chan struct{} // one slot: events are pending
	mu      sync.Mutex    // guards pending
	pending map[string]nodeEvent
}

func newNodeEvents(self string) *nodeEvents {
	return &nodeEvents{self: self, ready: make(chan struct{}, 1), pending: make(map[string]nodeEvent)}
}

func (e *nodeEvents) NotifyJoin(n *memberlist.Node)   { e.add(n, false) }
func (e *nodeEvents) NotifyUpdate(n *memberlist.Node) { e.add(n, false) }
func (e *nodeEvents) NotifyLeave(n *memberlist.Node)  { e.add(n, true) }

func (e *nodeEvents) add(n *memberlist.Node, gone bool) {
	if n.Name == e.self {
		return
	}
	ev := nodeEvent{name: n.Name, meta: bytes.Clone(n.Meta), gone: gone}
	e.mu.Lock()
	e.pending[ev.name] = ev
	e.mu.Unlock()
	select {
	case e.ready <- struct{}{}:
	default:
	}
}

// take returns the pending events, by node name, and forgets them.
func (e *nodeEvents) take() []nodeEvent {
	e.mu.Lock()
	evs := make([]nodeEvent, 0, len(e.pending))
	for _, ev := range e.pending {
		evs = append(evs, ev)
	}
	clear(e.pending)
	e.mu.Unlock()
	slices.SortFunc(evs, func(a, b nodeEvent) int { return strings.Compare(a.name, b.name) })
	return evs
}

// metaDelegate hands memberlist this node's metadata. It carries no user
// messages and no state of its own: everything a proxy needs travels in
// the metadata.
type metaDelegate struct {
	meta *atomic.Pointer[[]byte]
}

func (d metaDelegate) NodeMeta(limit int) []byte {
	b := *d.meta.Load()
	if len(b) > limit { // encode keeps it under memberlist's limit; never send a cut one
		return nil
	}
	return b
}
func (metaDelegate) NotifyMsg([]byte)                {}
func (metaDelegate) GetBroadcasts(int, int) [][]byte { return nil }
func (metaDelegate) LocalState(bool) []byte          { return nil }
func (metaDelegate) MergeRemoteState([]byte, bool)   {}

// conflictLogger reports two nodes claiming one name: memberlist keeps the
// first and ignores the other, which then never takes traffic.
type conflictLogger struct {
	log *zap.Logger
}

func (c conflictLogger) NotifyConflict(existing, other *memberlist.Node) {
	c.log.Error("gossip node name taken; the newcomer is ignored: give each node its own name",
		zap.String("name", existing.Name), zap.String("existing", existing.Address()),
		zap.String("newcomer", other.Address()))
}
