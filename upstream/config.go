package upstream

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"
)

// Health check types, the values of HealthConfig.Type.
const (
	CheckHTTP      = "http"      // GET Path; any 2xx passes
	CheckWebSocket = "websocket" // upgrade on Path, a ping answered by a pong, a clean close
	CheckTCP       = "tcp"       // connect (and, with TLS, complete the handshake)
)

// Gossip timing profiles, the values of DiscoveryConfig.Profile. Each is one
// of memberlist's own default configurations, whose comments explain every
// number, with updates retransmitted more (see retransmitMult).
const (
	// ProfileLAN suits one data centre: probes every second, a failed
	// node is declared dead within a few seconds. memberlist.DefaultLANConfig.
	ProfileLAN = "lan"
	// ProfileWAN tolerates the latency and loss between regions: probes
	// every 5s. memberlist.DefaultWANConfig.
	ProfileWAN = "wan"
	// ProfileLocal is for nodes that all run on one host over loopback:
	// shorter timeouts, faster gossip, probes every 500ms, full state
	// exchanged every 5s. memberlist.DefaultLocalConfig.
	ProfileLocal = "local"
)

// Config is what a Set built by New needs. Zero values of its fields mean
// the defaults of SPEC.md. A Config is copied by New and Update; changing it
// afterwards changes nothing.
type Config struct {
	// Static lists the [[upstream]] backends. Weights below 1 count as 1
	// and above 1000 as 1000; an address listed twice counts once.
	Static []Backend
	// DNS lists the [[upstream]] entries whose backends come from DNS. A
	// name listed twice, even with other settings, counts once: the first.
	// Only a Set from New, while Run runs, looks them up.
	DNS       []DNSName
	Health    HealthConfig
	Discovery DiscoveryConfig
	// UpstreamTLS, when set, makes health checks speak TLS to backends
	// (https, wss, TCP with a TLS handshake), as the proxy does when it
	// dials them.
	UpstreamTLS *tls.Config
}

// HealthConfig is how a Set checks its backends.
type HealthConfig struct {
	// Type is CheckHTTP, CheckWebSocket or CheckTCP. Zero means CheckHTTP.
	Type string
	// Path is requested by the http and websocket checks. Zero means
	// "/healthz".
	Path string
	// Interval is the time between two checks of one backend; each wait
	// is shortened or lengthened by up to a tenth at random, so that
	// checks of many backends spread out. Zero means 2s.
	Interval time.Duration
	// Timeout bounds one check. Zero means 1s; more than Interval means
	// Interval.
	Timeout time.Duration
	// Rise is how many checks in a row must pass before a backend enters
	// the ring. Zero means 2.
	Rise int
	// Fall is how many checks in a row must fail, or how many dials or
	// upgrades reported by the proxy, before a backend leaves the ring.
	// Zero means 3.
	Fall int
}

// DiscoveryConfig is how a Set finds backends by gossip. Discovery is off
// when Bind is empty.
type DiscoveryConfig struct {
	// Bind is the host:port memberlist listens on, TCP and UDP. An empty
	// host means every address; port 0 means a free port (for tests: no
	// one can join a node whose port they do not know).
	Bind string
	// Name is this node's name in the cluster, unique within it. Zero
	// means the hostname and the bind port ("web-3:7946"), or the hostname
	// and a random suffix when the port is 0.
	Name string
	// Join lists host:port seeds. Joining is retried until one answers,
	// and again whenever this node finds itself alone.
	Join []string
	// SecretFile holds the key that encrypts and authenticates gossip:
	// 16, 24 or 32 random bytes, base64-encoded (standard alphabet,
	// padding optional), on one line. Create one with
	// `head -c 32 /dev/urandom | base64`. Every node of a cluster needs the
	// same key; a node with another key is not admitted. Zero means no
	// encryption, which New and NewAgent accept only on a loopback Bind or
	// with AllowPlaintext.
	SecretFile string
	// Profile sets gossip timing: ProfileLAN, ProfileWAN or ProfileLocal.
	// Zero means ProfileLAN.
	Profile string
	// AllowPlaintext lets a node whose Bind is reachable beyond this host
	// (any address but a loopback one; an empty host is every address)
	// gossip without SecretFile. Without a key, anyone who reaches the port
	// can join and advertise backends, so this must be asked for on
	// purpose. Zero means refuse.
	AllowPlaintext bool
	// AllowedBackends, when set, are the only networks a backend advertised
	// by gossip may be in; a node advertising an address outside them is
	// ignored. A backend advertised by DNS name is then ignored too: a name
	// cannot be checked against networks without resolving it, and what it
	// resolves to may change after the check. Zero means any address.
	AllowedBackends []netip.Prefix
}

