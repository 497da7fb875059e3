// Package looptls drives crypto/tls from an event loop: a TLS connection
// whose records the loop reads and writes itself, on a non-blocking socket,
// without a goroutine per connection.
//
// The handshake, a millisecond of CPU in one piece, runs in a Pool: each
// on a goroutine of its own that waits for its client in Go's netpoller,
// and computes only in one of a few slots, so that many slow clients do
// not hold up each other and many fast ones do not starve the loops. The
// loop then takes the connection back as a Side, whose reads say
// unix.EAGAIN when the socket is drained and whose writes never fail for
// want of room: what the socket does not take is held, encrypted, in a
// buffer borrowed from the Pool until its next writable edge. A Side can
// be handed off to a reader that blocks, such as an HTTP server.
//
// It owns the transport under crypto/tls and the handshakes' goroutines.
// It knows nothing of the loops' epoll, HTTP or WebSockets: the loop that
// owns the socket says when to read, write and flush.
package looptls
