package wsframe

import "github.com/gobwas/ws"

// Close codes registered with IANA after RFC 6455 that gobwas/ws does not
// name (the registry of RFC 6455 section 11.7). ValidCloseCode accepts
// them on the wire.
const (
	// StatusServiceRestart: the service is restarting; a client may
	// reconnect, and lands where the service is now.
	StatusServiceRestart ws.StatusCode = 1012
	// StatusTryAgainLater: a temporary condition, such as a limit the
	// server is over; a client may try again later.
	StatusTryAgainLater ws.StatusCode = 1013
	// StatusBadGateway: a gateway or proxy got an invalid answer from the
	// server it relays for.
	StatusBadGateway ws.StatusCode = 1014
)
