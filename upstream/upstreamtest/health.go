package upstreamtest

// healthPath is where a proxy's http health check asks by default; its
// answer follows SetHealthy.
const healthPath = "/healthz"

// SetHealthy(false) makes GET /healthz answer 503 Service Unavailable, as
// an app server failing its own health check does, while it goes on
// serving its WebSocket connections and every other request; a proxy's
// checks then take it out of the ring although it is alive.
// SetHealthy(true) restores the normal 200. A Backend starts healthy.
func (b *Backend) SetHealthy(ok bool) { b.unhealthy.Store(!ok) }
