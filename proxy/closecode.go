package proxy

import "github.com/gobwas/ws"

// Close codes registered with IANA after RFC 6455 that gobwas/ws does not
// name (RFC 6455 section 11.7 registry).
const (
	// closeServiceRestart: the backend left, died or is draining, or the
	// client is being moved; reconnecting lands on its new owner.
	closeServiceRestart ws.StatusCode = 1012
	// closeTryAgainLater: the proxy is over a limit.
	closeTryAgainLater ws.StatusCode = 1013
	// closeBadGateway: the backend sent something invalid.
	closeBadGateway ws.StatusCode = 1014
)
