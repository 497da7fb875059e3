package chat

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
)

// room is one server's share of the chat room: its own clients, the room's
// recent history and membership as heard through the broker. It is safe
// for concurrent use.
type room struct {
	cfg    *Config
	addr   string
	prefix string // this server instance's mark in message ids
	conns  atomic.Uint64

	mu      sync.Mutex // guards the fields below
	clients map[*client]struct{}
	dir     directory
	hist    [][]byte // the last cfg.History chat messages, oldest first
	linkUp  bool
	closed  bool // no client may join: the server is stopping
	// changed: local clients came or went since presence was last
	// published; dirty: the membership changed since clients were last
	// told.
	changed, dirty bool

	// Counters for Stats.
	published, delivered, failed, slow atomic.Int64
}

func newRoom(cfg *Config, addr string) *room {
	return &room{
		cfg: cfg, addr: addr,
		prefix:  strconv.FormatInt(time.Now().UnixNano()%(1<<32), 36),
		clients: make(map[*client]struct{}),
	}
}

// join adds c and queues its greeting, the room's history and membership.
// It reports false when the server is stopping.
func (r *room) join(c *client, from string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.clients[c] = struct{}{}
	r.changed, r.dirty = true, true
	c.enqueue(mustJSON(hello{
		Type: "hello", Backend: r.cfg.Name, Addr: r.addr, Client: from, ID: c.id, Nick: c.nick,
		Broker: r.cfg.Broker.String(), BrokerUp: r.linkUp, PingMS: r.cfg.PingInterval.Milliseconds(),
	}))
	h := history{Type: "history", Messages: make([]json.RawMessage, 0, len(r.hist))}
	for _, b := range r.hist {
		h.Messages = append(h.Messages, b)
	}
	c.enqueue(mustJSON(h))
	r.dir.update(r.presenceLocked(), time.Now(), r.ttl())
	c.enqueue(mustJSON(r.dir.snapshot()))
	return true
}

// leave removes c.
func (r *room) leave(c *client) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.clients[c]; ok {
		delete(r.clients, c)
		r.changed, r.dirty = true, true
	}
}

// say publishes what c said. The client's reader calls it, so that c's
// messages are published one after another, in the order sent.
func (r *room) say(ctx context.Context, c *client, text string) {
	c.seq++
	if text == "" {
		return
	}
	if len(text) > r.cfg.MaxText || !utf8.ValidString(text) {
		c.enqueue(mustJSON(errorMsg{Type: "error", Seq: c.seq,
			Text: fmt.Sprintf("message %d not sent: longer than %d bytes", c.seq, r.cfg.MaxText)}))
		return
	}
	msg := mustJSON(Chat{
		Type: "chat", ID: fmt.Sprintf("%s.%s.%d", r.prefix, c.name, c.seq),
		Client: c.id, Nick: c.nick, Backend: r.cfg.Name, Seq: c.seq, Text: text, Time: time.Now().UnixMilli(),
	})
	ctx, cancel := context.WithTimeout(ctx, r.cfg.WriteTimeout)
	defer cancel()
	if err := r.cfg.Broker.Publish(ctx, r.cfg.Channel, msg); err != nil {
		r.failed.Add(1)
		c.enqueue(mustJSON(errorMsg{Type: "error", Seq: c.seq,
			Text: fmt.Sprintf("message %d not sent: %s unreachable", c.seq, r.cfg.Broker)}))
		if ce := r.cfg.Log.Check(zap.DebugLevel, "publish failed"); ce != nil {
			ce.Write(zap.Error(err))
		}
		return
	}
	r.published.Add(1)
}

