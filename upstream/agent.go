package upstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"
)

// AgentConfig configures an Agent. Zero values mean the defaults given.
type AgentConfig struct {
	// Discovery is the agent's own gossip node, as for a proxy: Bind is
	// required, Join names the proxies (or other agents) to join.
	// AllowedBackends means nothing to an agent, which routes nothing.
	Discovery DiscoveryConfig
	// Advertise is the backend's host:port as the proxies should dial it:
	// an IP address (IPv6 in brackets, in its shortest form) or a DNS name,
	// and a port of 1..65535 without leading zeros, since proxies refuse
	// any other spelling. Required.
	Advertise string
	// Weight is the backend's share of the ring, 1..1000. Zero means 1.
	Weight int
	// Health is a URL the agent checks locally:
	// http(s)://host[:port]/path must answer GET with a 2xx;
	// ws(s)://host[:port]/path must upgrade, answer a ping and close
	// cleanly; tcp://host:port must accept a connection. Zero means no
	// local check: the backend is advertised alive until the agent stops.
	Health string
	// CheckInterval is the time between local checks, give or take a
	// tenth; a check may take as long, up to 1s. Zero means 1s.
	CheckInterval time.Duration
	// Rise is how many local checks in a row must pass before the agent
	// advertises the backend alive, at start and after failures. Zero
	// means 2.
	Rise int
	// Fall is how many local checks in a row must fail before it
	// advertises the backend draining. Zero means 3.
	Fall int
	// Grace is how long the agent advertises draining, once its context
	// ends, before it leaves the cluster: proxies stop sending new clients
	// and move live ones away while the backend still serves them. Zero
	// means leave at once.
	Grace time.Duration
}

// Agent gives one backend, written in any language, its place in the ring:
// it gossips the backend's address, weight and state to the proxies and
// checks the backend locally. The proxies still run their own checks
// before sending traffic. Run it once; an Agent is not meant for
// concurrent use.
type Agent struct {
	cfg     AgentConfig
	log     *zap.Logger
	secret  []byte
	checker *checker                 // nil: no local check
	target  string                   // address the local check reaches
	tune    func(*memberlist.Config) // tests shorten memberlist's timers
}

// NewAgent checks cfg and reads the gossip key. It binds nothing: Run
// does. Like New, it refuses gossip reachable beyond this host without a
// key unless cfg.Discovery.AllowPlaintext says so (ErrPlaintextGossip). A
// nil log logs nothing.
func NewAgent(cfg AgentConfig, log *zap.Logger) (*Agent, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.Discovery.Bind == "" {
		return nil, errors.New("upstream: agent needs a gossip bind address")
	}
	if len(cfg.Discovery.Join) == 0 {
		return nil, errors.New("upstream: agent needs at least one node to join")
	}
	var err error
	if cfg.Discovery, err = cfg.Discovery.withDefaults(); err != nil {
		return nil, err
	}
	// The proxies check the address and weight as decodeMeta does; an
	// agent finds out here rather than by never entering a ring.
	if err := checkAddr(cfg.Advertise); err != nil {
		return nil, fmt.Errorf("upstream: agent advertise: %w", err)
	}
	if cfg.Weight > maxWeight {
		return nil, fmt.Errorf("upstream: agent weight %d: want 1..%d", cfg.Weight, maxWeight)
	}
	cfg.Weight = max(cfg.Weight, 1)
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = time.Second
	}
	if cfg.Rise <= 0 {
		cfg.Rise = defaultRise
	}
	if cfg.Fall <= 0 {
		cfg.Fall = defaultFall
	}
	cfg.Grace = max(cfg.Grace, 0)
	a := &Agent{cfg: cfg, log: log}
	if cfg.Health != "" {
		c, target, err := parseCheckURL(cfg.Health)
		if err != nil {
			return nil, fmt.Errorf("upstream: agent: %w", err)
		}
		a.checker, a.target = c, target
	}
	if err := cfg.Discovery.checkPlaintext(); err != nil {
		return nil, err
	}
	if a.secret, err = readSecret(cfg.Discovery.SecretFile); err != nil {
		return nil, err
	}
	return a, nil
}

// Run joins the cluster and advertises the backend until ctx ends; then it
// advertises draining, waits the grace period and leaves. With a local
// check, the backend is advertised draining until rise checks pass, and
// whenever fall checks in a row fail. Run returns an error only when the
// gossip node cannot start; joining is retried until it succeeds or ctx
// ends.
func (a *Agent) Run(ctx context.Context) error {
	h := trusted()
	if a.checker != nil {
		h = rising()
	}
	g, err := startGossip(a.cfg.Discovery, a.secret, a.meta(h), a.log, a.tune)
	if err != nil {
		return err
	}
	log := a.log.With(zap.String("backend", a.cfg.Advertise))
	log.Info("agent started", zap.String("node", g.name), zap.String("addr", g.addr()),
		zap.Strings("join", a.cfg.Discovery.Join), zap.String("state", string(a.meta(h).State)),
		zap.String("health", a.cfg.Health), zap.Int("weight", a.cfg.Weight))

	jctx, stopJoining := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.keepJoined(jctx)
	}()
	if a.checker != nil {
		a.watch(ctx, g, &h, log)
	} else {
		<-ctx.Done()
	}
	stopJoining()
	<-done

	// The grace period runs from the drain, not from when the news has
	// spread: setMeta waits for that.
	log.Info("draining before leaving", zap.Duration("grace", a.cfg.Grace))
	t := time.NewTimer(a.cfg.Grace)
	if a.meta(h).State != nodeDraining {
		h.down("agent stopping")
		if err := g.setMeta(a.meta(h), true); err != nil {
			log.Warn("draining not confirmed by any node", zap.Error(err))
		}
	}
	<-t.C
	g.leave()
	if a.checker != nil {
		a.checker.close()
	}
	log.Info("left the gossip cluster")
	return nil
}

// watch checks the backend every interval until ctx ends, advertising each
// change of state.
func (a *Agent) watch(ctx context.Context, g *gossipNode, h *health, log *zap.Logger) {
	timeout := min(a.cfg.CheckInterval, time.Second)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		err := a.checker.check(cctx, a.target)
		cancel()
		if ctx.Err() != nil {
			return
		}
		before := a.meta(*h).State
		if err == nil {
			h.pass(a.cfg.Rise)
		} else {
			h.fail(a.cfg.Fall, err.Error())
		}
		if after := a.meta(*h).State; after != before {
			log.Info("backend state changed", zap.String("from", string(before)), zap.String("to", string(after)),
				zap.String("reason", h.lastErr))
			if err := g.setMeta(a.meta(*h), false); err != nil {
				log.Error("state change not advertised", zap.Error(err))
			}
		}
		t.Reset(jitter(a.cfg.CheckInterval, 0.1))
	}
}

// meta is what the agent advertises when its backend's health is h.
func (a *Agent) meta(h health) nodeMeta {
	state := nodeDraining
	if h.up {
		state = nodeAlive
	}
	return nodeMeta{Role: roleBackend, Addr: a.cfg.Advertise, Weight: a.cfg.Weight, State: state}
}
