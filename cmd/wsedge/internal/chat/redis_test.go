package chat

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// redisServer is a redis-server process on a loopback port, with nothing
// saved to disk.
type redisServer struct {
	t    *testing.T
	addr string
	cmd  *exec.Cmd
	dir  string
}

// startRedis runs redis-server on a free loopback port, stopped at
// cleanup. It skips the test when redis-server is not installed (.ci/run
// installs it).
func startRedis(t *testing.T) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed (apt-get install redis-server): Redis tests skipped")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r := &redisServer{t: t, addr: addr, dir: t.TempDir()}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *redisServer) start() {
	r.t.Helper()
	_, port, _ := net.SplitHostPort(r.addr)
	r.cmd = exec.Command("redis-server", "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no",
		"--dir", r.dir, "--protected-mode", "yes", "--loglevel", "warning")
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := ping(r.addr); err == nil {
			return
		} else if time.Now().After(deadline) {
			r.stop()
			r.t.Fatalf("redis-server on %s not answering: %v", r.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop kills the server at once, as a crash would.
func (r *redisServer) stop() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}

// ping sends PING in RESP and wants PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// redisBrokers gives every server its own Redis client, as servers in
// separate processes would have; they are closed at cleanup.
func redisBrokers(t *testing.T, addr string) func(int) Broker {
	return func(int) Broker {
		b := NewRedis(addr)
		t.Cleanup(func() { b.Close() })
		return b
	}
}

// TestRedisFanout: clients on three servers, each with its own Redis
// connection, get every message of the room, in order per publisher.
func TestRedisFanout(t *testing.T) {
	r := startRedis(t)
	servers := startServers(t, 3, redisBrokers(t, r.addr), nil)
	var clients []*testClient
	for i, s := range servers {
		for j := range 3 {
			clients = append(clients, join(t, s, fmt.Sprintf("c%d%d", i, j)))
		}
	}
	checkFanout(t, clients, []*testClient{clients[0], clients[3], clients[6], clients[7]}, 100, 10*time.Second)
}

// TestRedisRestart: Redis dies and comes back on its address. Clients are
// told the broker is down, a message sent meanwhile is reported lost to
// its sender, and once the servers have resubscribed the room carries on
// on every server. What was published during the outage is not replayed.
func TestRedisRestart(t *testing.T) {
	r := startRedis(t)
	servers := startServers(t, 3, redisBrokers(t, r.addr), nil)
	var clients []*testClient
	for i, s := range servers {
		clients = append(clients, join(t, s, fmt.Sprintf("c%d", i)))
	}
	clients[0].say("before")
	for _, c := range clients {
		c.next("chat", 5*time.Second)
	}

	r.stop()
	for _, c := range clients {
		if m := c.next("broker", 10*time.Second); m.Up {
			t.Fatalf("%s: broker message says up while Redis is dead", c.id)
		}
	}
	clients[1].say("during")
	if m := clients[1].next("error", 10*time.Second); !strings.Contains(m.Text, "not sent") || m.Seq != 1 {
		t.Errorf("sender of a message during the outage was told %+v", m)
	}

	r.start()
	for _, c := range clients {
		if m := c.next("broker", 15*time.Second); !m.Up {
			t.Fatalf("%s: broker message says down after Redis came back", c.id)
		}
	}
	for i, p := range clients {
		text := fmt.Sprintf("after from c%d", i)
		p.say(text)
		for _, c := range clients {
			if m := c.next("chat", 5*time.Second); m.Text != text {
				t.Fatalf("%s got %q, want %q (the outage's message must not come back)", c.id, m.Text, text)
			}
		}
	}
}

// TestRedisSilentLink: a subscription that stops answering (Redis frozen,
// not dead) is noticed by its pings and reported down.
func TestRedisSilentLink(t *testing.T) {
	r := startRedis(t)
	b := NewRedis(r.addr)
	b.probe = 100 * time.Millisecond
	t.Cleanup(func() { b.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	links := make(chan bool, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Subscribe(ctx, "silent", func([]byte) {}, func(up bool) { links <- up })
	}()
	t.Cleanup(func() { cancel(); <-done })
	if up := <-links; !up {
		t.Fatal("first link state is down")
	}
	if err := r.cmd.Process.Signal(sigStop); err != nil {
		t.Fatal(err)
	}
	defer r.cmd.Process.Signal(sigCont)
	select {
	case up := <-links:
		if up {
			t.Fatal("link reported up while Redis is frozen")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a frozen Redis went unnoticed for 5s")
	}
}
