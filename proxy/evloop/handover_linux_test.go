//go:build linux

package evloop

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// serveCounting serves ln on l, counting and closing what it accepts, until
// cleanup.
func serveCounting(t *testing.T, ln *Listener, l *Loop) *atomic.Int32 {
	t.Helper()
	var n atomic.Int32
	served := make(chan error, 1)
	go func() {
		served <- ln.Serve([]Target{{Loop: l, Accepted: func(fd int, _ netip.AddrPort, _ int64) {
			n.Add(1)
			unix.Close(fd)
		}}})
	}()
	t.Cleanup(func() {
		ln.Close()
		<-served
	})
	return &n
}

// waitCount waits until n reaches want.
func waitCount(t *testing.T, n *atomic.Int32, want int32, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); n.Load() < want; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s accepted %d connections, want %d", what, n.Load(), want)
		}
	}
}

func dialN(t *testing.T, addr string, n int) {
	t.Helper()
	for range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
}

// A paused listener accepts nothing while the kernel queues its clients;
// another Listener adopting its sockets takes them, and it gets them back
// on Resume. Closing the first does not close the adopted sockets.
func TestListenerPauseAdoptResume(t *testing.T) {
	ln, err := Listen("127.0.0.1:0", 2)
	if err != nil {
		t.Fatal(err)
	}
	old := serveCounting(t, ln, runLoop(t))
	dialN(t, ln.Addr().String(), 3)
	waitCount(t, old, 3, "the first listener")

	if err := ln.Pause(); err != nil {
		t.Fatal(err)
	}
	dialN(t, ln.Addr().String(), 4) // queued by the kernel: nobody accepts
	time.Sleep(50 * time.Millisecond)
	if got := old.Load(); got != 3 {
		t.Fatalf("a paused listener accepted: %d connections", got)
	}

	fds, err := ln.Dup()
	if err != nil {
		t.Fatal(err)
	}
	adopted, err := Adopt(fds, 3) // one socket more than lent
	if err != nil {
		t.Fatal(err)
	}
	if got, want := adopted.Addr().String(), ln.Addr().String(); got != want {
		t.Fatalf("adopted listener on %s, want %s", got, want)
	}
	if len(adopted.fds) != 3 {
		t.Fatalf("adopted %d sockets, want 3", len(adopted.fds))
	}
	taken := serveCounting(t, adopted, runLoop(t))
	waitCount(t, taken, 4, "the adopting listener")

	if err := ln.Resume(); err != nil {
		t.Fatal(err)
	}
	ln.Close()
	dialN(t, ln.Addr().String(), 5) // the adopted sockets serve on alone
	waitCount(t, taken, 9, "the adopting listener")
}

// Adopt refuses what is not a listening TCP socket, and closes what it
// was given.
func TestAdoptRefuses(t *testing.T) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pair[1])
	if _, err := Adopt([]int{pair[0]}, 1); err == nil {
		t.Fatal("adopted a Unix socket")
	}
	if _, err := unix.FcntlInt(uintptr(pair[0]), unix.F_GETFD, 0); err == nil {
		unix.Close(pair[0])
		t.Fatal("a refused descriptor was left open")
	}
	if _, err := Adopt(nil, 1); err == nil {
		t.Fatal("adopted no socket")
	}
}
