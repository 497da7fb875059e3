package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// demoProc is a running `wsedge demo`.
type demoProc struct {
	listen, admin string
	backends      map[string]string // name -> address
	cmd           *exec.Cmd
	logs          *logLines // stderr
	exited        chan struct{}
}

// startDemo runs `wsedge demo` on free loopback ports with extra args and
// waits until it says where it is; it is stopped at cleanup.
func startDemo(t *testing.T, args ...string) *demoProc {
	t.Helper()
	d := &demoProc{listen: freePort(t), admin: freePort(t), backends: map[string]string{}, logs: &logLines{},
		exited: make(chan struct{})}
	d.cmd = exec.Command(binary, append([]string{"demo", "--listen", d.listen, "--admin", d.admin}, args...)...)
	stdout, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			d.logs.add(sc.Text())
		}
	})
	ready := make(chan struct{})
	var mu sync.Mutex // guards backends until ready
	wg.Go(func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			var name, addr string
			if _, err := fmt.Sscanf(line, "backend %s on %s", &name, &addr); err == nil {
				mu.Lock()
				d.backends[name] = addr
				mu.Unlock()
			}
			if strings.HasPrefix(line, "press Ctrl-C") {
				close(ready)
			}
		}
	})
	go func() {
		wg.Wait()
		_ = d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(15 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.exited
			t.Errorf("wsedge demo did not exit within 15s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("wsedge demo log:\n%s", strings.Join(d.logs.all(), "\n"))
		}
	})
	select {
	case <-ready:
	case <-d.exited:
		t.Fatalf("wsedge demo exited; log:\n%s", strings.Join(d.logs.all(), "\n"))
	case <-time.After(20 * time.Second):
		t.Fatalf("wsedge demo not ready in 20s; log:\n%s", strings.Join(d.logs.all(), "\n"))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(d.backends) != 3 {
		t.Fatalf("demo named %d backends, want 3: %v", len(d.backends), d.backends)
	}
	return d
}

// post sends POST /demo/WHAT?backend=NAME through the proxy.
func (d *demoProc) post(t *testing.T, what, name string) {
	t.Helper()
	u := fmt.Sprintf("http://%s/demo/%s?backend=%s", d.listen, what, url.QueryEscape(name))
	// The page's own IP-keyed backend may be the one just killed, still in
	// the ring for a moment: retry what the proxy could not deliver.
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Post(u, "", nil)
		if err == nil {
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusNoContent {
				return
			}
			err = fmt.Errorf("%s: %s", res.Status, body)
			if res.StatusCode < 500 {
				t.Fatalf("%s %s: %v", what, name, err)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s: %v", what, name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// backendStates returns name -> running from /demo/backends.
func (d *demoProc) backendStates(t *testing.T) (map[string]bool, error) {
	t.Helper()
	res, err := http.Get("http://" + d.listen + "/demo/backends")
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/demo/backends: %s", res.Status)
	}
	var list []struct {
		Name    string
		Running bool
	}
	if err := json.NewDecoder(res.Body).Decode(&list); err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, b := range list {
		out[b.Name] = b.Running
	}
	return out, nil
}

// chatConn is a test's client of the demo's chat room, through the proxy.
type chatConn struct {
	conn      *websocket.Conn
	hello     chatMsg
	msgs      chan chatMsg // everything after hello; closed when the connection ends
	closeMu   sync.Mutex   // guards closeCode
	closeCode int
	done      chan struct{}
}

// chatMsg is any message of the room, as the page reads them.
type chatMsg struct {
	Type     string    `json:"type"`
	Backend  string    `json:"backend"`
	Addr     string    `json:"addr"`
	ID       string    `json:"id"`
	Client   string    `json:"client"`
	Seq      uint64    `json:"seq"`
	Text     string    `json:"text"`
	Up       bool      `json:"up"`
	Count    int       `json:"count"`
	Messages []chatMsg `json:"messages"`
}

// dialChat joins the room through addr as tab id, offering the page's
// subprotocols (so that the demo proxy keys it by tab), and reads its
// hello.
func dialChat(addr, id string) (*chatConn, error) {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, Subprotocols: []string{"chat.v1", "tab." + id}}
	conn, res, err := d.Dial(fmt.Sprintf("ws://%s/ws?id=%s&nick=%s", addr, id, id), nil)
	if err != nil {
		if res != nil {
			return nil, fmt.Errorf("dial %s: %s", id, res.Status)
		}
		return nil, fmt.Errorf("dial %s: %w", id, err)
	}
	c := &chatConn{conn: conn, msgs: make(chan chatMsg, 1000), done: make(chan struct{})}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := conn.ReadJSON(&c.hello); err != nil || c.hello.Type != "hello" {
		conn.Close()
		return nil, fmt.Errorf("%s: hello: %+v, %v", id, c.hello, err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	go c.read()
	return c, nil
}

func (c *chatConn) read() {
	defer close(c.done)
	defer close(c.msgs)
	for {
		var m chatMsg
		if err := c.conn.ReadJSON(&m); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				c.closeMu.Lock()
				c.closeCode = ce.Code
				c.closeMu.Unlock()
			}
			return
		}
		select {
		case c.msgs <- m:
		default: // a test that reads nothing does not stall the connection
		}
	}
}

// closedWith is the close code the connection ended with, 0 if none yet
// or none was received.
func (c *chatConn) closedWith() int {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	return c.closeCode
}

func (c *chatConn) close() {
	_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""),
		time.Now().Add(time.Second))
	_ = c.conn.Close()
	<-c.done
}

