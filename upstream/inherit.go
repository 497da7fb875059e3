package upstream

import (
	"context"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// A binary upgrade replaces the proxy's process with another on the same
// host. For gossip the new process must be the same node: the rest of the
// cluster should see nothing happen, no member leave or join. So the old
// process bequeaths what it knows (Bequest), stops gossiping without
// leaving (ReleaseGossip), and the new one, which inherited it before Run,
// takes over the node's name and port and rejoins those it knew. Its ring
// holds the gossiped backends from the start, in the health the old
// process had them, so no client meets an empty ring meanwhile.

// Inheritance is what an old process hands the new one of its Set.
type Inheritance struct {
	// Node and Bind are the gossip node's name and the address it is
	// bound to ("" when gossip is off).
	Node, Bind string
	// Join holds the gossip addresses of the other members alive.
	Join []string
	// Peers are the gossip nodes advertising backends.
	Peers []InheritedPeer
}

// InheritedPeer is a gossip node as the old process knew it.
type InheritedPeer struct {
	Name string
	Meta []byte // as the node advertises it; checked again on arrival
	Dead bool   // memberlist declared it gone
	Up   bool   // its backend was in the old process's ring
}

// inheritBindWait bounds how long a new process waits for the old one to
// free the gossip port.
const inheritBindWait = 2 * time.Minute

// Bequest returns what the Set knows that a new process taking over from
// this one needs.
func (s *Set) Bequest() Inheritance {
	var in Inheritance
	if g := s.gossip.Load(); g != nil {
		in.Node, in.Bind = g.name, g.addr()
		for _, n := range g.ml.Members() {
			if n.Name != g.name {
				in.Join = append(in.Join, net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))))
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, p := range s.peers {
		meta, err := p.meta.encode()
		if err != nil {
			continue
		}
		m := s.members[p.meta.Addr]
		in.Peers = append(in.Peers, InheritedPeer{Name: name, Meta: meta, Dead: p.dead, Up: m != nil && m.health.up})
	}
	return in
}

// ReleaseGossip stops this process's gossip node without leaving the
// cluster: the node lives on in the process that inherited it. The Set
// keeps the members it knew.
func (s *Set) ReleaseGossip() {
	if g := s.gossip.Load(); g != nil {
		g.release()
	}
}

// Inherit takes over what an old process bequeathed; call it before Run.
// The peers are checked as gossip's are, with this process's config.
func (s *Set) Inherit(in Inheritance) {
	s.mu.Lock()
	s.inherited = &in
	allowed := s.cfg.Discovery.AllowedBackends
	now := time.Now()
	up := make(map[string]bool)
	for _, ip := range in.Peers {
		meta, _, err := decodeMeta(ip.Meta, allowed)
		if err != nil || meta.Role != roleBackend {
			continue
		}
		s.peers[ip.Name] = &peer{meta: meta, dead: ip.Dead, deadAt: now}
		up[meta.Addr] = ip.Up && !ip.Dead
	}
	s.syncPeersLocked()
	for addr, m := range s.members {
		if up[addr] && !m.static {
			m.health = trusted()
		}
	}
	old, cur := s.commitLocked()
	s.mu.Unlock()
	s.announce(old, cur)
}

// startGossipInherited starts the gossip node as startGossip does; with an
// inheritance, as the node the old process was, once it frees the port.
func (s *Set) startGossipInherited(ctx context.Context, d DiscoveryConfig) (*gossipNode, error) {
	s.mu.Lock()
	in := s.inherited
	s.mu.Unlock()
	if in == nil || in.Node == "" {
		return startGossip(d, s.secret, nodeMeta{Role: roleProxy, State: nodeAlive}, s.log, s.tune)
	}
	d.Name = in.Node
	if host, port, err := splitBind(d.Bind); err == nil && port == 0 {
		// The old node's port, which the cluster knows it by.
		if _, p, err := net.SplitHostPort(in.Bind); err == nil {
			d.Bind = net.JoinHostPort(host, p)
		}
	}
	d.Join = append(d.Join, in.Join...)
	deadline := time.Now().Add(inheritBindWait)
	for {
		g, err := startGossip(d, s.secret, nodeMeta{Role: roleProxy, State: nodeAlive}, s.log, s.tune)
		if err == nil || !strings.Contains(err.Error(), syscall.EADDRINUSE.Error()) || time.Now().After(deadline) {
			if err == nil {
				s.log.Info("gossip node taken over from the old process", zap.String("node", in.Node))
			}
			return g, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
