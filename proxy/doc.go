// Package proxy is the client-facing half of wsedge: the listener, the
// WebSocket handshake with both peers, the frame relay with backpressure and
// heartbeats, plain HTTP reverse proxying to the same sticky backend, and
// the registry of live connections that shutdown and rebalancing act on.
//
// On Linux every client is accepted and served by event loops
// (proxy/evloop, which knows sockets and readiness only). Per loop the
// proxy keeps its timers, its batch of reads and writes and its counters
// (loop); the loops drive two state machines of the proxy's: upgrade, which
// takes a client through a PROXY header, TLS (proxy/looptls), its request
// head (proxy/http1) and the backend's handshake, and econn, which relays
// the WebSocket that results, a flow per direction. Plain HTTP is handed to
// net/http (front, strictConn). Other systems relay with a goroutine per
// direction (session) over Go's own listeners.
//
// The relay's framing logic (wsframe.Framer) does no I/O: it is fed the
// bytes read from one peer and says what to write to the other, so the same
// logic can be driven by a goroutine per direction or by an event loop.
package proxy