// deliver takes one payload from the broker: a chat message goes to every
// local client as is, a presence updates the membership.
func (r *room) deliver(payload []byte) {
	var head struct {
		Type    string `json:"type"`
		Backend string `json:"backend"`
	}
	if json.Unmarshal(payload, &head) != nil {
		return
	}
	switch head.Type {
	case "chat":
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.cfg.History > 0 {
			if len(r.hist) == r.cfg.History {
				r.hist = slices.Delete(r.hist, 0, 1)
			}
			r.hist = append(r.hist, payload)
		}
		for c := range r.clients {
			if !c.enqueue(payload) {
				r.slow.Add(1)
			}
		}
		r.delivered.Add(1)
	case "presence":
		if head.Backend == r.cfg.Name {
			return // this server's own entry is kept first-hand
		}
		var p presence
		if json.Unmarshal(payload, &p) != nil {
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.dir.update(p, time.Now(), r.ttl()) {
			r.dirty = true
		}
	}
}

// link takes the broker's link state and tells the clients when it
// changes.
func (r *room) link(up bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if up == r.linkUp {
		return
	}
	r.linkUp = up
	r.fanoutLocked(mustJSON(brokerState{Type: "broker", Broker: r.cfg.Broker.String(), Up: up}))
	if up {
		// Others may have come or gone unheard: tell them who is here.
		r.changed = true
	}
	r.cfg.Log.Info("broker link", zap.String("broker", r.cfg.Broker.String()), zap.Bool("up", up))
}

// run publishes this server's presence every PresenceInterval, and as soon
// as its clients change (at most once a MembersInterval); it tells clients
// of membership changes at the same pace. It returns when ctx ends.
func (r *room) run(ctx context.Context) {
	every := time.NewTicker(r.cfg.PresenceInterval)
	defer every.Stop()
	tick := time.NewTicker(r.cfg.MembersInterval)
	defer tick.Stop()
	for {
		var publish []byte
		select {
		case <-ctx.Done():
			return
		case <-every.C:
			publish = r.presence(true)
		case <-tick.C:
			publish = r.presence(false)
			r.tellMembers()
		}
		if publish != nil {
			pctx, cancel := context.WithTimeout(ctx, r.cfg.WriteTimeout)
			_ = r.cfg.Broker.Publish(pctx, r.cfg.Channel, publish) // the next one may get through
			cancel()
		}
	}
}

// presence returns this server's presence to publish, when always is set
// or its clients changed; nil otherwise.
func (r *room) presence(always bool) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !always && !r.changed {
		return nil
	}
	r.changed = false
	p := r.presenceLocked()
	if r.dir.update(p, time.Now(), r.ttl()) {
		r.dirty = true
	}
	return mustJSON(p)
}

func (r *room) presenceLocked() presence {
	p := presence{Type: "presence", Backend: r.cfg.Name, Addr: r.addr, Count: len(r.clients), Members: []Member{}}
	for c := range r.clients {
		p.Members = append(p.Members, Member{ID: c.id, Nick: c.nick, Backend: r.cfg.Name, Since: c.since})
	}
	slices.SortFunc(p.Members, func(a, b Member) int { return cmp.Compare(a.Since, b.Since) })
	if len(p.Members) > maxListed {
		p.Members = p.Members[:maxListed]
	}
	return p
}

// tellMembers forgets servers not heard from, and sends the membership to
// every client when it changed.
func (r *room) tellMembers() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dir.expire(time.Now()) {
		r.dirty = true
	}
	if !r.dirty {
		return
	}
	r.dirty = false
	r.fanoutLocked(mustJSON(r.dir.snapshot()))
}

func (r *room) fanoutLocked(b []byte) {
	for c := range r.clients {
		if !c.enqueue(b) {
			r.slow.Add(1)
		}
	}
}

// ttl is how long a presence is believed: three intervals, so that one
// lost presence does not make a server's members flicker.
func (r *room) ttl() time.Duration { return 3 * r.cfg.PresenceInterval }

// cut closes every client's connection at once, without a close frame, as
// the death of the server's process would.
func (r *room) cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for c := range r.clients {
		_ = c.conn.NetConn().Close()
	}
}

// shutdown asks every client's writer to close with code and reason.
func (r *room) shutdown(code int, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for c := range r.clients {
		c.drop(code, reason)
	}
}

func (r *room) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.clients)
}
