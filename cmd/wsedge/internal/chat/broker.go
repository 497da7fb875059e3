package chat

import (
	"context"
	"sync"
)

// Broker carries a room's messages between servers.
type Broker interface {
	// Publish sends payload to every subscriber of channel, the
	// publisher's own server included. It returns once the broker has
	// taken the message, so that messages published one after another by
	// one caller arrive in that order.
	Publish(ctx context.Context, channel string, payload []byte) error
	// Subscribe delivers every payload published on channel to deliver,
	// one at a time and in the broker's order, until ctx ends; it then
	// returns. link is called with true once the subscription is in place
	// (again, after an outage) and with false when it is lost. deliver
	// and link are never called concurrently, and must not block.
	Subscribe(ctx context.Context, channel string, deliver func(payload []byte), link func(up bool))
	// String names the broker for people: "in-process", "redis ADDR".
	String() string
}

// Memory is a Broker for servers that share a process. Publish hands the
// payload to every subscriber before it returns, under one lock, so that
// every subscriber sees one order. The zero value is ready to use; a
// Memory is safe for concurrent use.
type Memory struct {
	mu   sync.Mutex // guards subs
	subs map[*memorySub]struct{}
}

type memorySub struct {
	channel string
	deliver func([]byte)
}

var _ Broker = (*Memory)(nil)

// Publish implements Broker. It never fails.
func (m *Memory) Publish(_ context.Context, channel string, payload []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for s := range m.subs {
		if s.channel == channel {
			s.deliver(payload)
		}
	}
	return nil
}

// Subscribe implements Broker. The link never goes down.
func (m *Memory) Subscribe(ctx context.Context, channel string, deliver func([]byte), link func(bool)) {
	s := &memorySub{channel: channel, deliver: deliver}
	link(true) // before any delivery can run beside it
	m.mu.Lock()
	if m.subs == nil {
		m.subs = make(map[*memorySub]struct{})
	}
	m.subs[s] = struct{}{}
	m.mu.Unlock()
	<-ctx.Done()
	m.mu.Lock()
	delete(m.subs, s)
	m.mu.Unlock()
}

func (m *Memory) String() string { return "in-process" }
