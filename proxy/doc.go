// Package proxy is the client-facing half of wsedge: the listener, the
// WebSocket handshake with both peers, the frame relay with backpressure and
// heartbeats, plain HTTP reverse proxying to the same sticky backend, and
// the registry of live connections that shutdown and rebalancing act on.
//
// The relay's framing logic (wsframe.Framer) does no I/O: it is fed the
// bytes read from one peer and says what to write to the other, so the same
// logic can be driven by a goroutine per direction or by an event loop.
package proxy
