package upstream

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"
)

// Backend is one app server that may take traffic.
type Backend struct {
	Addr   string // host:port; the backend's identity on the ring
	Weight int    // share of the ring relative to other backends; at least 1
}

// State is where a known backend stands.
type State string

const (
	// StateHealthy: in the ring.
	StateHealthy State = "healthy"
	// StateRising: new, not yet rise passes in a row, and no check has
	// failed since it appeared.
	StateRising State = "rising"
	// StateUnhealthy: out of the ring after fall failed checks in a row, or
	// fall failed dials or 5xx upgrades, or a failed check before it first
	// entered; it stays so until rise checks in a row pass. Alive as far
	// as gossip knows.
	StateUnhealthy State = "unhealthy"
	// StateDraining: its agent says it is leaving, starting or failing
	// locally; out of the ring at once.
	StateDraining State = "draining"
	// StateDead: gossip's failure detector declared its node dead; out of
	// the ring at once.
	StateDead State = "dead"
)

// Sources of a Member.
const (
	SourceStatic = "static" // listed in the config; wins when gossip advertises it too
	SourceDNS    = "dns"    // a record of a DNS name listed in the config; wins over gossip
	SourceGossip = "gossip" // advertised by a gossip node, usually a `wsedge agent`
)

// Member is a known backend and its state, in the ring or not.
type Member struct {
	Addr      string
	Weight    int
	State     State
	Source    string // SourceStatic, SourceDNS or SourceGossip
	Node      string // gossip node advertising it; "" when none does
	LastError string // the latest failure since it last entered the ring
}

// Snapshot is the set of backends in the ring at one moment. It is never
// modified after publication, so it is safe to share.
type Snapshot struct {
	Version  uint64    // increases with every published change
	Backends []Backend // in the ring, sorted by Addr
	// Members lists every known backend with its state, sorted by Addr;
	// those in Backends are healthy. The proxy reads it to tell a backend
	// that left alive (draining, removed, checked out) from a dead one. A
	// backend removed from the config, whose DNS record is gone, or whose
	// node left the gossip cluster after draining, is no longer listed; a
	// dead one stays listed for a minute.
	Members []Member
}

// Set holds the backends a proxy may route to and publishes a new Snapshot
// whenever the ring or a backend's State changes; a check that changes
// neither publishes nothing. It is safe for concurrent use.
//
// A Set from NewSet is static: it changes only through Replace or Update.
// A Set from New also checks health, takes reports of failures from the
// proxy, follows the DNS names of its config and, with discovery on, folds
// in gossip members, all while Run runs.
type Set struct {
	cur     atomic.Pointer[Snapshot] // readers Load it without waiting on mu
	changed chan struct{}            // one slot: pending signals coalesce
	log     *zap.Logger
	wake    chan struct{} // one slot: Run has probers to start or stop
	running atomic.Bool   // Run is running
	// localLogged is when a check that could not run for want of the
	// proxy's own resources was last logged, in unix nanoseconds.
	localLogged atomic.Int64
	gossip      atomic.Pointer[gossipNode] // while Run runs with discovery on
	secret      []byte                     // gossip key read by New
	refused     rejections                 // gossiped metadata refused or corrected
	// check overrides checker, and tune adjusts memberlist's
	// configuration, in tests. Both are set before Run.
	check checkFunc
	tune  func(*memberlist.Config)

	mu      sync.Mutex // guards the fields below and serializes publication
	managed bool       // built by New: health and gossip apply; never changes
	cfg     Config     // with defaults; Discovery is the running one
	members map[string]*member
	peers   map[string]*peer // gossip nodes by name
	gen     uint64           // bumped when health settings change; stale probers' results are dropped
	checker *checker
	dns     dnsNames // DNS names and what they resolved to
	// inherited is what an old process bequeathed this one (Inherit);
	// nil when it started afresh.
	inherited *Inheritance
}

// NewSet returns a static Set holding backends, all healthy: it checks no
// health and ignores failure reports. Tests and tools use it; the proxy
// uses New.
func NewSet(backends []Backend) *Set {
	s := newSet(zap.NewNop())
	s.setStaticLocked(backends, trusted)
	cur := s.buildLocked()
	s.cur.Store(cur)
	return s
}

func newSet(log *zap.Logger) *Set {
	return &Set{
		changed: make(chan struct{}, 1),
		members: make(map[string]*member),
		peers:   make(map[string]*peer),
		log:     log,
		wake:    make(chan struct{}, 1),
		dns:     newDNSNames(),
	}
}

// Snapshot returns the current snapshot.
func (s *Set) Snapshot() *Snapshot { return s.cur.Load() }

