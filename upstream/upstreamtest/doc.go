// Package upstreamtest provides fake WebSocket and HTTP app servers for
// testing wsedge, in the spirit of net/http/httptest.
//
// A Backend listens on a loopback port and serves, on one listener, both
// plain HTTP and WebSocket upgrades, as a Node.js or Go app server does.
// By default it echoes every WebSocket message back, answers the text
// message "whoami" with its name, answers pings with pongs and echoes close
// codes. Options turn it into a misbehaving server (one that refuses
// upgrades, answers them late, never reads, never writes), and Kill makes it
// die on cue like a crashed process.
//
// The WebSocket side is github.com/gorilla/websocket, a different
// implementation from the proxy's own, so the two check each other.
//
// A Backend records what it saw (handshakes, plain requests, connection and
// message counts) so a test can assert what reached it through the proxy.
// All methods are safe for concurrent use.
//
// A DNS is a DNS server on loopback whose records (A, AAAA, SRV) a test
// changes as it runs, and which can fail on cue: SERVFAIL, silence, gone.
//
//	func TestSticky(t *testing.T) {
//		b := upstreamtest.Start(t, upstreamtest.WithName("b1"))
//		// put b.Addr behind the proxy, dial the proxy, send "whoami",
//		// expect "b1"; then:
//		if got := b.Accepted(); got != 1 { ... }
//	}
package upstreamtest
