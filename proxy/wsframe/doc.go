// Package wsframe follows the framing of a relayed WebSocket stream
// (RFC 6455 section 5) without doing any I/O: a Framer is fed the bytes
// read from one peer and says what to write to the other, so the same
// logic serves whatever drives it, an event loop or a goroutine per
// direction.
//
// It owns the frame header rules a relay can enforce, the message size
// limit, the gathering of control frames so that a driver can inspect
// pings, pongs and closes, and the validity of close codes. It knows
// nothing of sockets, HTTP, heartbeats or how a connection ends: those are
// the driver's decisions, taken on the Events a Framer returns.
package wsframe
