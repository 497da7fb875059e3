package proxy

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Limits that fire, the values of wsedge_limits_total's limit label.
const (
	limitHandshakeRate    = "handshakes_per_second_per_ip" // a handshake refused with 429
	limitClientRateSlowed = "client_rate_slowed"           // a client over its rate, its reads paused
	limitClientRateClosed = "client_rate_closed"           // a client over its rate for the grace, closed
	limitMaxAge           = "max_connection_age"           // a connection closed for its age
	limitIdle             = "idle_timeout"                 // a connection closed for carrying no data
)

// timings are the proxy's histograms of durations, and its counts of
// limits firing: observed per handshake and per connection, never per
// frame.
type timings struct {
	handshake  *prometheus.HistogramVec
	connection *prometheus.HistogramVec
	limits     map[string]prometheus.Counter
}

func newTimings() (*timings, []prometheus.Collector) {
	t := &timings{
		handshake: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wsedge_handshake_duration_seconds",
			Help:    "WebSocket handshakes from the request's first byte to the 101 or the refusal, the backend's part included, by result.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"result"}),
		connection: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wsedge_connection_duration_seconds",
			Help:    "How long relayed WebSockets lived, by why they ended.",
			Buckets: []float64{1, 10, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400},
		}, []string{"cause"}),
		limits: map[string]prometheus.Counter{},
	}
	hits := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wsedge_limits_total",
		Help: "Edge limits that fired: handshakes refused per address, clients slowed or closed for their rate, connections closed for their age or for idling.",
	}, []string{"limit"})
	for _, l := range []string{limitHandshakeRate, limitClientRateSlowed, limitClientRateClosed, limitMaxAge, limitIdle} {
		t.limits[l] = hits.WithLabelValues(l)
	}
	return t, []prometheus.Collector{t.handshake, t.connection, hits}
}

// limitHit counts a limit firing.
func (m *metrics) limitHit(limit string) { m.timing.limits[limit].Inc() }

// handshakeTook observes a handshake that began at since (unix
// nanoseconds; 0 when not known) and ended with result.
func (m *metrics) handshakeTook(result string, since int64) {
	if since > 0 {
		m.timing.handshake.WithLabelValues(result).Observe(time.Duration(time.Now().UnixNano() - since).Seconds())
	}
}

// lived observes a connection that began at started and ended for cause.
func (m *metrics) lived(cause string, started int64) {
	m.timing.connection.WithLabelValues(cause).Observe(time.Duration(time.Now().UnixNano() - started).Seconds())
}
