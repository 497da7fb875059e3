package config

import (
	"net/netip"
	"time"
)

// File is a decoded proxy.toml: every setting of the binary as a plain typed
// value, defaults filled in. The field comments give the TOML key and the
// default. Parse returns a fresh File each time and keeps no reference to
// it, so it is safe to share for reading once built.
type File struct {
	// Path is the file the values came from; "" for the built-in defaults.
	Path string

	// Listen is where clients connect (listen). Default "127.0.0.1:8080".
	Listen string
	// AdminListen serves /metrics, /healthz, /readyz and /debug/
	// (admin_listen). "" disables it. Default "127.0.0.1:9090".
	AdminListen string
	// LogLevel is "debug", "info", "warn" or "error" (log_level). Default "info".
	LogLevel string
	// LogFormat is "json" or "console" (log_format). Default "json".
	LogFormat string
	// ProxyProtocol accepts PROXY protocol v1/v2 headers, and only from
	// Affinity.TrustedProxies (proxy_protocol). Default false.
	ProxyProtocol bool
	// ShutdownTimeout bounds a graceful shutdown (shutdown_timeout).
	// Default 30s.
	ShutdownTimeout time.Duration
	// UpgradeLinger is how long, after a binary upgrade, the old process
	// keeps relaying the connections that could not move to the new one
	// (TLS connections) before it closes them with 1012 at migrate_rate
	// (upgrade_linger). Zero closes them at once. Default 30s.
	UpgradeLinger time.Duration
	// AdminTokenFile holds a bearer token every admin endpoint but
	// /healthz and /readyz requires (admin_token_file); read again on
	// SIGHUP. Default "": no token.
	AdminTokenFile string
	// MetricsListen serves /metrics alone on its own address
	// (metrics_listen), so that a scraper reaches nothing else. Default "":
	// /metrics only on admin_listen.
	MetricsListen string

	TLS         TLS
	UpstreamTLS UpstreamTLS
	Affinity    Affinity
	Ring        Ring
	// Upstreams are the [[upstream]] entries: static backends and DNS
	// names. Default() lists one, 127.0.0.1:9001, so the binary runs
	// without a file on one machine; a file without [[upstream]] has none,
	// because its backends may come from discovery.
	Upstreams []Upstream
	Health    Health
	Discovery Discovery
	WebSocket WebSocket
	Rebalance Rebalance
	Limits    Limits
	Tuning    Tuning
}

// TLS is the [tls] table: the certificate clients see. Cert and Key are
// both set or neither; neither means plain TCP.
type TLS struct {
	Cert string // PEM certificate chain file (cert)
	Key  string // PEM private key file (key)
	// Curves are the key exchanges offered, in order of preference
	// (curves): "X25519MLKEM768", "SecP256r1MLKEM768", "X25519", "P-256",
	// "P-384", "P-521". Default none: Go's own choice, which puts the
	// hybrid post-quantum X25519MLKEM768 first.
	Curves []string
}

// UpstreamTLS is the [upstream_tls] table: how the proxy dials backends.
type UpstreamTLS struct {
	// Enabled dials backends with TLS (enabled). Default false.
	Enabled bool
	// CAFile verifies backends against these PEM roots instead of the
	// system's (ca_file). Default "": system roots.
	CAFile string
	// ServerName is the name verified in the backend's certificate
	// (server_name). Default "": the backend's host.
	ServerName string
	// InsecureSkipVerify accepts any backend certificate
	// (insecure_skip_verify). Default false.
	InsecureSkipVerify bool
}

// Affinity is the [affinity] table: what makes a client sticky.
type Affinity struct {
	// Key is "ip", "cookie" or "header" (key). Default "ip".
	Key string
	// Cookie names the proxy's route cookie when Key is "cookie" (cookie).
	// Default "wsedge_route".
	Cookie string
	// Header is hashed when Key is "header" (header). Default "X-Session-ID".
	Header string
	// TrustedProxies are the networks whose X-Forwarded-For, Forwarded and
	// PROXY protocol headers are believed (trusted_proxies). A bare address
	// in the file becomes a /32 or /128; host bits are cleared. Default none.
	TrustedProxies []netip.Prefix
}

// Ring is the [ring] table: the consistent-hash ring.
type Ring struct {
	// VNodes is the number of virtual nodes per unit of weight (vnodes),
	// 1..10000. Default 160.
	VNodes int
	// LoadFactor enables bounded loads when greater than 1: no backend takes
	// more than LoadFactor times the mean of live connections (load_factor).
	// Default 0: off, so every proxy maps a key to the same backend.
	LoadFactor float64
}

