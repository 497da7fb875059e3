package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"

	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

// Thousands of WebSockets, idle ones and ones echoing numbered messages
// at 50 a second, some in the middle of a fragmented message, live
// through three upgrades in a row to another build and back: none is
// closed, every echo arrives once and in order, every client is pinged by
// each new process, /debug/connections there lists them all, each old
// process exits, and the new one holds the memory and descriptors the
// first one did. Over TLS, whose sessions cannot move, the connections
// stay with the old process and are closed with 1012 after
// upgrade_linger, to reconnect to the new one.
func TestUpgradeKeepsEveryConnection(t *testing.T) {
	if e2e.name == modeTLS {
		upgradeClosesTLSConnections(t)
		return
	}
	second, err := secondBuild()
	if err != nil {
		t.Fatal(err)
	}
	backends := threeBackends(t)
	u := startUpgradable(t, "upgrade_linger = \"5s\"\n[websocket]\nping_interval = \"500ms\"\n"+upstreams(backends...))
	n := *upgradeConns
	const echoing, fragmenting = 40, 10
	start := time.Now()
	conns := dialMany(t, u.proc, n, func(int) http.Header { return nil })
	clients := make([]*watched, n)
	for i, c := range conns {
		clients[i] = watch(c)
	}
	defer func() {
		for _, w := range clients {
			w.close()
		}
	}()
	t.Logf("%d connections in %v", n, time.Since(start).Round(time.Millisecond))
	stop := make(chan struct{})
	sent := make([]int, echoing)
	var senders sync.WaitGroup
	for i := range echoing {
		senders.Go(func() { sent[i] = clients[i].echoAt(50, stop) })
	}
	stopped := false
	stopSenders := func() {
		if !stopped {
			stopped = true
			close(stop)
			senders.Wait()
		}
	}
	defer stopSenders()
	frag := clients[echoing : echoing+fragmenting]

	time.Sleep(time.Second) // every client pinged once before the first upgrade
	ids := u.connectionIDs(t)
	if len(ids) != n {
		t.Fatalf("/debug/connections lists %d connections before the upgrades, want %d", len(ids), n)
	}
	rss, fds := procRSS(t, u.cur.pid), procFDs(t, u.cur.pid)
	for round, bin := range []string{second, binary, second} {
		// The fragmenting clients send the first half of a message, in
		// whole frames and a part of one, before the upgrade...
		halves := make([][2][]byte, len(frag))
		writers := make([]io.WriteCloser, len(frag))
		for i, w := range frag {
			msg := bytes.Repeat([]byte{byte('a' + round), byte(i)}, 6000)
			halves[i] = [2][]byte{msg[:7000], msg[7000:]}
			w.expect(msg)
			wr, err := w.c.NextWriter(websocket.BinaryMessage)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := wr.Write(halves[i][0]); err != nil { // 4 KiB go out as a frame; the rest waits
				t.Fatal(err)
			}
			writers[i] = wr
		}
		old := u.cur.pid
		at := time.Now()
		out := u.upgrade(t, bin, 15*time.Second)
		t.Logf("upgrade %d: %s(old process exited %v after the command was run)", round+1, out, time.Since(at).Round(time.Millisecond))
		if !strings.Contains(out, fmt.Sprintf("took %d connections", n)) {
			t.Errorf("upgrade %d moved other than all %d connections: %s", round+1, n, out)
		}
		// ...and the rest after it.
		for i, wr := range writers {
			if _, err := wr.Write(halves[i][1]); err != nil {
				t.Fatal(err)
			}
			if err := wr.Close(); err != nil {
				t.Fatal(err)
			}
		}
		if got := u.connectionIDs(t); !slices.Equal(got, ids) {
			t.Fatalf("after upgrade %d, process %d lists %d connections; want the %d of process %d", round+1, u.cur.pid, len(got), len(ids), old)
		}
		done := time.Now()
		t.Logf("phase: ids checked %v after the upgrade", done.Sub(at))
		waitUntil(t, 10*time.Second, func() bool {
			for _, w := range clients {
				if w.lastPing.Load() < done.UnixNano() {
					return false
				}
			}
			return true
		}, "every client pinged by the new process")
		t.Logf("phase: pinged %v after the upgrade", time.Since(at))
		for i, w := range clients {
			if err := w.err.Load(); err != nil {
				t.Fatalf("after upgrade %d, client %d: %v", round+1, i, *err)
			}
		}
	}
	stopSenders()
	waitUntil(t, 10*time.Second, func() bool {
		for i := range echoing {
			if clients[i].next.Load() < int64(sent[i]) {
				return false
			}
		}
		return true
	}, "every echo back")
	for i, w := range frag {
		w.mu.Lock()
		left := len(w.want)
		w.mu.Unlock()
		if left > 0 {
			t.Errorf("fragmenting client %d: %d messages not echoed", i, left)
		}
	}
	for i, w := range clients {
		if err := w.err.Load(); err != nil {
			t.Fatalf("client %d: %v", i, *err)
		}
	}
	total := 0
	for _, s := range sent {
		total += s
	}
	t.Logf("%d messages echoed through three upgrades", total)

	time.Sleep(time.Second) // the new process settles, as the first had before it was measured
	rssAfter, fdsAfter := procRSS(t, u.cur.pid), procFDs(t, u.cur.pid)
	t.Logf("RSS %.1f MiB before, %.1f MiB after; descriptors %d before, %d after",
		float64(rss)/(1<<20), float64(rssAfter)/(1<<20), fds, fdsAfter)
	// The new process may well hold less than the old, which carried the
	// garbage of 2,000 handshakes; what must not happen is that it holds
	// more, as it would if the hand-over left copies behind.
	if rssAfter > rss*11/10 {
		t.Errorf("RSS %d after the upgrades, %d before: more than 10%% above", rssAfter, rss)
	}
	if fdsAfter > fds*11/10 || fdsAfter < fds*9/10 {
		t.Errorf("%d descriptors after the upgrades, %d before: not within 10%%", fdsAfter, fds)
	}
}

