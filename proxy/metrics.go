package proxy

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsedge/wsedge/proxy/wsframe"
	"github.com/wsedge/wsedge/upstream"
)

// Handshake results, the values of wsedge_handshakes_total's label.
const (
	hsOK             = "ok"
	hsBadRequest     = "bad_request"     // malformed upgrade: 400, 405, 426
	hsNoBackend      = "no_backend"      // empty ring: 503
	hsOverLimit      = "over_limit"      // max_connections or max_connections_per_ip: 503, 429
	hsRateLimited    = "rate_limited"    // handshakes_per_second_per_ip: 429
	hsOriginDenied   = "origin_denied"   // allowed_origins: 403
	hsRefused        = "refused"         // the backend answered something other than 101
	hsUnreachable    = "unreachable"     // the backend could not be dialed: 502
	hsBackendTimeout = "backend_timeout" // the backend was too slow: 504
	hsClientFailed   = "client_failed"   // the client went away during the handshake
)

// metrics are the proxy's Prometheus metrics. Counters touched per
// connection live here; those touched per frame are relayStats, summed at
// scrape time.
type metrics struct {
	handshakes        map[string]prometheus.Counter
	closes            *prometheus.CounterVec
	heartbeatTimeouts prometheus.Counter
	slowConsumers     prometheus.Counter
	rebalanceCloses   *prometheus.CounterVec
	affinityMisses    *prometheus.CounterVec
	transitions       *prometheus.CounterVec
	// departed deletes transitions' series of backends long gone.
	departed *departures
	// localErrors counts failures of the proxy's own resources, by kind.
	localErrors *prometheus.CounterVec
	timing      *timings
}

func newMetrics(reg prometheus.Registerer, s *Server) *metrics {
	hs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wsedge_handshakes_total",
		Help: "WebSocket upgrade requests by result.",
	}, []string{"result"})
	m := &metrics{
		handshakes: map[string]prometheus.Counter{},
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsedge_closes_total",
			Help: "Relayed WebSockets ended, by the close code the client saw (1006: none) and the cause.",
		}, []string{"code", "cause"}),
		heartbeatTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsedge_heartbeat_timeouts_total",
			Help: "Clients closed because they did not answer the proxy's ping within pong_timeout.",
		}),
		slowConsumers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsedge_slow_consumer_closes_total",
			Help: "Clients closed because they took no writes for write_timeout.",
		}),
		rebalanceCloses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsedge_rebalance_closes_total",
			Help: "Connections closed with 1012 so their clients reconnect to a new owner, by reason.",
		}, []string{"reason"}),
		affinityMisses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsedge_affinity_misses_total",
			Help: "Requests that could not reach their previous backend: a route cookie naming a backend no longer in the ring, or an Engine.IO session seen on another backend.",
		}, []string{"kind"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsedge_backend_transitions_total",
			Help: "Backend health state changes seen by this proxy, by backend and new state.",
		}, []string{"backend", "state"}),
		localErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsedge_local_errors_total",
			Help: "Failures of the proxy's own resources (descriptors, ports, buffers, memory) while dialing a backend or accepting a client, by kind; they never count against a backend's health.",
		}, []string{"kind"}),
	}
	m.departed = newDepartures(m.transitions, s.seriesRetention)
	var timed []prometheus.Collector
	m.timing, timed = newTimings()
	for _, r := range []string{hsOK, hsBadRequest, hsNoBackend, hsOverLimit, hsRateLimited, hsOriginDenied, hsRefused, hsUnreachable, hsBackendTimeout, hsClientFailed} {
		m.handshakes[r] = hs.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(hs, m.closes, m.heartbeatTimeouts, m.slowConsumers, m.rebalanceCloses, m.affinityMisses,
			m.departed, m.localErrors, newLiveCollector(s))
		reg.MustRegister(timed...)
	}
	return m
}

