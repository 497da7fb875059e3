package upstreamtest

import (
	"net/http"
	"time"
)

// Option configures a Backend. Options apply in order; a later one wins where
// two set the same thing.
type Option func(*options)

// mode is what a Backend does with an accepted WebSocket connection.
type mode int

const (
	modeEcho      mode = iota // echo data, answer pings and closes
	modeNeverRead             // never read: the TCP window towards it fills
	modeSilent                // read and discard; never send a byte
)

// options is the whole configuration of a Backend; the zero value is an echo
// server on 127.0.0.1:0.
type options struct {
	name           string
	addr           string
	subprotocols   []string
	compression    bool
	refuse         bool
	refuseStatus   int
	refuseBody     string
	handshakeDelay time.Duration
	mode           mode
	header         http.Header // extra headers on every response
}

// WithName sets the backend's name, which it answers to "whoami", puts in
// X-Backend and serves as its HTTP body. Default "backend-<port>".
func WithName(name string) Option {
	return func(o *options) { o.name = name }
}

// WithAddr sets the listen address. Default "127.0.0.1:0", a free port.
// Reusing the address of a killed Backend models a restart.
func WithAddr(addr string) Option {
	return func(o *options) { o.addr = addr }
}

// WithSubprotocols sets the subprotocols the backend supports. It selects the
// first protocol in the client's Sec-WebSocket-Protocol list that it supports,
// so the client's order of preference wins (RFC 6455 4.2.2 leaves the choice
// to the server), and none when nothing matches.
func WithSubprotocols(p ...string) Option {
	return func(o *options) { o.subprotocols = append([]string(nil), p...) }
}

// WithCompression makes the backend accept permessage-deflate (RFC 7692)
// when a client offers it, with no context takeover in either direction, and
// really compress the messages it sends.
func WithCompression() Option {
	return func(o *options) { o.compression = true }
}

// WithRefuse makes the backend refuse every WebSocket upgrade with status
// (200-599; New fails otherwise) and body. Plain HTTP requests are still served, and refused handshakes are
// still recorded.
func WithRefuse(status int, body string) Option {
	return func(o *options) {
		o.refuse = true
		o.refuseStatus = status
		o.refuseBody = body
	}
}

// WithHandshakeDelay makes the backend wait d before answering an upgrade
// request (refused or not), as an overloaded app server does.
func WithHandshakeDelay(d time.Duration) Option {
	return func(o *options) { o.handshakeDelay = d }
}

// WithNeverRead makes the backend accept upgrades and then never read from
// the connection, so the peer's writes block once the TCP windows and
// buffers are full. It answers no ping and notices no close: the connection
// stays open until Close or Kill.
func WithNeverRead() Option {
	return func(o *options) { o.mode = modeNeverRead }
}

// WithSilent makes the backend accept upgrades, read and discard every
// frame, and never send a byte: no echo, no pong, no close reply, not even
// a protocol error. Messages still counts the messages it read. The
// connection ends when the peer closes it, on Close or Kill, or 2s
// after CloseAll.
func WithSilent() Option {
	return func(o *options) { o.mode = modeSilent }
}

// WithResponseHeader adds a header to every response: the 101 of an upgrade,
// a refusal and every plain HTTP response (for example a Set-Cookie). Calls
// accumulate. Sec-WebSocket-Extensions is left off the 101 (WithCompression
// negotiates it). Sec-WebSocket-Protocol, without WithSubprotocols, forces
// that subprotocol on every 101 whatever the client offered, as a broken
// backend would.
func WithResponseHeader(k, v string) Option {
	return func(o *options) {
		if o.header == nil {
			o.header = make(http.Header)
		}
		o.header.Add(k, v)
	}
}
