package proxy

import _ "embed"

// dashboardPage is /dashboard: one page, no external assets, that polls
// /debug/ring and /debug/stats on the same listener once a second and
// draws the ring, connections opened and closed by cause, messages each
// way, handshake latency and the last rebalances.
//
//go:embed dashboard.html
var dashboardPage []byte
