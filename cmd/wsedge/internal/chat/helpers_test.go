package chat

import (
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// startServers starts n servers of one room, named s1..sn, each with its
// broker from brokers (called once per server, as separate processes
// would each have their own), stopped at cleanup.
func startServers(t *testing.T, n int, brokers func(i int) Broker, tweak func(*Config)) []*Server {
	t.Helper()
	var out []*Server
	for i := range n {
		cfg := Config{Name: fmt.Sprintf("s%d", i+1), Broker: brokers(i),
			PresenceInterval: 200 * time.Millisecond, MembersInterval: 50 * time.Millisecond}
		if tweak != nil {
			tweak(&cfg)
		}
		s, err := Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close(time.Second) })
		out = append(out, s)
	}
	return out
}

// testClient is a room member driven by a test.
type testClient struct {
	t     *testing.T
	id    string
	conn  *websocket.Conn
	hello hello
	msgs  chan received // closed when the connection ends
	done  chan struct{}
	code  int // the close code received; read after done
}

// received is any message a server sends, decoded loosely.
type received struct {
	Type     string `json:"type"`
	ID       string `json:"id"`
	Client   string `json:"client"`
	Backend  string `json:"backend"`
	Seq      uint64 `json:"seq"`
	Text     string `json:"text"`
	Up       bool   `json:"up"`
	Count    int    `json:"count"`
	Messages []Chat `json:"messages"`
}

// join connects a client with id to s, reads its hello and reads the
// rest in the background; it is closed at cleanup. setup, when given,
// changes the connection before the reading starts.
func join(t *testing.T, s *Server, id string, setup ...func(*websocket.Conn)) *testClient {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	u := fmt.Sprintf("ws://%s/ws?id=%s&nick=%s", s.Addr(), url.QueryEscape(id), url.QueryEscape(id))
	conn, _, err := d.Dial(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &testClient{t: t, id: id, conn: conn, msgs: make(chan received, 10000), done: make(chan struct{})}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := conn.ReadJSON(&c.hello); err != nil || c.hello.Type != "hello" {
		t.Fatalf("%s: hello %+v: %v", id, c.hello, err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	for _, f := range setup {
		f(conn)
	}
	go c.read()
	t.Cleanup(c.close)
	return c
}

func (c *testClient) read() {
	defer close(c.done)
	defer close(c.msgs)
	for {
		var m received
		if err := c.conn.ReadJSON(&m); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				c.code = ce.Code
			}
			return
		}
		select {
		case c.msgs <- m:
		default:
			c.t.Errorf("%s: more than 10000 messages unread", c.id)
			return
		}
	}
}

func (c *testClient) close() {
	_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""),
		time.Now().Add(time.Second))
	_ = c.conn.Close()
	<-c.done
}

func (c *testClient) say(text string) {
	c.t.Helper()
	if err := c.conn.WriteJSON(map[string]string{"text": text}); err != nil {
		c.t.Fatal(err)
	}
}

// next returns the next message of type typ, skipping others, failing
// after within.
func (c *testClient) next(typ string, within time.Duration) received {
	c.t.Helper()
	timeout := time.After(within)
	for {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				c.t.Fatalf("%s: connection ended (close %d) waiting for %q", c.id, c.code, typ)
			}
			if m.Type == typ {
				return m
			}
		case <-timeout:
			c.t.Fatalf("%s: no %q message within %v", c.id, typ, within)
		}
	}
}

// ended waits for the connection to end and returns the close code it
// got (0: none, the connection was cut).
func (c *testClient) ended(within time.Duration) int {
	c.t.Helper()
	select {
	case <-c.done:
		return c.code
	case <-time.After(within):
		c.t.Fatalf("%s: still connected after %v", c.id, within)
		return 0
	}
}

// waitFor polls cond until it returns "" or within passes.
func waitFor(t *testing.T, within time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		why := cond()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
