package upstream

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"
)

// New returns a Set for cfg: its static backends, checked as cfg.Health
// says, and, when cfg.Discovery.Bind is set, the backends gossip
// advertises. Run does the checking and the gossip; until it runs, the Set
// holds the static backends. A nil log logs nothing.
//
// Static backends, here and in Update, are trusted healthy from the start,
// as nginx and HAProxy trust theirs: a proxy restarting in front of a
// working fleet routes at once, /readyz means "has backends" from its first
// second, and a backend added to the config takes traffic on reload. Their
// checks start at once, so one that is down leaves the ring after fall
// checks (or fall failed dials) instead. Backends advertised by gossip
// come and go without anyone vouching for them: they must pass rise checks
// first. So must the addresses of a DNS name, except those of its first
// answer, which stand for the config's list (see applyDNS).
//
// New reads the gossip key file but does not bind: Run does, so that
// nothing runs until something owns it. It refuses gossip reachable beyond
// this host without a key unless cfg.Discovery.AllowPlaintext says so
// (ErrPlaintextGossip), whatever the caller checked before.
func New(cfg Config, log *zap.Logger) (*Set, error) {
	if log == nil {
		log = zap.NewNop()
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := cfg.Discovery.checkPlaintext(); err != nil {
		return nil, err
	}
	secret, err := readSecret(cfg.Discovery.SecretFile)
	if err != nil {
		return nil, err
	}
	s := newSet(log)
	s.managed = true
	s.cfg = cfg
	s.secret = secret
	s.gen = 1
	s.checker = newChecker(cfg.Health.Type, cfg.Health.Path, cfg.UpstreamTLS)
	s.setStaticLocked(cfg.Static, trusted) // nobody else has s yet
	s.setDNSNamesLocked(cfg.DNS)
	s.cur.Store(s.buildLocked())
	return s, nil
}

// withDefaults fills in zero values and checks the rest.
func (c Config) withDefaults() (Config, error) {
	var err error
	if c.Health, err = c.Health.withDefaults(); err != nil {
		return c, err
	}
	if c.Discovery, err = c.Discovery.withDefaults(); err != nil {
		return c, err
	}
	for _, b := range c.Static {
		if _, _, err := net.SplitHostPort(b.Addr); err != nil {
			return c, fmt.Errorf("upstream: backend %q: %w", b.Addr, err)
		}
	}
	c.Static = normalize(c.Static)
	if c.DNS, err = normalizeDNS(c.DNS); err != nil {
		return c, err
	}
	return c, nil
}

// Run checks the backends' health, looks up the DNS names of the config
// and, with discovery on, runs this proxy's gossip node, until ctx ends.
// It returns an error at once if the gossip node cannot start (its
// address is taken, say); joining the seeds is retried in the background,
// since they may start later. On return every check and lookup has
// stopped and the node has left the cluster, telling the others at once
// rather than letting them find it dead.
//
// Run runs once at a time; a second concurrent call returns ErrRunning. On
// a Set from NewSet it has nothing to do and returns when ctx ends.
func (s *Set) Run(ctx context.Context) error {
	if !s.managed {
		return waitCtx(ctx)
	}
	if !s.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer s.running.Store(false)

	s.mu.Lock()
	d := s.cfg.Discovery
	s.mu.Unlock()
	var g *gossipNode
	var events <-chan struct{} // nil without gossip: never ready
	if d.on() {
		var err error
		g, err = s.startGossipInherited(ctx, d)
		if err != nil {
			return err
		}
		events = g.events.ready
		s.gossip.Store(g)
		defer func() { // last: after every check has stopped
			s.gossip.Store(nil)
			g.leave()
		}()
	}

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	if g != nil {
		wg.Go(func() { g.keepJoined(ctx) })
	}
	prune := time.NewTicker(deadRetention / 4)
	defer prune.Stop()
	probers := make(map[string]prober)
	watchers := make(map[string]watcher)
	for {
		s.syncProbers(ctx, &wg, probers)
		s.syncWatchers(ctx, &wg, watchers)
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		case <-events:
			s.applyGossip(g.events.take(), time.Now())
		case now := <-prune.C:
			s.pruneDead(now)
		}
	}
}

// prober is a running probe of one backend.
type prober struct {
	gen    uint64
	cancel context.CancelFunc
}

// syncProbers starts a probe for every member that needs one and stops the
// probes of members gone, dead or checked under old settings.
func (s *Set) syncProbers(ctx context.Context, wg *sync.WaitGroup, probers map[string]prober) {
	s.mu.Lock()
	ps := probeSettings{
		gen:      s.gen,
		interval: s.cfg.Health.Interval,
		timeout:  s.cfg.Health.Timeout,
		check:    s.checker.check,
	}
	if s.check != nil {
		ps.check = s.check
	}
	want := make(map[string]bool, len(s.members))
	for addr, m := range s.members {
		if m.probed() {
			want[addr] = true
		}
	}
	s.mu.Unlock()
	for addr, p := range probers {
		if !want[addr] || p.gen != ps.gen {
			p.cancel()
			delete(probers, addr)
		}
	}
	for addr := range want {
		if _, ok := probers[addr]; ok {
			continue
		}
		pctx, cancel := context.WithCancel(ctx)
		probers[addr] = prober{gen: ps.gen, cancel: cancel}
		wg.Go(func() { s.probe(pctx, addr, ps) })
	}
}

// Update applies a reloaded config: the new static list and health
// settings take effect without losing what the Set knows. Backends that
// stay keep their health and their runs of passes and failures; new static
// backends are trusted, as in New; removed ones leave the ring at once
// (unless gossip advertises them). DNS names that stay keep what they
// resolved to, with their new weight and interval; new ones are looked up
// at once; the backends of removed ones leave the ring at once. New
// thresholds apply from the next check. Discovery settings apply only
// when the process restarts: a change is logged and otherwise ignored.
// Update returns an error, and changes nothing, when cfg is invalid.
//
// On a Set from NewSet, Update replaces the static list, all healthy, and
// ignores DNS names.
func (s *Set) Update(cfg Config) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	s.mu.Lock()
	if !s.managed {
		s.setStaticLocked(cfg.Static, trusted)
		old, cur := s.commitLocked()
		s.mu.Unlock()
		s.announce(old, cur)
		return nil
	}
	discoveryChanged := !cfg.Discovery.equal(s.cfg.Discovery)
	cfg.Discovery = s.cfg.Discovery
	if cfg.Health != s.cfg.Health || cfg.UpstreamTLS != s.cfg.UpstreamTLS {
		s.gen++
		s.checker.close()
		s.checker = newChecker(cfg.Health.Type, cfg.Health.Path, cfg.UpstreamTLS)
	}
	s.cfg = cfg
	s.setStaticLocked(cfg.Static, trusted)
	s.setDNSNamesLocked(cfg.DNS)
	old, cur := s.commitLocked()
	s.mu.Unlock()
	s.announce(old, cur)
	s.wakeRun()
	if discoveryChanged {
		s.log.Warn("discovery settings apply on restart only; gossip goes on as before")
	}
	return nil
}

// GossipMembers returns how many live nodes, proxies and agents, this
// proxy's gossip node knows, itself included; 0 when discovery is off or
// Run is not running.
func (s *Set) GossipMembers() int {
	g := s.gossip.Load()
	if g == nil {
		return 0
	}
	return g.ml.NumMembers()
}
