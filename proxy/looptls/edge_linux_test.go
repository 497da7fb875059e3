//go:build linux

package looptls

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A reader that goes by edges, as the loops do: it reads while a read
// fills its buffer or Waiting says more is there, and otherwise waits for
// the socket's next edge-triggered EPOLLIN. It must get every byte a client
// writes in bursts of records of every size, and the end.
func TestTLSSideEdgeTriggeredReaderGetsEverything(t *testing.T) {
	side, client := tlsPair(t, false)
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ep)
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | uint32(1)<<31, Fd: int32(side.tr.fd)} // EPOLLET
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, side.tr.fd, &ev); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var want []byte
	for range 300 {
		m := make([]byte, 1+rng.IntN(40000))
		for i := range m {
			m[i] = byte(rng.Uint32())
		}
		want = append(want, m...)
	}
	go func() {
		rest := want
		for len(rest) > 0 {
			n := min(len(rest), 1+rng.IntN(60000))
			client.Write(rest[:n])
			rest = rest[n:]
			if rng.IntN(4) == 0 {
				time.Sleep(time.Duration(rng.IntN(300)) * time.Microsecond)
			}
		}
		client.CloseWrite()
	}()
	var got []byte
	buf := make([]byte, 32<<10)
	events := make([]unix.EpollEvent, 1)
	readable := true
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if !readable {
			n, err := unix.EpollWait(ep, events, 1000)
			if err == unix.EINTR || n == 0 {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			readable = true
		}
		n, err := side.Read(buf)
		switch {
		case err == unix.EAGAIN:
			readable = false
			continue
		case err != nil:
			t.Fatal(err)
		case n == 0:
			if !bytes.Equal(got, want) {
				t.Fatalf("the end after %d of %d bytes, or bytes changed", len(got), len(want))
			}
			return
		}
		got = append(got, buf[:n]...)
		readable = n == len(buf) || side.Waiting()
	}
	t.Fatalf("got %d of %d bytes and no end by the deadline: the reader waited for an edge that never came", len(got), len(want))
}