// handshake counts one upgrade request's result.
func (m *metrics) handshake(result string) { m.handshakes[result].Inc() }

// ended counts a connection's end.
func (m *metrics) ended(e *ending) {
	m.closes.WithLabelValues(strconv.Itoa(int(e.code)), e.cause).Inc()
	switch e.cause {
	case causePongTimeout:
		m.heartbeatTimeouts.Inc()
	case causeSlowConsumer:
		m.slowConsumers.Inc()
	}
	if e.code == wsframe.StatusServiceRestart && e.rebalance != "" {
		m.rebalanceCloses.WithLabelValues(e.rebalance).Inc()
	}
}

// stateChanges counts the backends whose health state differs between
// two snapshots, and notes those that left.
func (m *metrics) stateChanges(old, cur *upstream.Snapshot) {
	was := make(map[string]upstream.State, len(old.Members))
	left := make(map[string]bool, len(old.Members))
	for _, mb := range old.Members {
		was[mb.Addr] = mb.State
		left[mb.Addr] = true
	}
	for _, mb := range cur.Members {
		delete(left, mb.Addr)
	}
	// Departures first: a backend back after its series went must not
	// have the count below deleted by a scrape's pruning meanwhile.
	m.departed.note(cur.Members, left)
	for _, mb := range cur.Members {
		if was[mb.Addr] != mb.State {
			m.transitions.WithLabelValues(mb.Addr, string(mb.State)).Inc()
		}
	}
}

// defaultSeriesRetention is how long a departed backend's series stay:
// several scrapes at any usual interval, so that Prometheus sees their
// last counts before they go.
const defaultSeriesRetention = 5 * time.Minute

// departures deletes the series of backends that left the member set once
// they have been gone for keep, so that a fleet whose backends come and go
// (autoscaling, hosts replaced under new addresses) does not grow the
// proxy's metrics without bound. A backend back before then keeps its
// series and counts on. It collects the vector it prunes, pruning first.
// It is safe for concurrent use.
type departures struct {
	vec  *prometheus.CounterVec // labelled "backend" and more
	keep time.Duration
	now  func() time.Time // tests move time

	mu   sync.Mutex           // guards gone
	gone map[string]time.Time // backend → when it left the members
}

func newDepartures(vec *prometheus.CounterVec, keep time.Duration) *departures {
	return &departures{vec: vec, keep: keep, now: time.Now, gone: make(map[string]time.Time)}
}

// note forgets the departure of every backend in members, records those
// that left, and prunes.
func (d *departures) note(members []upstream.Member, left map[string]bool) {
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.gone) > 0 {
		for _, m := range members {
			delete(d.gone, m.Addr)
		}
	}
	for addr := range left {
		d.gone[addr] = now
	}
	d.pruneLocked(now)
}

// pruneLocked deletes the series of backends gone for keep. d.mu must be
// held.
func (d *departures) pruneLocked(now time.Time) {
	pruned := false
	for addr, at := range d.gone {
		if now.Sub(at) >= d.keep {
			d.vec.DeletePartialMatch(prometheus.Labels{"backend": addr})
			delete(d.gone, addr)
			pruned = true
		}
	}
	if pruned && len(d.gone) == 0 {
		d.gone = make(map[string]time.Time) // a map keeps its buckets
	}
}

func (d *departures) Describe(ch chan<- *prometheus.Desc) { d.vec.Describe(ch) }

// Collect prunes, so that a scrape never shows a series past its time
// even when the members have not changed since, then collects the vector.
func (d *departures) Collect(ch chan<- prometheus.Metric) {
	d.mu.Lock()
	d.pruneLocked(d.now())
	d.mu.Unlock()
	d.vec.Collect(ch)
}

// liveCollector reports what is read from the proxy's state at scrape
// time: live connections per backend, the ring, backend health, gossip,
// and the relay counters.
type liveCollector struct {
	s                                              *Server
	live, ringVersion, ringSize, backendUp, gossip *prometheus.Desc
	frames, bytes, messages, sizes, loops          *prometheus.Desc
}