func (c *chatConn) say(t *testing.T, text string) {
	t.Helper()
	if err := c.conn.WriteJSON(map[string]string{"text": text}); err != nil {
		t.Fatal(err)
	}
}

// await reads until a chat message with text arrives, failing after
// within; other messages are skipped.
func (c *chatConn) await(t *testing.T, text string, within time.Duration) chatMsg {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				t.Fatalf("%s: connection ended (close %d) before %q", c.hello.ID, c.closedWith(), text)
			}
			if m.Type == "chat" && m.Text == text {
				return m
			}
		case <-timeout:
			t.Fatalf("%s on %s: no %q within %v", c.hello.ID, c.hello.Backend, text, within)
		}
	}
}

// spread joins tabs until at least two backends hold one each, and at most
// 12; it returns them by backend.
func spread(t *testing.T, addr string) (all []*chatConn, byBackend map[string][]*chatConn) {
	t.Helper()
	byBackend = map[string][]*chatConn{}
	for i := 0; i < 12 && (len(all) < 4 || len(byBackend) < 2); i++ {
		c, err := dialChat(addr, fmt.Sprintf("tab%d-%d", i, time.Now().UnixNano()%1e6))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.close)
		all = append(all, c)
		byBackend[c.hello.Backend] = append(byBackend[c.hello.Backend], c)
	}
	if len(byBackend) < 2 {
		t.Fatalf("12 tabs all landed on one backend: %v", byBackend)
	}
	return all, byBackend
}

// TestDemoChat drives the demo as its page does, with the backends fanning
// out in process and through Redis: tabs on several backends see each
// other's messages; a killed backend's tabs are told 1012 by the proxy,
// reconnect to another backend, and the room carries on; a revived backend
// serves again.
func TestDemoChat(t *testing.T) {
	tests := []struct {
		name  string
		redis bool
	}{
		{"in-process", false},
		{"redis", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var args []string
			if tt.redis {
				args = append(args, "--redis", startRedis(t))
			}
			testDemoChat(t, startDemo(t, args...))
		})
	}
}

