package upstream

// member is the Set's record of one known backend: where it comes from and
// what health and gossip say of it. Members live in Set.members and are
// guarded by Set.mu.
type member struct {
	addr         string
	static       bool // listed in the config
	staticWeight int
	// dnsWeight is the weight a DNS name of the config gives the address;
	// 0 when none does.
	dnsWeight int

	// node is the gossip node advertising this address, "" when none does;
	// nodeWeight and nodeState are what its metadata says.
	node       string
	nodeWeight int
	nodeState  nodeState

	health health

	// drained: an operator took the backend out of the ring (POST
	// /debug/drain) until they put it back (POST /debug/undrain).
	drained bool
}

// view is the member as a Snapshot shows it. Gossip's word on draining and
// death overrides health: a backend that is leaving or gone is out of the
// ring whatever its last checks said.
func (m *member) view() Member {
	v := Member{Addr: m.addr, State: m.health.state(), Node: m.node, LastError: m.health.lastErr}
	if m.node != "" {
		switch m.nodeState {
		case nodeDraining:
			v.State = StateDraining
		case nodeDead:
			v.State = StateDead
		}
	}
	if m.drained {
		v.State = StateDraining
	}
	switch {
	case m.static:
		v.Source, v.Weight = SourceStatic, m.staticWeight
	case m.dnsWeight > 0:
		v.Source, v.Weight = SourceDNS, m.dnsWeight
	default:
		v.Source, v.Weight = SourceGossip, m.nodeWeight
	}
	v.Weight = max(v.Weight, 1)
	return v
}

// probed reports whether active checks should run against the member: a
// dead node's backend is not checked until the node comes back.
func (m *member) probed() bool {
	return m.node == "" || m.nodeState != nodeDead
}

// setStaticLocked makes backends the static members. New addresses start
// with the health fresh returns; addresses that stay keep theirs; static
// members that neither a DNS name nor a gossip node gives go away. s.mu
// must be held.
func (s *Set) setStaticLocked(backends []Backend, fresh func() health) {
	listed := make(map[string]bool, len(backends))
	for _, b := range normalize(backends) {
		listed[b.Addr] = true
		m := s.members[b.Addr]
		if m == nil {
			m = &member{addr: b.Addr, health: fresh()}
			s.members[b.Addr] = m
		}
		m.static, m.staticWeight = true, b.Weight
	}
	for addr, m := range s.members {
		if !m.static || listed[addr] {
			continue
		}
		m.static = false
		if m.node == "" && m.dnsWeight == 0 {
			delete(s.members, addr)
		}
	}
}

// rising is the health of a backend that must pass rise checks before it
// takes traffic.
func rising() health { return health{} }