// Upstream is one [[upstream]] entry: a static backend, or the backends a
// DNS name gives.
type Upstream struct {
	// Address is host:port (address); it or SRV is required. Without
	// Resolve the proxy dials it as written: one backend, whatever the
	// name resolves to.
	Address string
	// Weight is the share of the ring, 1..1000 (weight), of every backend
	// of the entry. Default 1. Not with SRV, whose records carry weights.
	Weight int
	// Resolve makes every A and AAAA record of Address's host a backend,
	// looked up again this often and no later than the records' TTL
	// (resolve); at least 100ms. Default 0: off for Address, 5s for SRV.
	Resolve time.Duration
	// SRV names SRV records whose targets are the backends, on the
	// records' ports and with their weights (srv), instead of Address.
	// Default "".
	SRV string
	// Resolver is the DNS server asked for Address or SRV, ip:port
	// (resolver). Default "": the nameservers of /etc/resolv.conf.
	Resolver string
}

// Health is the [health] table: active health checks.
type Health struct {
	// Type is "http" (GET Path, 2xx is healthy), "websocket" (an upgrade on
	// Path and a ping answered by a pong) or "tcp" (connect only) (type).
	// Default "http".
	Type string
	// Path is requested by the http and websocket checks (path). Default
	// "/healthz".
	Path string
	// Interval is the time between checks (interval). Default 2s.
	Interval time.Duration
	// Timeout bounds one check and is shorter than Interval (timeout).
	// Default 1s.
	Timeout time.Duration
	// Rise is the number of consecutive passes to enter the ring (rise).
	// Default 2.
	Rise int
	// Fall is the number of consecutive failures to leave it (fall).
	// Default 3.
	Fall int
}

// Discovery is the [discovery] table: memberlist gossip.
type Discovery struct {
	// Bind is the gossip address (bind). Default "": discovery is off.
	Bind string
	// Name is this node's gossip name (name). Default "": the hostname and
	// the bind port, so several proxies and agents on one host never collide.
	Name string
	// Join lists seed members as host:port (join). Default none.
	Join []string
	// SecretFile holds the gossip encryption key, 16, 24 or 32 random bytes
	// base64-encoded on one line (secret_file). Default "": no encryption.
	SecretFile string
	// Profile sets gossip timing (profile): "lan" for one data centre, "wan"
	// across regions, "local" for nodes that all run on one host over
	// loopback (memberlist's LAN, WAN and local defaults). Default "lan".
	Profile string
	// AllowPlaintextGossip lets gossip bound to a non-loopback address run
	// without SecretFile (allow_plaintext_gossip): anyone who reaches the
	// port could then put backends in the ring. Default false.
	AllowPlaintextGossip bool
	// AllowedBackends, when set, are the only networks a gossiped backend
	// address may be in (allowed_backends). Default none: any address.
	AllowedBackends []netip.Prefix
}

// WebSocket is the [websocket] table: per-connection behaviour.
type WebSocket struct {
	// HandshakeTimeout bounds the upgrade with the client and the backend
	// (handshake_timeout). Default 5s.
	HandshakeTimeout time.Duration
	// PingInterval is how often the proxy pings an idle client
	// (ping_interval). Zero turns pings off. Default 20s.
	PingInterval time.Duration
	// PongTimeout closes a connection whose pong is this late
	// (pong_timeout). Default 10s.
	PongTimeout time.Duration
	// WriteTimeout closes a client that cannot take a write for this long: a
	// slow consumer (write_timeout). Default 10s.
	WriteTimeout time.Duration
	// MaxMessageBytes is the largest message relayed, in bytes
	// (max_message_bytes), at least 125. Default 1048576 (1MiB).
	MaxMessageBytes int64
	// AllowedOrigins lists the Origin values accepted on upgrade, such as
	// "https://example.com" (allowed_origins). Default none: any origin.
	AllowedOrigins []string
	// MaxConnectionAge closes a connection older than this, give or take
	// MaxConnectionAgeJitter, with 1012 so that its client reconnects and
	// clients spread onto new capacity (max_connection_age). Default 0:
	// connections live as long as their peers want.
	MaxConnectionAge time.Duration
	// MaxConnectionAgeJitter spreads each connection's age limit over
	// MaxConnectionAge times 1±MaxConnectionAgeJitter, so clients that
	// connected at once do not reconnect at once
	// (max_connection_age_jitter), 0 to 0.5. Default 0.1.
	MaxConnectionAgeJitter float64
	// IdleTimeout closes a connection with 1001 when no data frame went
	// either way for this long; pings and pongs do not count (idle_timeout).
	// Default 0: off.
	IdleTimeout time.Duration
}