// startRedis runs redis-server on a free loopback port, with nothing
// saved, until the test ends, and returns its address. It skips the test
// when redis-server is not installed (.ci/run installs it).
func startRedis(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed (apt-get install redis-server): skipped")
	}
	addr := freePort(t)
	_, port, _ := strings.Cut(addr, ":")
	cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no",
		"--dir", t.TempDir(), "--loglevel", "warning")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	waitFor(t, 10*time.Second, func() string {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return "redis-server not listening: " + err.Error()
		}
		c.Close()
		return ""
	})
	return addr
}

func testDemoChat(t *testing.T, d *demoProc) {
	all, byBackend := spread(t, d.listen)

	all[0].say(t, "hello room")
	for _, c := range all {
		m := c.await(t, "hello room", 5*time.Second)
		if m.Client != all[0].hello.ID || m.Backend != all[0].hello.Backend {
			t.Errorf("%s got the message as from %s on %s, want %s on %s",
				c.hello.ID, m.Client, m.Backend, all[0].hello.ID, all[0].hello.Backend)
		}
	}

	var victim string
	for name := range byBackend {
		victim = name
		break
	}
	d.post(t, "kill", victim)
	for _, c := range byBackend[victim] {
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s still connected to killed %s", c.hello.ID, victim)
		}
		if code := c.closedWith(); code != 1012 {
			t.Errorf("%s: closed with %d, want 1012 from the proxy", c.hello.ID, code)
		}
	}
	// Reconnect as the page does, with backoff, until the ring has let the
	// dead backend go.
	var moved []*chatConn
	for _, old := range byBackend[victim] {
		var c *chatConn
		var err error
		for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
			c, err = dialChat(d.listen, old.hello.ID)
			if err == nil || wait == time.Second {
				break
			}
			time.Sleep(wait)
		}
		if err != nil {
			t.Fatalf("reconnecting %s: %v", old.hello.ID, err)
		}
		t.Cleanup(c.close)
		if c.hello.Backend == victim {
			t.Fatalf("%s reconnected to the killed %s", old.hello.ID, victim)
		}
		moved = append(moved, c)
	}
	stayed := []*chatConn{}
	for name, cs := range byBackend {
		if name != victim {
			stayed = append(stayed, cs...)
		}
	}
	moved[0].say(t, "still here")
	for _, c := range append(stayed, moved...) {
		c.await(t, "still here", 5*time.Second)
	}
	for _, c := range stayed {
		if code := c.closedWith(); code != 0 {
			t.Errorf("%s on a live backend was closed with %d", c.hello.ID, code)
		}
	}

	states, err := d.backendStates(t)
	if err != nil || states[victim] {
		t.Fatalf("after kill, /demo/backends says %v (%v), want %s not running", states, err, victim)
	}
	// The proxy's health checks take the dead backend out of the ring,
	// and bring it back once revived.
	waitFor(t, 10*time.Second, func() string { return d.inRing(d.backends[victim], false) })
	d.post(t, "revive", victim)
	waitFor(t, 10*time.Second, func() string { return d.inRing(d.backends[victim], true) })
	states, err = d.backendStates(t)
	if err != nil || !states[victim] {
		t.Fatalf("after revive, /demo/backends says %v (%v), want %s running", states, err, victim)
	}
}

// inRing says why addr is not (want true) or still is (want false) a
// healthy member of the proxy's ring; "" when it is as wanted.
func (d *demoProc) inRing(addr string, want bool) string {
	res, err := http.Get("http://" + d.admin + "/debug/ring")
	if err != nil {
		return err.Error()
	}
	defer res.Body.Close()
	var ring struct {
		Members []struct{ Addr, State string }
	}
	if err := json.NewDecoder(res.Body).Decode(&ring); err != nil {
		return err.Error()
	}
	in := false
	for _, m := range ring.Members {
		in = in || m.Addr == addr && m.State == "healthy"
	}
	if in != want {
		return fmt.Sprintf("%s in the ring is %v, want %v: %+v", addr, in, want, ring.Members)
	}
	return ""
}

// waitFor polls cond until it returns "" or within passes, then fails
// with its last word.
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
		time.Sleep(50 * time.Millisecond)
	}
}