// upgradeClosesTLSConnections is TestUpgradeKeepsEveryConnection over
// TLS: the connections stay with the old process, which closes them with
// 1012 once upgrade_linger ran out, and exits; they reconnect to the new
// process.
func upgradeClosesTLSConnections(t *testing.T) {
	second, err := secondBuild()
	if err != nil {
		t.Fatal(err)
	}
	u := startUpgradable(t, "upgrade_linger = \"1s\"\n"+upstreams(upstreamtest.Start(t)))
	conns := dialMany(t, u.proc, 20, func(int) http.Header { return nil })
	out := u.upgrade(t, second, 15*time.Second)
	if !strings.Contains(out, "took 0 connections") || !strings.Contains(out, "20 (TLS) stay") {
		t.Errorf("upgrade said %q; want none moved and 20 staying", out)
	}
	for i, c := range conns {
		if code := closeCodeOf(t, c, 5*time.Second); code != 1012 {
			t.Fatalf("TLS client %d closed with %d, want 1012", i, code)
		}
	}
	u.logs.wait(t, "connections that could not move stay until upgrade_linger runs out", time.Second, `"connections":20`)
	dialMany(t, u.proc, 20, func(int) http.Header { return nil })
	if n := len(u.connectionIDs(t)); n != 20 {
		t.Fatalf("the new process lists %d connections, want the 20 reconnected", n)
	}
}

