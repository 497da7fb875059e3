package upstream

import (
	"time"

	"go.uber.org/zap"
)

// deadRetention is how long a backend whose node died stays listed in
// Members (as StateDead) after it left the ring: long enough for the proxy
// and operators to see why it went, short enough that a fleet replacing
// hosts does not accumulate ghosts.
const deadRetention = time.Minute

// peer is what a Set knows of one gossip node that advertises a backend.
// Peers live in Set.peers and are guarded by Set.mu.
type peer struct {
	meta   nodeMeta
	dead   bool      // memberlist declared it gone while it advertised itself alive
	deadAt time.Time // when this proxy learned it
}

// applyGossip folds node events into the members and publishes the result.
//
// memberlist reports a node that left and one that died alike (v0.7 leaves
// Node.State unset in NotifyLeave), so the node's own metadata tells them
// apart: an agent advertises draining before it leaves, so a node that goes
// away draining left, and one that goes away alive died.
//
// Metadata that decodeMeta refuses never reaches the members: whatever its
// node advertised before is forgotten. Refusals and capped weights are
// counted and logged when a node joins or changes its metadata, not again
// when it goes away.
func (s *Set) applyGossip(events []nodeEvent, now time.Time) {
	type note struct {
		ev  nodeEvent
		err error // nil: accepted with its weight capped
	}
	var notes []note
	s.mu.Lock()
	allowed := s.cfg.Discovery.AllowedBackends
	for _, ev := range events {
		meta, capped, err := decodeMeta(ev.meta, allowed)
		switch {
		case ev.gone:
		case err != nil:
			s.refused.refuse(err)
			notes = append(notes, note{ev, err})
		case capped:
			s.refused.weightCapped.Add(1)
			notes = append(notes, note{ev, nil})
		}
		if err != nil || meta.Role != roleBackend {
			delete(s.peers, ev.name)
			continue
		}
		_, known := s.peers[ev.name]
		switch {
		case !ev.gone:
			s.peers[ev.name] = &peer{meta: meta}
		case meta.State == nodeDraining || !known:
			delete(s.peers, ev.name)
		default:
			s.peers[ev.name] = &peer{meta: meta, dead: true, deadAt: now}
		}
	}
	s.syncPeersLocked()
	old, cur := s.commitLocked()
	s.mu.Unlock()
	for _, n := range notes {
		if n.err != nil {
			s.log.Warn("gossip node ignored: metadata refused", zap.String("node", n.ev.name), zap.Error(n.err))
			continue
		}
		// decodeMeta accepted the metadata, so it is short and printable.
		s.log.Warn("gossip node weight capped", zap.String("node", n.ev.name), zap.Int("max_weight", maxWeight),
			zap.ByteString("meta", n.ev.meta))
	}
	s.announce(old, cur)
}

// pruneDead forgets nodes dead for longer than deadRetention.
func (s *Set) pruneDead(now time.Time) {
	s.mu.Lock()
	pruned := false
	for name, p := range s.peers {
		if p.dead && now.Sub(p.deadAt) >= deadRetention {
			delete(s.peers, name)
			pruned = true
		}
	}
	if !pruned {
		s.mu.Unlock()
		return
	}
	s.syncPeersLocked()
	old, cur := s.commitLocked()
	s.mu.Unlock()
	s.announce(old, cur)
}

// syncPeersLocked makes the members agree with the peers. When several
// nodes advertise one address, a live one wins over a dead one, then the
// lowest name, so that every proxy picks the same. s.mu must be held.
func (s *Set) syncPeersLocked() {
	owner := make(map[string]string) // backend address → node name
	for name, p := range s.peers {
		cur, ok := owner[p.meta.Addr]
		if !ok {
			owner[p.meta.Addr] = name
			continue
		}
		q := s.peers[cur]
		if p.dead != q.dead && !p.dead || p.dead == q.dead && name < cur {
			owner[p.meta.Addr] = name
		}
	}
	for addr, m := range s.members {
		if m.node == "" || owner[addr] != "" {
			continue
		}
		m.node, m.nodeWeight, m.nodeState = "", 0, ""
		if !m.static && m.dnsWeight == 0 {
			delete(s.members, addr)
		}
	}
	for addr, name := range owner {
		p := s.peers[name]
		m := s.members[addr]
		if m == nil {
			m = &member{addr: addr, health: rising()}
			s.members[addr] = m
		}
		state := p.meta.State
		if p.dead {
			state = nodeDead
		}
		if state == nodeDead && m.nodeState != nodeDead && !m.static {
			// Should the node come back, its backend earns its place
			// again.
			m.health = rising()
		}
		m.node, m.nodeWeight, m.nodeState = name, p.meta.Weight, state
	}
}