func newLiveCollector(s *Server) *liveCollector {
	return &liveCollector{
		s: s,
		live: prometheus.NewDesc("wsedge_connections",
			"Live relayed WebSocket connections, by backend.", []string{"backend"}, nil),
		ringVersion: prometheus.NewDesc("wsedge_ring_version",
			"Version of the backend set the ring was built from; it increases with every change.", nil, nil),
		ringSize: prometheus.NewDesc("wsedge_ring_backends",
			"Backends in the ring.", nil, nil),
		backendUp: prometheus.NewDesc("wsedge_backend_up",
			"1 when the backend is in the ring (healthy), 0 otherwise, by backend and its state.", []string{"backend", "state"}, nil),
		gossip: prometheus.NewDesc("wsedge_gossip_members",
			"Live members of the gossip cluster, proxies and agents.", nil, nil),
		frames: prometheus.NewDesc("wsedge_frames_relayed_total",
			"WebSocket frames relayed, by direction.", []string{"direction"}, nil),
		bytes: prometheus.NewDesc("wsedge_bytes_relayed_total",
			"WebSocket bytes relayed, frame headers included, by direction.", []string{"direction"}, nil),
		messages: prometheus.NewDesc("wsedge_messages_relayed_total",
			"WebSocket data messages relayed, by direction; a fragmented message counts once.", []string{"direction"}, nil),
		sizes: prometheus.NewDesc("wsedge_message_size_bytes",
			"Sizes of the data messages relayed (payload bytes, as on the wire), by direction.", []string{"direction"}, nil),
		loops: prometheus.NewDesc("wsedge_event_loops",
			"Event loops serving plain-TCP clients: [tuning] loops, or one per processor the Go runtime may use (GOMAXPROCS); 0 until the first plain-TCP listener or WebSocket starts them.", nil, nil),
	}
}

func (c *liveCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.live, c.ringVersion, c.ringSize, c.backendUp, c.gossip, c.frames, c.bytes, c.messages, c.sizes, c.loops} {
		ch <- d
	}
}

func (c *liveCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	t := s.router.table()
	counts := s.reg.counts()
	for i := range t.ring.Len() {
		addr := t.ring.Member(i).Addr
		ch <- prometheus.MustNewConstMetric(c.live, prometheus.GaugeValue, float64(counts[addr]), addr)
		delete(counts, addr)
	}
	for addr, n := range counts { // backends that left the ring, their connections still closing
		ch <- prometheus.MustNewConstMetric(c.live, prometheus.GaugeValue, float64(n), addr)
	}
	ch <- prometheus.MustNewConstMetric(c.ringVersion, prometheus.GaugeValue, float64(t.snapshot.Version))
	ch <- prometheus.MustNewConstMetric(c.ringSize, prometheus.GaugeValue, float64(t.ring.Len()))
	for _, m := range t.snapshot.Members {
		up := 0.0
		if m.State == upstream.StateHealthy {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.backendUp, prometheus.GaugeValue, up, m.Addr, string(m.State))
	}
	if g, ok := s.members.(interface{ GossipMembers() int }); ok {
		ch <- prometheus.MustNewConstMetric(c.gossip, prometheus.GaugeValue, float64(g.GossipMembers()))
	}
	for dir, d := range s.relayTotals() {
		ch <- prometheus.MustNewConstMetric(c.frames, prometheus.CounterValue, float64(d.frames), dir)
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(d.bytes), dir)
		ch <- prometheus.MustNewConstMetric(c.messages, prometheus.CounterValue, float64(d.messages), dir)
		ch <- prometheus.MustNewConstHistogram(c.sizes, d.messages, float64(d.sum), d.buckets(), dir)
	}
	ch <- prometheus.MustNewConstMetric(c.loops, prometheus.GaugeValue, float64(s.poll.running()))
}