// Changed delivers one pending signal after any number of changes; the
// receiver reads Snapshot to see where things stand.
func (s *Set) Changed() <-chan struct{} { return s.changed }

// Replace makes backends the static list. On a Set from NewSet they are
// all healthy; on a Set from New it is Update with a new static list, so
// backends that stay keep their health and new ones are trusted until
// their checks say otherwise.
func (s *Set) Replace(backends []Backend) {
	s.mu.Lock()
	if s.managed {
		cfg := s.cfg
		s.mu.Unlock()
		cfg.Static = backends
		_ = s.Update(cfg) // cfg passed New's checks, and Static cannot fail them
		return
	}
	s.setStaticLocked(backends, trusted)
	old, cur := s.commitLocked()
	s.mu.Unlock()
	s.announce(old, cur)
}

// commitLocked builds the snapshot the members imply and stores it if it
// differs from the current one in its backends or in any member's State,
// weight or source. It returns the old and new snapshots when it stored
// one, and nils otherwise. s.mu must be held.
func (s *Set) commitLocked() (old, cur *Snapshot) {
	next := s.buildLocked()
	old = s.cur.Load()
	if old != nil && slices.Equal(old.Backends, next.Backends) && sameMembers(old.Members, next.Members) {
		return nil, nil
	}
	if old != nil {
		next.Version = old.Version + 1
	}
	s.cur.Store(next)
	return old, next
}

// buildLocked returns the snapshot the members imply, at version 1. s.mu
// must be held.
func (s *Set) buildLocked() *Snapshot {
	addrs := make([]string, 0, len(s.members))
	for a := range s.members {
		addrs = append(addrs, a)
	}
	slices.Sort(addrs)
	snap := &Snapshot{Version: 1, Backends: []Backend{}, Members: make([]Member, 0, len(addrs))}
	for _, a := range addrs {
		m := s.members[a].view()
		snap.Members = append(snap.Members, m)
		if m.State == StateHealthy {
			snap.Backends = append(snap.Backends, Backend{Addr: m.Addr, Weight: m.Weight})
		}
	}
	return snap
}

// sameMembers compares member lists on everything but LastError, which
// changes with every failed check and is not worth a new ring.
func sameMembers(a, b []Member) bool {
	return slices.EqualFunc(a, b, func(x, y Member) bool {
		x.LastError, y.LastError = "", ""
		return x == y
	})
}

// announce logs what changed between old and cur and signals Changed. It
// does nothing when cur is nil. Call it without s.mu held.
func (s *Set) announce(old, cur *Snapshot) {
	if cur == nil {
		return
	}
	s.logChanges(old, cur)
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// logChanges logs one line per backend whose State changed, appeared or
// went away.
func (s *Set) logChanges(old, cur *Snapshot) {
	before := make(map[string]Member, len(old.Members))
	for _, m := range old.Members {
		before[m.Addr] = m
	}
	for _, m := range cur.Members {
		was, ok := before[m.Addr]
		delete(before, m.Addr)
		if ok && was.State == m.State {
			continue
		}
		from := State("")
		if ok {
			from = was.State
		}
		level := zap.InfoLevel
		if m.State == StateUnhealthy || m.State == StateDead {
			level = zap.WarnLevel
		}
		if ce := s.log.Check(level, "backend state changed"); ce != nil {
			ce.Write(zap.String("backend", m.Addr), zap.String("from", string(from)),
				zap.String("to", string(m.State)), zap.String("source", m.Source),
				zap.String("node", m.Node), zap.String("reason", m.LastError),
				zap.Uint64("version", cur.Version), zap.Int("ring", len(cur.Backends)))
		}
	}
	for _, m := range before {
		s.log.Info("backend removed", zap.String("backend", m.Addr), zap.String("from", string(m.State)),
			zap.String("source", m.Source), zap.String("node", m.Node),
			zap.Uint64("version", cur.Version), zap.Int("ring", len(cur.Backends)))
	}
}

// wakeRun tells Run that the members to probe may have changed.
func (s *Set) wakeRun() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// waitCtx is a stand-in for Run's loop on a Set with nothing to run.
func waitCtx(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// normalize copies backends sorted by address, with weights of 1..maxWeight
// and one entry per address.
func normalize(backends []Backend) []Backend {
	out := make([]Backend, 0, len(backends))
	for _, b := range backends {
		b.Weight = min(max(b.Weight, 1), maxWeight)
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b Backend) int { return strings.Compare(a.Addr, b.Addr) })
	return slices.CompactFunc(out, func(a, b Backend) bool { return a.Addr == b.Addr })
}
