package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http/httputil"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/wsedge/wsedge/proxy/evloop"
)

// Server is the proxy: it takes clients from a listener, routes each to its
// sticky backend and relays WebSockets and plain HTTP. Build it with New,
// run Serve on a listener and WatchMembers beside it; stop it with
// Shutdown. It is safe for concurrent use.
type Server struct {
	log     *zap.Logger
	router  *router
	members memberSource
	pool    *evloop.BufPool
	reg     *registry
	places  *placements
	mig     *migrator
	drains  sync.WaitGroup // background drains, ended by Shutdown
	// resolving are the lookups of backend names under way, which end
	// with the handshake that asked (or with the server's life).
	resolving sync.WaitGroup

	drainMu  sync.Mutex      // guards draining
	draining map[string]bool // backends an operator drain is closing
	followMu sync.Mutex      // serializes followMembers

	// life ends when Shutdown starts; background work stops with it.
	life     context.Context
	endLife  context.CancelFunc
	stopping atomic.Bool

	registerer prometheus.Registerer
	metrics    *metrics
	stats      relayStats  // what goroutine sessions relay
	sessions   *placements // Engine.IO session IDs by backend, to spot affinity misses
	idPrefix   string      // random, so request IDs differ across restarts
	proxy      *httputil.ReverseProxy
	poll       *poller
	ids        atomic.Uint64
	// handshakeRates holds each client address's handshake bucket, for
	// handshakes_per_second_per_ip.
	handshakeRates *handshakeLimiter
	events         eventLog // the last rebalances, for /debug/stats
	// localLogged is when a failure of the proxy's own resources was last
	// logged, in unix nanoseconds.
	localLogged atomic.Int64

	front     atomic.Pointer[front]
	frontMu   sync.Mutex // serializes front changes and the start of shutdown; guards listeners
	listeners map[net.Listener]struct{}
	retiring  sync.WaitGroup // fronts replaced by a reload, finishing their requests

	// noRing makes the event loops do each relay read and write as a
	// system call of its own, as where io_uring is not available: an
	// operator's choice (WithoutIOUring), and tests cover that path too.
	noRing bool
	// loops is how many event loops serve plain-TCP clients, fixed by New.
	loops int
	// seriesRetention is how long the metrics keep the series of a backend
	// that left the member set.
	seriesRetention time.Duration
	// closeWait is how long a closing connection waits for the peers'
	// close frames; tests that close thousands of uncooperative peers
	// shorten it.
	closeWait time.Duration
}

// Option sets up a Server beyond its Config: the code-only knobs.
type Option func(*Server)

// WithLogger logs through l; by default nothing is logged.
func WithLogger(l *zap.Logger) Option { return func(s *Server) { s.log = l } }

// WithMetrics registers the proxy's Prometheus metrics with reg.
func WithMetrics(reg prometheus.Registerer) Option { return func(s *Server) { s.registerer = reg } }

// WithLoops runs n event loops for plain-TCP clients. Zero, the default,
// means one per processor the Go runtime may use when New runs
// (runtime.GOMAXPROCS(0), which follows a container's CPU limit and the
// process's CPU affinity). The number is fixed for the Server's life;
// give ListenTCP the same one (Loops).
func WithLoops(n int) Option { return func(s *Server) { s.loops = n } }

// WithoutIOUring makes the event loops read and write with a system call
// each, as where the kernel has no io_uring, even where it has one.
func WithoutIOUring() Option { return func(s *Server) { s.noRing = true } }

// WithBackendSeriesRetention keeps the metric series labelled with a
// backend for d after the backend left the member set, then deletes them.
// Zero means 5 minutes.
func WithBackendSeriesRetention(d time.Duration) Option {
	return func(s *Server) { s.seriesRetention = d }
}