// Defaults of HealthConfig, as SPEC.md has them.
const (
	defaultPath     = "/healthz"
	defaultInterval = 2 * time.Second
	defaultTimeout  = time.Second
	defaultRise     = 2
	defaultFall     = 3
)

// withDefaults fills in zero values and checks the rest.
func (h HealthConfig) withDefaults() (HealthConfig, error) {
	switch h.Type {
	case "":
		h.Type = CheckHTTP
	case CheckHTTP, CheckWebSocket, CheckTCP:
	default:
		return h, fmt.Errorf("upstream: health type %q: want %q, %q or %q", h.Type, CheckHTTP, CheckWebSocket, CheckTCP)
	}
	if h.Path == "" {
		h.Path = defaultPath
	}
	if h.Path[0] != '/' {
		return h, fmt.Errorf("upstream: health path %q: must start with \"/\"", h.Path)
	}
	if h.Interval <= 0 {
		h.Interval = defaultInterval
	}
	if h.Timeout <= 0 {
		h.Timeout = defaultTimeout
	}
	h.Timeout = min(h.Timeout, h.Interval)
	if h.Rise <= 0 {
		h.Rise = defaultRise
	}
	if h.Fall <= 0 {
		h.Fall = defaultFall
	}
	return h, nil
}

// withDefaults fills in zero values and checks the rest.
func (d DiscoveryConfig) withDefaults() (DiscoveryConfig, error) {
	switch d.Profile {
	case "":
		d.Profile = ProfileLAN
	case ProfileLAN, ProfileWAN, ProfileLocal:
	default:
		return d, fmt.Errorf("upstream: gossip profile %q: want %q, %q or %q", d.Profile, ProfileLAN, ProfileWAN, ProfileLocal)
	}
	if d.Bind == "" {
		if len(d.Join) > 0 {
			return d, fmt.Errorf("upstream: gossip join %v set, but no bind address", d.Join)
		}
		return d, nil
	}
	if _, _, err := splitBind(d.Bind); err != nil {
		return d, err
	}
	d.Join = slices.Clone(d.Join)
	d.AllowedBackends = slices.Clone(d.AllowedBackends)
	for i, p := range d.AllowedBackends {
		if !p.IsValid() {
			return d, fmt.Errorf("upstream: gossip allowed backends: invalid network %v", p)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 { // addresses are checked unmapped
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		d.AllowedBackends[i] = p.Masked()
	}
	return d, nil
}

// on reports whether discovery is configured.
func (d DiscoveryConfig) on() bool { return d.Bind != "" }

// equal reports whether d and o would run the same gossip node.
func (d DiscoveryConfig) equal(o DiscoveryConfig) bool {
	return d.Bind == o.Bind && d.Name == o.Name && slices.Equal(d.Join, o.Join) &&
		d.SecretFile == o.SecretFile && d.Profile == o.Profile &&
		d.AllowPlaintext == o.AllowPlaintext && slices.Equal(d.AllowedBackends, o.AllowedBackends)
}

// splitBind splits a bind address into the host memberlist binds (every
// address when empty) and its port.
func splitBind(bind string) (host string, port int, err error) {
	host, p, err := net.SplitHostPort(bind)
	if err != nil {
		return "", 0, fmt.Errorf("upstream: gossip bind %q: %w", bind, err)
	}
	port, err = strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("upstream: gossip bind %q: bad port", bind)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}
