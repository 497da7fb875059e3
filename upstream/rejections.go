package upstream

import (
	"errors"
	"sync/atomic"
)

// rejections counts the gossiped metadata a Set refused, or accepted with
// its weight lowered, by reason. Its zero value is ready; it is safe for
// concurrent use.
type rejections struct {
	unreadable   atomic.Uint64 // not JSON, or an unknown version, role or state
	oversized    atomic.Uint64 // longer than any node of ours sends
	badAddress   atomic.Uint64 // not an address checkAddr accepts
	notAllowed   atomic.Uint64 // outside AllowedBackends, or a name while it is set
	badWeight    atomic.Uint64 // negative
	weightCapped atomic.Uint64 // above maxWeight: accepted at maxWeight
}

// refuse counts err, an error of decodeMeta, under its reason.
func (r *rejections) refuse(err error) {
	switch {
	case errors.Is(err, errMetaSize):
		r.oversized.Add(1)
	case errors.Is(err, errMetaAddress):
		r.badAddress.Add(1)
	case errors.Is(err, errMetaNotAllowed):
		r.notAllowed.Add(1)
	case errors.Is(err, errMetaWeight):
		r.badWeight.Add(1)
	default:
		r.unreadable.Add(1)
	}
}

// GossipRejections returns how often, since New, gossiped metadata was
// refused or corrected, by reason:
//
//   - "unreadable": not JSON, or an unknown version, role or state (a
//     newer node's format counts here);
//   - "oversized": longer than the longest metadata a node of this
//     version sends, refused unread;
//   - "bad_address": a backend address that is not host:port with a port of
//     1..65535 and a host that is an IP address or a DNS name;
//   - "address_not_allowed": outside DiscoveryConfig.AllowedBackends, or a
//     DNS name while that is set;
//   - "bad_weight": a negative weight;
//   - "weight_capped": a weight above 1000, accepted as 1000.
//
// A node that is refused is not a member: if it advertised a backend
// before, that backend is forgotten. Each event memberlist reports of a
// node counts once: its joining, and each change of its metadata. Every
// reason is in the map, counted or not. Safe for concurrent use.
func (s *Set) GossipRejections() map[string]uint64 {
	r := &s.refused
	return map[string]uint64{
		"unreadable":          r.unreadable.Load(),
		"oversized":           r.oversized.Load(),
		"bad_address":         r.badAddress.Load(),
		"address_not_allowed": r.notAllowed.Load(),
		"bad_weight":          r.badWeight.Load(),
		"weight_capped":       r.weightCapped.Load(),
	}
}
