package bench

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
)

// Target is a WebSocket URL that load is sent to.
type Target struct {
	URL  string // ws:// or wss://host:port/path as given
	Addr string // host:port that is dialed
	// TLS is set for wss:// targets: the connection speaks TLS (after any
	// PROXY protocol header) before the upgrade.
	TLS bool

	u *url.URL // parsed once, for the handshake
}

// ParseTarget parses a ws:// or wss:// URL whose host is a loopback
// address or "localhost".
func ParseTarget(s string) (Target, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Target{}, fmt.Errorf("target: %w", err)
	}
	var port string
	switch u.Scheme {
	case "ws":
		port = "80"
	case "wss":
		port = "443"
	default:
		return Target{}, fmt.Errorf("target %q: scheme must be ws or wss", s)
	}
	host := u.Hostname()
	if u.Port() != "" {
		port = u.Port()
	}
	if !strings.EqualFold(host, "localhost") {
		a, err := netip.ParseAddr(host)
		if err != nil {
			return Target{}, fmt.Errorf("target %q: host must be an IP address or localhost", s)
		}
		if !a.IsLoopback() {
			return Target{}, fmt.Errorf("target %q: %w", s, ErrNotLoopback)
		}
	}
	if u.Path == "" {
		u.Path = "/"
	}
	return Target{URL: u.String(), Addr: net.JoinHostPort(host, port), TLS: u.Scheme == "wss", u: u}, nil
}

// Targets is a flag.Value collecting --target flags: repeated, or
// comma-separated. Connection i goes to target i mod len.
type Targets []Target

// Set adds one or more comma-separated targets.
func (t *Targets) Set(s string) error {
	for item := range strings.SplitSeq(s, ",") {
		tg, err := ParseTarget(strings.TrimSpace(item))
		if err != nil {
			return err
		}
		*t = append(*t, tg)
	}
	return nil
}

func (t *Targets) String() string {
	if t == nil {
		return ""
	}
	s := make([]string, len(*t))
	for i, tg := range *t {
		s[i] = tg.URL
	}
	return strings.Join(s, ",")
}

// at returns the target of connection i.
func (t Targets) at(i int) Target { return t[i%len(t)] }