// A client sending a 16 MiB message, as one frame, while the proxy
// upgrades: the frame goes on in the new process from where the old one
// left it, and the echo comes back whole.
func TestUpgradeLargeMessage(t *testing.T) {
	if e2e.name == modeTLS {
		t.Skip("connections over TLS do not move; TestUpgradeKeepsEveryConnection covers what they do")
	}
	second, err := secondBuild()
	if err != nil {
		t.Fatal(err)
	}
	u := startUpgradable(t, "[websocket]\nmax_message_bytes = \"20MiB\"\nping_interval = \"500ms\"\n"+upstreams(upstreamtest.Start(t)))
	idle := dialMany(t, u.proc, 20, func(int) http.Header { return nil })
	watchers := make([]*watched, len(idle))
	for i, c := range idle {
		watchers[i] = watch(c)
	}
	defer func() {
		for _, w := range watchers {
			w.close()
		}
	}()

	conn, br, _, err := u.gobwasDialer(ws.Dialer{Timeout: 10 * time.Second}).Dial(t.Context(), u.wsURL("/"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const size = 16 << 20
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	want := sha256.Sum256(payload)
	// The echo, read as it comes; the proxy's pings are not answered: a
	// pong cannot go out in the middle of the frame, and bytes from the
	// client count as an answer.
	type echo struct {
		sum [32]byte
		n   int
		err error
	}
	echoed := make(chan echo, 1)
	go func() {
		var r io.Reader = conn
		if br != nil {
			r = io.MultiReader(br, conn)
		}
		h := sha256.New()
		n := 0
		for {
			hdr, err := ws.ReadHeader(r)
			if err != nil {
				echoed <- echo{err: err}
				return
			}
			if _, err := io.CopyN(map[bool]io.Writer{true: io.Discard, false: h}[hdr.OpCode.IsControl()], r, hdr.Length); err != nil {
				echoed <- echo{err: err}
				return
			}
			if !hdr.OpCode.IsControl() {
				n += int(hdr.Length)
				if hdr.Fin {
					var e echo
					copy(e.sum[:], h.Sum(nil))
					e.n = n
					echoed <- e
					return
				}
			}
		}
	}()
	mask := ws.NewMask()
	if err := ws.WriteHeader(conn, ws.Header{Fin: true, OpCode: ws.OpBinary, Masked: true, Mask: mask, Length: size}); err != nil {
		t.Fatal(err)
	}
	type upgradeDone struct {
		out  string
		next *wproc
		err  error
	}
	upgraded := make(chan upgradeDone, 1)
	const chunk = 256 << 10
	for off := 0; off < size; off += chunk {
		if off == 4*chunk {
			go func() {
				out, next, err := u.tryUpgrade(second, 15*time.Second)
				upgraded <- upgradeDone{out, next, err}
			}()
		}
		p := bytes.Clone(payload[off : off+chunk])
		ws.Cipher(p, mask, off)
		conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := conn.Write(p); err != nil {
			t.Fatalf("writing at %d: %v", off, err)
		}
		time.Sleep(25 * time.Millisecond) // about 1.6s in all: the upgrade comes in the middle
	}
	up := <-upgraded
	if up.err != nil {
		t.Fatal(up.err)
	}
	u.cur = up.next
	if !strings.Contains(up.out, "took 21 connections") {
		t.Fatalf("upgrade during the message: %s", up.out)
	}
	select {
	case e := <-echoed:
		if e.err != nil || e.n != size || e.sum != want {
			t.Fatalf("echo of the 16 MiB message: %d bytes, equal %v, %v", e.n, e.sum == want, e.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no echo of the 16 MiB message within 30s")
	}
	for i, w := range watchers {
		if err := w.err.Load(); err != nil {
			t.Fatalf("idle client %d: %v", i, *err)
		}
	}
}

// A new binary that cannot take over, whether its config is broken or it
// exits at once, leaves the old process serving every connection and
// taking new ones; the failure is said by `wsedge upgrade`, in the log,
// and in wsedge_upgrades_total.
func TestUpgradeFailureKeepsServing(t *testing.T) {
	u := startUpgradable(t, "[websocket]\nping_interval = \"300ms\"\n"+upstreams(upstreamtest.Start(t)))
	conns := dialMany(t, u.proc, 20, func(int) http.Header { return nil })
	clients := make([]*watched, len(conns))
	for i, c := range conns {
		clients[i] = watch(c)
	}
	defer func() {
		for _, w := range clients {
			w.close()
		}
	}()
	stop := make(chan struct{})
	var sender sync.WaitGroup
	var sent int
	sender.Go(func() { sent = clients[0].echoAt(50, stop) })

	// A broken config: the new process, which reads the running one's
	// file, says why and exits. The command reads a good copy.
	good, err := os.ReadFile(u.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(u.cfgPath, append(bytes.Clone(good), "\n[websocket.nonsense]\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	cli := &upgradable{proc: &proc{admin: u.admin, cfgPath: filepath.Join(t.TempDir(), "cli.toml")}}
	if err := os.WriteFile(cli.cfgPath, good, 0o644); err != nil {
		t.Fatal(err)
	}
	out := cli.upgradeFails(t)
	if !strings.Contains(out, "config") || !strings.Contains(out, "keeps serving") {
		t.Errorf("upgrade with a broken config said %q; want the config named and the old process serving", out)
	}
	if err := os.WriteFile(u.cfgPath, good, 0o644); err != nil {
		t.Fatal(err)
	}
	// A binary that exits at once.
	out = u.upgradeFails(t, "--binary", "/bin/false")
	if !strings.Contains(out, "exit status 1") {
		t.Errorf("upgrade to /bin/false said %q; want its exit status", out)
	}
	// Not a binary at all.
	out = u.upgradeFails(t, "--binary", u.cfgPath)
	if !strings.Contains(out, "not an executable file") {
		t.Errorf("upgrade to a config file said %q", out)
	}

	time.Sleep(500 * time.Millisecond)
	close(stop)
	sender.Wait()
	waitUntil(t, 10*time.Second, func() bool { return clients[0].next.Load() >= int64(sent) }, "every echo back")
	for i, w := range clients {
		if err := w.err.Load(); err != nil {
			t.Fatalf("client %d: %v", i, *err)
		}
	}
	select {
	case <-u.cur.exited:
		t.Fatal("the old process exited")
	default:
	}
	if n := len(u.connectionIDs(t)); n != 20 {
		t.Fatalf("the old process lists %d connections, want 20", n)
	}
	dialMany(t, u.proc, 5, func(int) http.Header { return nil }) // and takes new ones
	if got := counterValue(t, scrape(t, u.proc), "wsedge_upgrades_total", "result", "failed"); got != 3 {
		t.Errorf("wsedge_upgrades_total{result=\"failed\"} = %v, want 3", got)
	}
	u.logs.wait(t, "upgrade failed; the old process keeps serving", time.Second, "exit status 1")
}
