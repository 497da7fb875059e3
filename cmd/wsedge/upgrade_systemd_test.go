package main

import (
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

// Under systemd (Type=notify), the proxy says READY=1 once it serves, and
// the process an upgrade starts tells systemd it is the main one now.
func TestUpgradeTellsSystemd(t *testing.T) {
	if e2e.name == modeTLS {
		t.Skip("the same in every mode")
	}
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	said := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			said <- string(buf[:n])
		}
	}()
	next := func(what string) string {
		t.Helper()
		select {
		case s := <-said:
			return s
		case <-time.After(10 * time.Second):
			t.Fatalf("systemd was not told %s", what)
			return ""
		}
	}
	t.Setenv("NOTIFY_SOCKET", sock)
	u := startUpgradable(t, upstreams(upstreamtest.Start(t)))
	if got := next("READY=1"); got != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	u.upgrade(t, binary, 15*time.Second)
	want := fmt.Sprintf("MAINPID=%d\nREADY=1", u.cur.pid)
	if got := next("the new main PID"); got != want {
		t.Fatalf("after the upgrade systemd was told %q, want %q", got, want)
	}
}
