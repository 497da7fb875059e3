package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"
)

// upgradeConns is how many connections TestUpgradeKeepsEveryConnection
// holds through its upgrades; raise it by hand (-args -upgrade-conns=9000)
// for the figures of a full process.
var upgradeConns = flag.Int("upgrade-conns", 2000, "connections TestUpgradeKeepsEveryConnection holds through three upgrades")

// secondBuild is the wsedge binary built again, apart from the tests'
// own: a new build to upgrade to, of the same source but linked without
// its symbol table, which costs a link and no compile. It lives in the
// tests' build directory.
var secondBuild = sync.OnceValues(func() (string, error) {
	path := filepath.Join(filepath.Dir(binary), "wsedge-second")
	out, err := exec.Command("go", "build", "-ldflags=-s", "-o", path, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building the second binary: %v\n%s", err, out)
	}
	return path, nil
})

// subreaper makes the test process the parent of the processes an
// upgraded wsedge leaves behind, once the old one exits, so that it can
// wait for them as for its own children. Set once for the process.
var subreaper = sync.OnceValue(func() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
})

// upgradable is a wsedge that upgrades itself: the process serving now
// changes with each upgrade, while its listeners, config and log stay.
type upgradable struct {
	*proc        // the listeners and the mode's dialers; proc.cmd is the first process
	cur   *wproc // the process serving now
	read  *os.File
	done  chan struct{} // the log is read to its end: every process exited
}

// wproc is one wsedge process, the first or one an upgrade started.
type wproc struct {
	pid    int
	exited chan struct{}
}

// startUpgradable starts `wsedge serve` with cfg, its log (and that of
// every process that replaces it) in one pipe, and waits until it listens.
func startUpgradable(t *testing.T, cfg string) *upgradable {
	t.Helper()
	if err := subreaper(); err != nil {
		t.Skipf("cannot adopt the processes an upgrade leaves: %v", err)
	}
	path := filepath.Join(t.TempDir(), "proxy.toml")
	writeConfig(t, path, cfg)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "serve", "--config", path)
	cmd.Stderr = w // an *os.File: Wait does not wait for the processes that inherit it
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	u := &upgradable{proc: &proc{cmd: cmd, cfgPath: path, logs: &logLines{}, exited: make(chan struct{})},
		read: r, done: make(chan struct{})}
	u.cur = &wproc{pid: cmd.Process.Pid, exited: u.proc.exited}
	go func() {
		defer close(u.done)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			u.logs.add(sc.Text())
		}
	}()
	go func() {
		u.proc.exitErr = cmd.Wait()
		close(u.proc.exited)
	}()
	t.Cleanup(func() { u.stop(t) })
	u.listening(t, u.waitStarted(t))
	return u
}

// stop ends whichever process serves, and waits for the log to end.
func (u *upgradable) stop(t *testing.T) {
	syscall.Kill(u.cur.pid, syscall.SIGTERM)
	select {
	case <-u.cur.exited:
	case <-time.After(20 * time.Second):
		syscall.Kill(u.cur.pid, syscall.SIGKILL)
		<-u.cur.exited
		t.Errorf("wsedge %d did not exit within 20s of SIGTERM", u.cur.pid)
	}
	select {
	case <-u.done:
	case <-time.After(10 * time.Second):
		t.Errorf("a wsedge process still holds the log 10s after the last one was stopped")
	}
	u.read.Close()
	if t.Failed() {
		t.Logf("wsedge log:\n%s", strings.Join(u.logs.all(), "\n"))
	}
}

// adopt starts waiting for pid, a process an upgrade left behind and the
// test process now parents.
func adopt(pid int) *wproc {
	p := &wproc{pid: pid, exited: make(chan struct{})}
	go func() {
		defer close(p.exited)
		var st unix.WaitStatus
		for {
			_, err := unix.Wait4(pid, &st, 0, nil)
			switch {
			case errors.Is(err, unix.EINTR):
				continue
			case errors.Is(err, unix.ECHILD):
				// Not adopted after all: watch it end.
				for processAlive(pid) {
					time.Sleep(20 * time.Millisecond)
				}
			}
			return
		}
	}()
	return p
}

// processAlive reports whether pid runs and is not a zombie.
func processAlive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z")
}

var newPID = regexp.MustCompile(`new process (\d+)`)

// upgrade runs `wsedge upgrade --binary bin` and returns what it printed;
// once it went through, it waits for the old process to exit and makes
// the new one current.
func (u *upgradable) upgrade(t *testing.T, bin string, oldExitWithin time.Duration) string {
	t.Helper()
	out, next, err := u.tryUpgrade(bin, oldExitWithin)
	if err != nil {
		t.Fatal(err)
	}
	u.cur = next
	return out
}