// New returns a Server routing over the backends of members.
func New(cfg Config, members memberSource, opts ...Option) *Server {
	s := &Server{
		log:            zap.NewNop(),
		router:         newRouter(cfg, members.Snapshot()),
		members:        members,
		pool:           evloop.NewBufPool(),
		reg:            newRegistry(),
		places:         newPlacements(placementCap),
		handshakeRates: newHandshakeLimiter(),
		sessions:       newPlacements(sessionCap),
		mig:            newMigrator(),
		idPrefix:       fmt.Sprintf("%08x", rand.Uint32()),
		closeWait:      defaultCloseWait,
		listeners:      map[net.Listener]struct{}{},
		draining:       map[string]bool{},
	}
	for _, o := range opts {
		o(s)
	}
	if s.loops <= 0 {
		s.loops = runtime.GOMAXPROCS(0)
	}
	if s.seriesRetention <= 0 {
		s.seriesRetention = defaultSeriesRetention
	}
	s.metrics = newMetrics(s.registerer, s)
	s.life, s.endLife = context.WithCancel(context.Background())
	s.poll = newPoller(s)
	s.front.Store(s.newFront(s.router.table().cfg))
	s.proxy = s.newHTTPProxy(roundTripper(s.roundTrip))
	return s
}

// Loops returns how many event loops serve plain-TCP clients: ListenTCP
// should open as many sockets, one for each loop to accept from.
func (s *Server) Loops() int { return s.loops }

// SetConfig applies cfg to new connections; live ones keep theirs.
func (s *Server) SetConfig(cfg Config) {
	_, cur := s.router.setConfig(cfg)
	s.refreshFront(cur.cfg)
	s.shed(cur.cfg)
}

// shed closes, with 1013 at migrate_rate, the newest connections beyond
// limits a reload lowered: over max_connections, and over
// max_connections_per_ip for each address.
func (s *Server) shed(cfg Config) {
	if cfg.MaxConnections <= 0 && cfg.MaxConnectionsPerIP <= 0 {
		return
	}
	conns := s.reg.sessions("")
	slices.SortFunc(conns, func(a, b liveConn) int { return cmp.Compare(a.relay().started, b.relay().started) })
	var excess []liveConn
	perIP := map[netip.Addr]int{}
	kept := 0
	for _, c := range conns {
		ip := c.relay().client
		if cfg.MaxConnectionsPerIP > 0 && perIP[ip] >= cfg.MaxConnectionsPerIP ||
			cfg.MaxConnections > 0 && kept >= cfg.MaxConnections {
			excess = append(excess, c)
			continue
		}
		perIP[ip]++
		kept++
	}
	if len(excess) == 0 {
		return
	}
	s.log.Info("connection limits lowered; shedding the newest connections",
		zap.Int("connections", len(excess)), zap.Int("rate", cfg.MigrateRate))
	s.drains.Go(func() { closePaced(s.life, excess, cfg.MigrateRate, overLimit()) })
}

// Shutdown stops accepting, reports not ready, closes every live WebSocket
// with 1001 at migrate_rate while in-flight HTTP requests finish, and waits
// for all of it until ctx ends; whatever is left then is cut.
func (s *Server) Shutdown(ctx context.Context) error {
	s.frontMu.Lock()
	s.stopping.Store(true)
	s.frontMu.Unlock()
	s.closeListeners()
	httpDone := make(chan error, 1)
	go func() { httpDone <- s.shutdownFronts(ctx) }()
	s.endLife()
	s.drains.Wait()
	s.resolving.Wait()
	rate := s.router.table().cfg.MigrateRate
	// Handshakes under way when the listener closed register late: go
	// round until nothing is left.
	for ctx.Err() == nil {
		conns := s.reg.sessions("")
		if len(conns) == 0 {
			break
		}
		closePaced(ctx, conns, rate, goingAway())
		select {
		case <-s.reg.emptied():
		case <-ctx.Done():
		case <-time.After(s.closeWait + lastWordTimeout):
		}
	}
	var err error
	if ctx.Err() != nil {
		for _, c := range s.reg.sessions("") {
			c.abort()
		}
		err = ctx.Err()
	}
	s.poll.stop()
	<-s.reg.emptied()
	return errors.Join(err, <-httpDone)
}

// allStats returns every relay counter set: the event loops' and the
// goroutine sessions'.
func (s *Server) allStats() []*relayStats {
	return append(s.poll.stats(), &s.stats)
}
