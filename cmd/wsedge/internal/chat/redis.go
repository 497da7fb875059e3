package chat

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a Broker on Redis pub/sub, for servers in different processes
// or on different hosts. It is safe for concurrent use; Close releases its
// connections.
//
// Redis pub/sub delivers a message to the subscribers connected when it is
// published and keeps nothing: while a server is cut off from Redis, what
// the others publish never reaches it.
type Redis struct {
	addr   string
	client *redis.Client
	// probe is how long a subscription may stay silent before it is
	// pinged; a ping unanswered for as long again means the link is
	// dead, even if no error says so (a host gone without a reset).
	probe time.Duration
}

var _ Broker = (*Redis)(nil)

// NewRedis returns a broker on the Redis server at addr (host:port). It
// does not connect until used.
func NewRedis(addr string) *Redis {
	return &Redis{
		addr: addr,
		client: redis.NewClient(&redis.Options{
			Addr: addr,
			// Fail fast while Redis is away: the sender is told its
			// message is lost rather than kept waiting.
			DialTimeout:  time.Second,
			ReadTimeout:  2 * time.Second,
			WriteTimeout: 2 * time.Second,
			// One retry covers a pooled connection that died with a
			// restarted Redis. A retry after a write that did reach
			// Redis publishes twice; clients drop duplicates by id.
			MaxRetries: 1,
			// No RESP3 handshake or client-side features: plain
			// PUBLISH and SUBSCRIBE work with any Redis from 2.8 on.
			Protocol:        2,
			DisableIdentity: true,
		}),
		probe: 5 * time.Second,
	}
}

// Publish implements Broker.
func (r *Redis) Publish(ctx context.Context, channel string, payload []byte) error {
	return r.client.Publish(ctx, channel, payload).Err()
}

// Subscribe implements Broker. It keeps one subscription connection; when
// that connection fails it reconnects, waiting longer after each failure
// (up to 2s), and resubscribes.
func (r *Redis) Subscribe(ctx context.Context, channel string, deliver func([]byte), link func(bool)) {
	up := false
	setLink := func(v bool) {
		if v != up {
			up = v
			link(v)
		}
	}
	backoff := newBackoff(50*time.Millisecond, 2*time.Second)
	for ctx.Err() == nil {
		err := r.subscribeOnce(ctx, channel, deliver, func() { setLink(true); backoff.reset() })
		if ctx.Err() != nil {
			return
		}
		_ = err // the link state says what matters; the error is Redis's to log
		setLink(false)
		if !sleepCtx(ctx, backoff.next()) {
			return
		}
	}
}

// errSilent is a subscription that answered no ping.
var errSilent = errors.New("redis: subscription answered no ping")

// subscribeOnce runs one subscription connection until it fails or ctx
// ends. subscribed is called each time Redis confirms the subscription.
func (r *Redis) subscribeOnce(ctx context.Context, channel string, deliver func([]byte), subscribed func()) error {
	ps := r.client.Subscribe(ctx, channel)
	// Closing the subscription is what unblocks a receive when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer func() {
		if stop() {
			_ = ps.Close()
		}
	}()
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, r.probe)
		var ne net.Error
		switch {
		case err == nil:
		case errors.As(err, &ne) && ne.Timeout() && !pinged:
			pinged = true
			if err := ps.Ping(ctx); err != nil {
				return err
			}
			continue
		case errors.As(err, &ne) && ne.Timeout():
			return errSilent
		default:
			return err
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				subscribed()
			}
		case *redis.Message:
			deliver([]byte(m.Payload))
		}
	}
}

func (r *Redis) String() string { return "redis " + r.addr }

// Close closes the client's connections. Subscriptions end with their
// contexts.
func (r *Redis) Close() error { return r.client.Close() }

// backoff is a wait that doubles from min to max, for a reconnect loop.
// One reconnecting subscription per server needs no jitter.
type backoff struct {
	min, max, cur time.Duration
}

func newBackoff(min, max time.Duration) *backoff { return &backoff{min: min, max: max, cur: min} }

func (b *backoff) next() time.Duration {
	d := b.cur
	b.cur = min(2*b.cur, b.max)
	return d
}

func (b *backoff) reset() { b.cur = b.min }

// sleepCtx waits for d or until ctx ends, and reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
