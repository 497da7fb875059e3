package chat

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// checkFanout has each of pubs publish per messages concurrently and
// checks that every client of clients gets every one, in order per
// publisher.
func checkFanout(t *testing.T, clients, pubs []*testClient, per int, within time.Duration) {
	t.Helper()
	var wg sync.WaitGroup
	for _, p := range pubs {
		wg.Go(func() {
			for i := 1; i <= per; i++ {
				p.say(fmt.Sprintf("%s #%d", p.id, i))
			}
		})
	}
	wg.Wait()
	for _, c := range clients {
		last := map[string]uint64{}
		got := 0
		for got < per*len(pubs) {
			m := c.next("chat", within)
			want := fmt.Sprintf("%s #%d", m.Client, m.Seq)
			if m.Text != want {
				t.Fatalf("%s got %q as %s's message %d", c.id, m.Text, m.Client, m.Seq)
			}
			if m.Seq != last[m.Client]+1 {
				t.Fatalf("%s got %s's message %d after %d: out of order or lost", c.id, m.Client, m.Seq, last[m.Client])
			}
			last[m.Client] = m.Seq
			got++
		}
	}
}

// TestFanout: clients on three servers of one in-process broker each get
// every message of the room, in order per publisher.
func TestFanout(t *testing.T) {
	broker := &Memory{}
	servers := startServers(t, 3, func(int) Broker { return broker }, nil)
	var clients []*testClient
	for i, s := range servers {
		for j := range 3 {
			clients = append(clients, join(t, s, fmt.Sprintf("c%d%d", i, j)))
		}
	}
	checkFanout(t, clients, []*testClient{clients[0], clients[4], clients[8]}, 50, 5*time.Second)
}

// TestMembers: every server lists the clients of all, and forgets a
// killed server's clients once its presence expires.
func TestMembers(t *testing.T) {
	broker := &Memory{}
	servers := startServers(t, 3, func(int) Broker { return broker }, nil)
	a := join(t, servers[0], "a")
	join(t, servers[1], "b")
	join(t, servers[2], "c")
	waitFor(t, 5*time.Second, func() string {
		if m := a.next("members", 5*time.Second); m.Count != 3 {
			return fmt.Sprintf("a sees %d members, want 3", m.Count)
		}
		return ""
	})
	servers[2].Kill()
	waitFor(t, 5*time.Second, func() string {
		if m := a.next("members", 5*time.Second); m.Count != 2 {
			return fmt.Sprintf("a sees %d members after a server died, want 2", m.Count)
		}
		return ""
	})
}

// TestHistory: a client that joins gets the last History messages.
func TestHistory(t *testing.T) {
	broker := &Memory{}
	servers := startServers(t, 2, func(int) Broker { return broker }, func(c *Config) { c.History = 3 })
	a := join(t, servers[0], "a")
	witness := join(t, servers[1], "witness") // on the late client's server
	for i := 1; i <= 5; i++ {
		a.say(fmt.Sprintf("a #%d", i))
		witness.next("chat", 5*time.Second)
	}
	late := join(t, servers[1], "late")
	h := late.next("history", 5*time.Second)
	var got []string
	for _, m := range h.Messages {
		got = append(got, m.Text)
	}
	if fmt.Sprint(got) != "[a #3 a #4 a #5]" {
		t.Errorf("history %q, want the last 3", got)
	}
}

// TestHeartbeat: a client that answers the server's pings stays; one
// that does not is dropped with 1008.
func TestHeartbeat(t *testing.T) {
	tests := []struct {
		name    string
		answers bool
	}{
		{"answers pings", true},
		{"silent", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServers(t, 1, func(int) Broker { return &Memory{} }, func(c *Config) {
				// A silent client goes after 0.8s; one that answers
				// would need a 0.7s stall to be taken for silent.
				c.PingInterval, c.PongTimeout = 100*time.Millisecond, 700*time.Millisecond
			})[0]
			var setup []func(*websocket.Conn)
			if !tt.answers {
				setup = append(setup, func(c *websocket.Conn) { c.SetPingHandler(func(string) error { return nil }) })
			}
			c := join(t, s, "c", setup...)
			select {
			case <-c.done:
				if tt.answers {
					t.Fatalf("dropped (close %d) though it answered pings", c.code)
				}
				if c.code != websocket.ClosePolicyViolation {
					t.Errorf("closed with %d, want 1008", c.code)
				}
			case <-time.After(3 * time.Second):
				if !tt.answers {
					t.Fatal("a client answering no ping still connected after 3s")
				}
			}
		})
	}
}

// TestSlowConsumer: a client that reads nothing fills its queue and is
// dropped; the room carries on for the others, who miss nothing.
func TestSlowConsumer(t *testing.T) {
	broker := &Memory{}
	s := startServers(t, 1, func(int) Broker { return broker }, func(c *Config) {
		c.QueueLen, c.WriteTimeout = 16, 500*time.Millisecond
	})[0]
	joinStuck(t, s)
	fine := join(t, s, "fine")
	pub := join(t, s, "pub")
	const n = 2000
	text := fmt.Sprintf("%01900d", 0)
	// The publisher waits for each message to come back, as a person
	// would: no healthy client's queue holds more than a few.
	for i := 1; i <= n; i++ {
		pub.say(text)
		pub.next("chat", 5*time.Second)
	}
	for i := 1; i <= n; i++ {
		if m := fine.next("chat", 10*time.Second); m.Seq != uint64(i) {
			t.Fatalf("fine got message %d, want %d", m.Seq, i)
		}
	}
	waitFor(t, 5*time.Second, func() string {
		if st := s.Stats(); st.Slow == 0 || st.Clients != 2 {
			return fmt.Sprintf("stats %+v: want the stuck client dropped as slow", st)
		}
		return ""
	})
}

// joinStuck joins s with a client that never reads, with a small receive
// buffer so that the server's writes soon block.
func joinStuck(t *testing.T, s *Server) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, NetDial: func(network, addr string) (net.Conn, error) {
		c, err := net.Dial(network, addr)
		if err == nil {
			err = c.(*net.TCPConn).SetReadBuffer(4096)
		}
		return c, err
	}}
	conn, _, err := d.Dial("ws://"+s.Addr()+"/ws?id=stuck", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
}