// tryUpgrade is upgrade for any goroutine: it returns the new process
// rather than make it current.
func (u *upgradable) tryUpgrade(bin string, oldExitWithin time.Duration) (string, *wproc, error) {
	out, err := exec.Command(binary, "upgrade", "--config", u.cfgPath, "--admin", u.admin, "--binary", bin).CombinedOutput()
	if err != nil {
		return "", nil, fmt.Errorf("wsedge upgrade: %v\n%s", err, out)
	}
	m := newPID.FindSubmatch(out)
	if m == nil {
		return "", nil, fmt.Errorf("wsedge upgrade printed no new process: %s", out)
	}
	pid, _ := strconv.Atoi(string(m[1]))
	select {
	case <-u.cur.exited:
	case <-time.After(oldExitWithin):
		return "", nil, fmt.Errorf("old process %d still running %v after the upgrade", u.cur.pid, oldExitWithin)
	}
	return string(out), adopt(pid), nil
}

// upgradeFails runs `wsedge upgrade` with args, which must fail, and
// returns what it printed.
func (u *upgradable) upgradeFails(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(binary, append([]string{"upgrade", "--config", u.cfgPath, "--admin", u.admin}, args...)...).CombinedOutput()
	if err == nil {
		t.Fatalf("wsedge upgrade %v went through: %s", args, out)
	}
	return string(out)
}

// connectionIDs lists the IDs of the live connections the admin listener
// shows, sorted.
func (u *upgradable) connectionIDs(t *testing.T) []uint64 {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := c.Get("http://" + u.admin + "/debug/connections")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var conns []struct{ ID uint64 }
	if err := json.NewDecoder(res.Body).Decode(&conns); err != nil {
		t.Fatal(err)
	}
	ids := make([]uint64, len(conns))
	for i, c := range conns {
		ids[i] = c.ID
	}
	slices.Sort(ids)
	return ids
}

// procRSS is a process's resident memory in bytes; procFDs its open
// descriptors.
func procRSS(t *testing.T, pid int) int64 {
	t.Helper()
	return (&proc{cmd: &exec.Cmd{Process: &os.Process{Pid: pid}}}).rss(t)
}

func procFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// watched is a client connection whose every event the test checks: no
// end it did not ask for, the proxy's pings, and, for the clients that
// send, every echo once and in order.
type watched struct {
	c        *websocket.Conn
	lastPing atomic.Int64 // unix nanoseconds
	// next is the number of the next echo due; want, the whole messages
	// due back, in order, from the clients that send fragments.
	next    atomic.Int64
	mu      sync.Mutex
	want    [][]byte
	err     atomic.Pointer[error]
	closing atomic.Bool // the test ends the connection: its read error is expected
	read    chan struct{}
}

func watch(c *websocket.Conn) *watched {
	w := &watched{c: c, read: make(chan struct{})}
	c.SetPingHandler(func(data string) error {
		w.lastPing.Store(time.Now().UnixNano())
		return c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(10*time.Second))
	})
	go w.readLoop()
	return w
}

func (w *watched) fail(err error) {
	if !w.closing.Load() {
		w.err.CompareAndSwap(nil, &err)
	}
}

func (w *watched) readLoop() {
	defer close(w.read)
	for {
		_, msg, err := w.c.ReadMessage()
		if err != nil {
			w.fail(fmt.Errorf("connection ended: %w", err))
			return
		}
		w.mu.Lock()
		var due []byte
		if len(w.want) > 0 {
			due, w.want = w.want[0], w.want[1:]
		}
		w.mu.Unlock()
		if due != nil {
			if !bytes.Equal(msg, due) {
				w.fail(fmt.Errorf("fragmented message came back as %d bytes, not the %d sent", len(msg), len(due)))
			}
			continue
		}
		if want := strconv.FormatInt(w.next.Load(), 10); string(msg) != want {
			w.fail(fmt.Errorf("echo %q, want %q: lost, repeated or reordered", msg, want))
			return
		}
		w.next.Add(1)
	}
}

// expect says that msg is the next whole message due back.
func (w *watched) expect(msg []byte) {
	w.mu.Lock()
	w.want = append(w.want, msg)
	w.mu.Unlock()
}

func (w *watched) close() {
	w.closing.Store(true)
	w.c.Close()
	<-w.read
}

// echoAt sends numbered messages at rate per second until stop, and
// returns how many it sent.
func (w *watched) echoAt(rate int, stop <-chan struct{}) int {
	t := time.NewTicker(time.Second / time.Duration(rate))
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-stop:
			return n
		case <-t.C:
		}
		w.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := w.c.WriteMessage(websocket.TextMessage, []byte(strconv.Itoa(n))); err != nil {
			w.fail(fmt.Errorf("sending %d: %w", n, err))
			return n
		}
	}
}