// Rebalance is the [rebalance] table: what happens to live connections when
// the ring changes.
type Rebalance struct {
	// OnRemove is "close" (close with 1012 so clients reconnect elsewhere) or
	// "keep" (leave them until they end) for connections of a backend that
	// left (on_remove). Default "close".
	OnRemove string
	// OnAdd is "keep" or "migrate" (move connections whose key now maps to
	// the new backend) (on_add). Default "keep".
	OnAdd string
	// MigrateRate is the most connections per second closed when migrating,
	// draining or shutting down (migrate_rate). Default 200.
	MigrateRate int
}

// Limits is the [limits] table.
type Limits struct {
	// MaxConnections caps live client connections (max_connections).
	// Default 0: no limit.
	MaxConnections int
	// MaxConnectionsPerIP caps them per client IP (max_connections_per_ip).
	// Default 0: no limit.
	MaxConnectionsPerIP int
	// MaxHeaderBytes is the largest request head accepted; larger ones get
	// 431 (max_header_bytes). Default 16384 (16KiB).
	MaxHeaderBytes int64
	// ClientMessagesPerSecond is the rate of messages a client may send
	// on one connection, and ClientMessageBurst how many it may send at
	// once above it (client_messages_per_second, client_message_burst). A
	// client over it is first slowed (the proxy stops reading it); one
	// over it for RateLimitGrace is closed with 1008. Default 0: no limit;
	// a zero burst is one second's worth.
	ClientMessagesPerSecond int
	ClientMessageBurst      int
	// ClientBytesPerSecond is the same for message bytes
	// (client_bytes_per_second), its burst one second's worth. Default 0:
	// no limit.
	ClientBytesPerSecond int64
	// RateLimitGrace is how long a client may stay over its limits,
	// slowed, before it is closed (rate_limit_grace). Default 10s.
	RateLimitGrace time.Duration
	// HandshakesPerSecondPerIP is the rate of new WebSockets one client
	// address may open, HandshakeBurstPerIP how many at once above it
	// (handshakes_per_second_per_ip, handshake_burst_per_ip); beyond, 429
	// with Retry-After. Default 0: no limit; a zero burst is one second's
	// worth.
	HandshakesPerSecondPerIP int
	HandshakeBurstPerIP      int
}

// Tuning is the [tuning] table: how the proxy uses the machine.
type Tuning struct {
	// Loops is the number of event loops (loops), 0..1024. Default 0: one
	// per processor the Go runtime may use (GOMAXPROCS, which follows a
	// container's CPU limit).
	Loops int
	// IOUring is "auto" (batch the loops' reads and writes through
	// io_uring where the kernel has it) or "off" (a system call per read
	// and write) (io_uring). Default "auto".
	IOUring string
}

// Default returns the built-in configuration, the values SPEC.md documents.
// Its single upstream, 127.0.0.1:9001, makes `wsedge serve` without a file
// useful on one machine. Each call returns a new File.
func Default() *File {
	return &File{
		Listen:          "127.0.0.1:8080",
		AdminListen:     "127.0.0.1:9090",
		LogLevel:        "info",
		LogFormat:       "json",
		ShutdownTimeout: 30 * time.Second,
		UpgradeLinger:   30 * time.Second,
		Affinity: Affinity{
			Key:    "ip",
			Cookie: "wsedge_route",
			Header: "X-Session-ID",
		},
		Ring:      Ring{VNodes: 160},
		Upstreams: []Upstream{{Address: "127.0.0.1:9001", Weight: 1}},
		Health: Health{
			Type:     "http",
			Path:     "/healthz",
			Interval: 2 * time.Second,
			Timeout:  time.Second,
			Rise:     2,
			Fall:     3,
		},
		Discovery: Discovery{Profile: "lan"},
		WebSocket: WebSocket{
			HandshakeTimeout: 5 * time.Second,
			PingInterval:     20 * time.Second,
			PongTimeout:      10 * time.Second,
			WriteTimeout:     10 * time.Second,
			MaxMessageBytes:  1 << 20,

			MaxConnectionAgeJitter: 0.1,
		},
		Rebalance: Rebalance{
			OnRemove:    "close",
			OnAdd:       "keep",
			MigrateRate: 200,
		},
		Limits: Limits{MaxHeaderBytes: 16 << 10, RateLimitGrace: 10 * time.Second},
		Tuning: Tuning{IOUring: "auto"},
	}
}
