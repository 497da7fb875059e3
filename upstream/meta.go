package upstream

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"

	"github.com/hashicorp/memberlist"
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

// nodeMeta is the metadata a node gossips about itself: small JSON, well
// under memberlist's 512-byte limit even with a 253-byte host name, and
// readable in memberlist's own debug output.
type nodeMeta struct {
	Version int       `json:"v"`
	Role    string    `json:"role"`
	Addr    string    `json:"addr,omitempty"`   // backend host:port; role backend only
	Weight  int       `json:"weight,omitempty"` // share of the ring; role backend only
	State   nodeState `json:"state"`            // nodeAlive or nodeDraining
}

// errMetaVersion marks metadata from a newer (or broken) node whose format
// this one does not read.
var errMetaVersion = errors.New("unknown metadata version")

// encode returns the wire form of m.
func (m nodeMeta) encode() ([]byte, error) {
	m.Version = metaVersion
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("node metadata is %d bytes, over memberlist's %d", len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

// decodeMeta reads metadata another node gossiped, and checks what a Set
// relies on.
func decodeMeta(b []byte) (nodeMeta, error) {
	var m nodeMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("node metadata: %w", err)
	}
	if m.Version != metaVersion {
		return m, fmt.Errorf("node metadata version %d: %w", m.Version, errMetaVersion)
	}
	switch m.State {
	case nodeAlive, nodeDraining:
	default:
		return m, fmt.Errorf("node metadata: unknown state %q", m.State)
	}
	switch m.Role {
	case roleProxy:
	case roleBackend:
		if _, _, err := net.SplitHostPort(m.Addr); err != nil {
			return m, fmt.Errorf("node metadata: backend address %q: %w", m.Addr, err)
		}
		m.Weight = max(m.Weight, 1)
	default:
		return m, fmt.Errorf("node metadata: unknown role %q", m.Role)
	}
	return m, nil
}
