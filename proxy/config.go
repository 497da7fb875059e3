package proxy

import (
	"crypto/tls"
	"time"

	"github.com/wsedge/wsedge/affinity"
)

// KeyMode says what a client is routed by.
type KeyMode int

const (
	// KeyIP routes by client IP (after trusted proxies).
	KeyIP KeyMode = iota
	// KeyCookie routes by the proxy's route cookie, picking by IP and
	// setting the cookie when it is missing or stale.
	KeyCookie
	// KeyHeader routes by a request header, falling back to IP.
	KeyHeader
)

// Config is what the proxy does with each client. A Config is immutable
// once handed to a Server; a reload hands over a new one. Zero values mean
// the defaults given on each field.
type Config struct {
	Key     KeyMode
	Cookie  string                  // route cookie name; zero means "wsedge_route"
	Header  string                  // header for KeyHeader
	Trusted affinity.TrustedProxies // peers whose forwarding headers are believed

	VNodes int // ring points per unit of weight; zero means 160
	// LoadFactor above 1 turns on bounded loads: a key seen for the first
	// time does not go to a backend holding more than LoadFactor times the
	// mean of live connections. Zero keeps the plain ring, on which every
	// proxy agrees.
	LoadFactor float64

	// KeepRemoved leaves the connections of a backend that left the ring
	// open until they end by themselves, instead of closing them with 1012.
	KeepRemoved bool
	// MigrateOnAdd closes, with 1012, the connections whose key now maps to
	// a backend that joined the ring, so they reconnect to it.
	MigrateOnAdd bool
	// MigrateRate caps the closes per second when migrating, draining or
	// shutting down; zero means 200.
	MigrateRate int

	HandshakeTimeout time.Duration // whole client and backend handshake; zero means 5s
	PingInterval     time.Duration // proxy pings clients this often; zero means never
	PongTimeout      time.Duration // no pong this long after a ping closes the client; zero means 10s
	WriteTimeout     time.Duration // a peer not taking a write this long is closed; zero means 10s
	MaxMessageBytes  int64         // across fragments; zero means 1 MiB
	MaxHeaderBytes   int           // request head; zero means 16 KiB

	MaxConnections      int      // live WebSockets; beyond, handshakes get 503; zero means no limit
	MaxConnectionsPerIP int      // live WebSockets per client IP; beyond, 429; zero means no limit
	AllowedOrigins      []string // Origin values accepted on upgrade (403 otherwise); empty means any

	// MaxConnectionAge closes a connection older than its own limit, this
	// times 1±MaxConnectionAgeJitter (drawn once per connection), with 1012
	// at MigrateRate, so that clients that connected together reconnect
	// apart and spread onto new capacity. Zero means never.
	MaxConnectionAge       time.Duration
	MaxConnectionAgeJitter float64
	// IdleTimeout closes a connection with 1001 once no data frame went
	// either way for this long; pings and pongs do not count. Zero means
	// never.
	IdleTimeout time.Duration

	// ClientMessagesPerSecond limits the messages a client sends on one
	// connection (a token bucket holding ClientMessageBurst, zero meaning
	// one second's worth), ClientBytesPerSecond their bytes. A client over
	// a limit is slowed first: the proxy stops reading it, and TCP pushes
	// back; one over it for RateLimitGrace (zero means 10s) is closed with
	// 1008. Backend to client traffic is never limited. Zero means no limit.
	ClientMessagesPerSecond int
	ClientMessageBurst      int
	ClientBytesPerSecond    int64
	RateLimitGrace          time.Duration
	// HandshakesPerSecondPerIP limits the new WebSockets one client
	// address opens (a token bucket holding HandshakeBurstPerIP, zero
	// meaning one second's worth); beyond, 429 with Retry-After. Zero
	// means no limit.
	HandshakesPerSecondPerIP int
	HandshakeBurstPerIP      int

	// UpstreamTLS, when set, makes the proxy speak TLS to backends.
	UpstreamTLS *tls.Config
}

func (c Config) withDefaults() Config {
	if c.Cookie == "" {
		c.Cookie = "wsedge_route"
	}
	if c.VNodes <= 0 {
		c.VNodes = 160
	}
	if c.MigrateRate <= 0 {
		c.MigrateRate = 200
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 5 * time.Second
	}
	if c.PongTimeout <= 0 {
		c.PongTimeout = 10 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 1 << 20
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = 16 << 10
	}
	if c.RateLimitGrace <= 0 {
		c.RateLimitGrace = 10 * time.Second
	}
	if c.ClientMessagesPerSecond > 0 && c.ClientMessageBurst <= 0 {
		c.ClientMessageBurst = c.ClientMessagesPerSecond
	}
	if c.HandshakesPerSecondPerIP > 0 && c.HandshakeBurstPerIP <= 0 {
		c.HandshakeBurstPerIP = c.HandshakesPerSecondPerIP
	}
	return c
}
