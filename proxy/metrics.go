package proxy

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsedge/wsedge/upstream"
)

// Handshake results, the values of wsedge_handshakes_total's label.
const (
	hsOK             = "ok"
	hsBadRequest     = "bad_request"     // malformed upgrade: 400, 405, 426
	hsNoBackend      = "no_backend"      // empty ring: 503
	hsOverLimit      = "over_limit"      // max_connections or max_connections_per_ip: 503, 429
	hsOriginDenied   = "origin_denied"   // allowed_origins: 403
	hsRefused        = "refused"         // the backend answered something other than 101
	hsUnreachable    = "unreachable"     // the backend could not be dialed: 502
	hsBackendTimeout = "backend_timeout" // the backend was too slow: 504
	hsClientFailed   = "client_failed"   // the client went away during the handshake
)

// relayStats counts what a driver relays. Each event loop has its own, so
// busy loops never share a cache line; goroutine sessions share the
// server's. Read at scrape time.
type relayStats struct {
	framesUp, framesDown atomic.Uint64
	bytesUp, bytesDown   atomic.Uint64
	_                    [32]byte // keep the next loop's counters off this cache line
}

func (r *relayStats) add(up bool, frames, bytes uint64) {
	if up {
		r.framesUp.Add(frames)
		r.bytesUp.Add(bytes)
		return
	}
	r.framesDown.Add(frames)
	r.bytesDown.Add(bytes)
}

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
	}
	for _, r := range []string{hsOK, hsBadRequest, hsNoBackend, hsOverLimit, hsOriginDenied, hsRefused, hsUnreachable, hsBackendTimeout, hsClientFailed} {
		m.handshakes[r] = hs.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(hs, m.closes, m.heartbeatTimeouts, m.slowConsumers, m.rebalanceCloses, m.affinityMisses,
			m.transitions, newLiveCollector(s))
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
	if e.code == closeServiceRestart && e.rebalance != "" {
		m.rebalanceCloses.WithLabelValues(e.rebalance).Inc()
	}
}

// stateChanges counts the backends whose health state differs between
// two snapshots.
func (m *metrics) stateChanges(old, cur *upstream.Snapshot) {
	was := make(map[string]upstream.State, len(old.Members))
	for _, mb := range old.Members {
		was[mb.Addr] = mb.State
	}
	for _, mb := range cur.Members {
		if was[mb.Addr] != mb.State {
			m.transitions.WithLabelValues(mb.Addr, string(mb.State)).Inc()
		}
	}
}

// liveCollector reports what is read from the proxy's state at scrape
// time: live connections per backend, the ring, backend health, gossip,
// and the relay counters.
type liveCollector struct {
	s                                              *Server
	live, ringVersion, ringSize, backendUp, gossip *prometheus.Desc
	frames, bytes                                  *prometheus.Desc
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
	}
}

func (c *liveCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.live, c.ringVersion, c.ringSize, c.backendUp, c.gossip, c.frames, c.bytes} {
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
	var total relayStats
	for _, st := range s.allStats() {
		total.add(true, st.framesUp.Load(), st.bytesUp.Load())
		total.add(false, st.framesDown.Load(), st.bytesDown.Load())
	}
	ch <- prometheus.MustNewConstMetric(c.frames, prometheus.CounterValue, float64(total.framesUp.Load()), "client_to_backend")
	ch <- prometheus.MustNewConstMetric(c.frames, prometheus.CounterValue, float64(total.framesDown.Load()), "backend_to_client")
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(total.bytesUp.Load()), "client_to_backend")
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(total.bytesDown.Load()), "backend_to_client")
}
