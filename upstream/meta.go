package upstream

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Roles a gossip node plays.
const (
	roleProxy   = "proxy"   // a wsedge proxy; advertises no backend
	roleBackend = "backend" // a backend's agent; advertises Addr
)

// nodeState is what a Set knows of the gossip node advertising a backend.
// Alive and draining travel in the node's metadata; dead is what this node's
// failure detector concluded.
type nodeState string

const (
	nodeAlive    nodeState = "alive"
	nodeDraining nodeState = "draining"
	nodeDead     nodeState = "dead"
)

// metaVersion is the format of nodeMeta on the wire. Fields may be added
// without changing it, since decoders ignore fields they do not know;
// anything an older decoder would misread needs a new version, which older
// nodes then ignore rather than misroute.
const metaVersion = 1

// maxWeight is the largest weight a backend may advertise; a larger one is
// lowered to it. The ring holds vnodes points per unit of weight on every
// proxy, so a weight taken as advertised would let one node make every
// proxy allocate without bound. It is the config's bound on [[upstream]]
// weights and affinity.MaxWeight.
const maxWeight = 1000

// maxHostLen is the longest DNS name (RFC 1035 section 2.3.4), written
// without the trailing dot.
const maxHostLen = 253

// maxMetaSize is the longest metadata a node of this version sends: a
// draining backend with the longest host name, port and weight. Anything
// longer was not written by one, and is refused before it is parsed. It is
// well under memberlist's MetaMaxSize (512). A field added to nodeMeta must
// grow it: TestMaxMetaSize checks that the longest metadata fits exactly.
const maxMetaSize = len(`{"v":1,"role":"backend","addr":":65535","weight":1000,"state":"draining"}`) + maxHostLen

// nodeMeta is the metadata a node gossips about itself: small JSON,
// readable in memberlist's own debug output.
type nodeMeta struct {
	Version int       `json:"v"`
	Role    string    `json:"role"`
	Addr    string    `json:"addr,omitempty"`   // backend host:port; role backend only
	Weight  int       `json:"weight,omitempty"` // share of the ring, 1..maxWeight; role backend only
	State   nodeState `json:"state"`            // nodeAlive or nodeDraining
}

// Why metadata is refused. Each but errMetaVersion is a reason of its own in
// GossipRejections; errMetaVersion and malformed JSON are "unreadable".
var (
	// errMetaVersion marks metadata from a newer (or broken) node whose
	// format this one does not read.
	errMetaVersion    = errors.New("unknown metadata version")
	errMetaSize       = errors.New("metadata too large")
	errMetaAddress    = errors.New("bad backend address")
	errMetaNotAllowed = errors.New("backend address not allowed")
	errMetaWeight     = errors.New("bad weight")
)

// encode returns the wire form of m.
func (m nodeMeta) encode() ([]byte, error) {
	m.Version = metaVersion
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(b) > maxMetaSize {
		return nil, fmt.Errorf("node metadata is %d bytes, over %d: %w", len(b), maxMetaSize, errMetaSize)
	}
	return b, nil
}

// decodeMeta reads metadata another node gossiped, and checks everything a
// Set relies on before any of it reaches the ring: its size, version, role
// and state; for a backend, an address checkAddr accepts and, when allowed
// is not empty, an IP address inside one of those networks (a DNS name is
// refused then: it cannot be checked against networks without resolving
// it, and what it resolves to may change after the check). A weight of 0
// reads as 1, and one above maxWeight as maxWeight, which capped reports;
// a negative weight is refused.
func decodeMeta(b []byte, allowed []netip.Prefix) (m nodeMeta, capped bool, err error) {
	if len(b) > maxMetaSize {
		return m, false, fmt.Errorf("node metadata: %d bytes, over %d: %w", len(b), maxMetaSize, errMetaSize)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, false, fmt.Errorf("node metadata: %w", err)
	}
	if m.Version != metaVersion {
		return m, false, fmt.Errorf("node metadata version %d: %w", m.Version, errMetaVersion)
	}
	switch m.State {
	case nodeAlive, nodeDraining:
	default:
		return m, false, fmt.Errorf("node metadata: unknown state %q", m.State)
	}
	switch m.Role {
	case roleProxy:
		m.Addr, m.Weight = "", 0 // a proxy advertises no backend
		return m, false, nil
	case roleBackend:
	default:
		return m, false, fmt.Errorf("node metadata: unknown role %q", m.Role)
	}
	if err := checkAddr(m.Addr); err != nil {
		return m, false, fmt.Errorf("node metadata: %w", err)
	}
	if len(allowed) > 0 {
		if err := checkAllowed(m.Addr, allowed); err != nil {
			return m, false, fmt.Errorf("node metadata: %w", err)
		}
	}
	switch {
	case m.Weight < 0:
		return m, false, fmt.Errorf("node metadata: %w %d", errMetaWeight, m.Weight)
	case m.Weight == 0:
		m.Weight = 1
	case m.Weight > maxWeight:
		m.Weight, capped = maxWeight, true
	}
	return m, capped, nil
}

// checkAddr checks a backend address as gossip carries it: host:port in the
// one spelling net.JoinHostPort gives, a port of 1..65535 without sign or
// leading zeros, and a host that is a DNS name or an IP address a proxy
// can dial (IPv6 in brackets, in its canonical form, without a zone: a zone
// names an interface of the advertising host). One spelling per backend
// matters because the address is its identity on the ring: "10.0.0.7:080"
// and "10.0.0.7:80" would be two backends. The address also reaches logs,
// /debug/ring and the dialer, so no space or control byte passes.
func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || net.JoinHostPort(host, port) != addr {
		return fmt.Errorf("%w %q: want host:port", errMetaAddress, addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return fmt.Errorf("%w %q: want a port of 1..65535", errMetaAddress, addr)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" || ip.String() != host || ip.IsUnspecified() || ip.IsMulticast() {
			return fmt.Errorf("%w %q: want an IP address a proxy can dial, as %s writes it", errMetaAddress, addr, ip.WithZone(""))
		}
		return nil
	}
	if !isDNSName(host) {
		return fmt.Errorf("%w %q: want an IP address or a DNS name", errMetaAddress, addr)
	}
	return nil
}

// isDNSName reports whether s is a DNS name (RFC 1123) without a trailing
// dot, allowing the underscores that container and service names often
// carry. A name whose last label is all digits was meant as an IPv4
// address and is refused, so "10.0.0.300" and "127.1" are not looked up.
func isDNSName(s string) bool {
	if s == "" || len(s) > maxHostLen {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := range len(l) {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return strings.Trim(labels[len(labels)-1], "0123456789") != ""
}

// checkAllowed reports an error unless addr, which checkAddr accepted, is
// an IP address inside one of allowed. An IPv4 address written as IPv6
// (::ffff:10.0.0.7) is checked as the IPv4 address it is.
func checkAllowed(addr string, allowed []netip.Prefix) error {
	host, _, _ := net.SplitHostPort(addr)
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%w: %q is a name, and only IP addresses can be checked against the allowed networks", errMetaNotAllowed, addr)
	}
	ip = ip.Unmap()
	for _, p := range allowed {
		if p.Contains(ip) {
			return nil
		}
	}
	return fmt.Errorf("%w: %q is outside %v", errMetaNotAllowed, addr, allowed)
}
