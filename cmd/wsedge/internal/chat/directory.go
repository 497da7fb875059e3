package chat

import (
	"cmp"
	"slices"
	"time"
)

// directory is the room's membership as one server knows it: the last
// presence of every server heard from, each valid until it expires. It is
// not safe for concurrent use; its room guards it.
type directory struct {
	servers map[string]heard
}

type heard struct {
	p       presence
	expires time.Time
}

// update records p, valid for ttl from now, and reports whether the
// membership changed.
func (d *directory) update(p presence, now time.Time, ttl time.Duration) bool {
	if d.servers == nil {
		d.servers = make(map[string]heard)
	}
	old, ok := d.servers[p.Backend]
	d.servers[p.Backend] = heard{p: p, expires: now.Add(ttl)}
	return !ok || old.p.Count != p.Count || !slices.Equal(old.p.Members, p.Members)
}

// expire forgets servers not heard from in time, and reports whether any
// was forgotten with members.
func (d *directory) expire(now time.Time) bool {
	changed := false
	for name, h := range d.servers {
		if now.After(h.expires) {
			delete(d.servers, name)
			changed = changed || h.p.Count > 0
		}
	}
	return changed
}

// snapshot is the membership as clients see it. A client that moved is
// listed by two servers until the one it left expires: it is counted once,
// on the server it joined last.
func (d *directory) snapshot() members {
	m := members{Type: "members", Backends: make(map[string]int), Members: []Member{}}
	byID := make(map[string]Member)
	dups := 0
	for name, h := range d.servers {
		m.Backends[name] = h.p.Count
		m.Count += h.p.Count
		for _, mb := range h.p.Members {
			if prev, ok := byID[mb.ID]; ok {
				dups++
				if prev.Since > mb.Since {
					mb = prev
				}
				// The stale entry's server keeps its count: it may
				// still hold the client, as far as this one knows.
			}
			byID[mb.ID] = mb
		}
	}
	m.Count -= dups
	for _, mb := range byID {
		m.Members = append(m.Members, mb)
	}
	slices.SortFunc(m.Members, func(a, b Member) int {
		return cmp.Or(cmp.Compare(a.Since, b.Since), cmp.Compare(a.ID, b.ID))
	})
	if len(m.Members) > maxListed {
		m.Members = m.Members[:maxListed]
	}
	return m
}
