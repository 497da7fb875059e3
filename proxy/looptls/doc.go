// Package looptls drives crypto/tls from an event loop: a TLS connection
// whose records the loop reads and writes itself, on a non-blocking socket,
// without a goroutine per connection.
//
// The handshake, a millisecond of CPU in one piece, runs on a small Pool
// of workers that wait for the socket with poll(2); the loop then takes the
// connection back as a Side, whose reads say unix.EAGAIN when the socket is
// drained and whose writes never fail for want of room: what the socket
// does not take is held, encrypted, until its next writable edge. A Side
// can be handed off to a reader that blocks, such as an HTTP server.
//
// It owns the transport under crypto/tls and the handshake workers. It
// knows nothing of epoll, HTTP or WebSockets: the loop that owns the
// socket says when to read, write and flush.
package looptls
