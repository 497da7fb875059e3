package chat

import (
	"errors"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// client is one connected WebSocket. Its reader runs in the server's
// handler goroutine and its writer in one goroutine of its own, the only
// one that writes data frames (gorilla/websocket allows one writer at a
// time; control frames may be written beside it).
type client struct {
	id, nick string
	since    int64 // Unix milliseconds when it joined
	conn     *websocket.Conn
	// send is the bounded queue of encoded messages for the writer. The
	// room enqueues without ever waiting: a full queue drops the client.
	send chan []byte
	// quit is closed, once, when the client is to be dropped; code and
	// reason are set before and read by the writer after.
	quit   chan struct{}
	once   sync.Once
	code   int
	reason string
	seq    uint64 // messages sent by the client on this connection; reader only
	name   string // the room's id for this connection, for message ids
}

func newClient(conn *websocket.Conn, id, nick, name string, queue int) *client {
	return &client{
		id: id, nick: nick, name: name, conn: conn,
		since: time.Now().UnixMilli(),
		send:  make(chan []byte, queue),
		quit:  make(chan struct{}),
	}
}

// enqueue queues b for the writer, or drops the client as a slow consumer
// when its queue is full. It never blocks.
func (c *client) enqueue(b []byte) bool {
	select {
	case c.send <- b:
		return true
	default:
		c.drop(websocket.ClosePolicyViolation, "slow consumer")
		return false
	}
}

// drop asks the writer to close the connection with code and reason
// (none when code is 0). The first call wins; it never blocks.
func (c *client) drop(code int, reason string) {
	c.once.Do(func() {
		c.code, c.reason = code, reason
		close(c.quit)
	})
}

// writeLoop writes queued messages and pings until the client is dropped
// or a write fails, then closes the connection, which ends the reader.
func (c *client) writeLoop(cfg *Config) {
	defer c.conn.Close()
	ping := time.NewTicker(cfg.PingInterval)
	defer ping.Stop()
	for {
		select {
		case b := <-c.send:
			// A write that cannot finish in time is a slow consumer
			// too; after a timed-out write the connection is unusable,
			// so it is closed without a close frame.
			_ = c.conn.SetWriteDeadline(time.Now().Add(cfg.WriteTimeout))
			if err := c.conn.WriteMessage(websocket.TextMessage, b); err != nil {
				return
			}
		case <-ping.C:
			if err := c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(cfg.WriteTimeout)); err != nil {
				return
			}
		case <-c.quit:
			if c.code != 0 {
				msg := websocket.FormatCloseMessage(c.code, c.reason)
				_ = c.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
			}
			return
		}
	}
}

// readLoop reads the client's messages and hands each to say, until the
// connection fails, the client closes, or it stays silent (no message and
// no pong) for longer than a ping interval and the pong timeout.
func (c *client) readLoop(cfg *Config, say func(c *client, text string)) {
	wait := cfg.PingInterval + cfg.PongTimeout
	alive := func() { _ = c.conn.SetReadDeadline(time.Now().Add(wait)) }
	alive()
	c.conn.SetPongHandler(func(string) error { alive(); return nil })
	// Room for the JSON around a text of MaxText bytes.
	c.conn.SetReadLimit(int64(4*cfg.MaxText + 256))
	for {
		_, p, err := c.conn.ReadMessage()
		if err != nil {
			// Too big a message got 1009 from gorilla/websocket
			// itself; a client that closed got its close answered.
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.drop(websocket.ClosePolicyViolation, "pong timeout")
			}
			c.drop(0, "")
			return
		}
		alive()
		say(c, incoming(p))
	}
}
