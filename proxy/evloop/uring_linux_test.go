//go:build linux

package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"

	"github.com/wsedge/wsedge/upstream"
	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

// ringOrSkip is a ring, or a skip where the kernel has none to give.
func ringOrSkip(t *testing.T) *ioRing {
	t.Helper()
	r, err := newIORing()
	if err != nil {
		t.Skipf("no io_uring here: %v", err)
	}
	t.Cleanup(r.close)
	return r
}

// socketPair is two connected non-blocking stream sockets.
func socketPair(t *testing.T) (a, b int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

// do submits what was pushed and returns the completions, which must all
// be there when the call returns.
func do(t *testing.T, r *ioRing, n int) map[uint64]int32 {
	t.Helper()
	if took, err := r.submit(n); err != nil || took != n {
		t.Fatalf("submit %d: took %d, %v", n, took, err)
	}
	got := map[uint64]int32{}
	for {
		c, ok := r.reap()
		if !ok {
			break
		}
		got[c.userData] = c.res
	}
	if len(got) != n {
		t.Fatalf("%d of %d operations done when the call returned", len(got), n)
	}
	return got
}

// Sends and receives on several sockets go in one call, each with its own
// result, in whatever order the caller gave them.
func TestIORingBatch(t *testing.T) {
	r := ringOrSkip(t)
	type pair struct{ a, b int }
	var pairs []pair
	for range 5 {
		a, b := socketPair(t)
		pairs = append(pairs, pair{a, b})
	}
	for i, p := range pairs {
		r.push(ioOpSend, p.a, bytes.Repeat([]byte{byte('a' + i)}, 10+i), ioSendFlags, uint64(i))
	}
	for i, res := range do(t, r, len(pairs)) {
		if res != int32(10+i) {
			t.Errorf("send %d: result %d, want %d", i, res, 10+i)
		}
	}
	bufs := make([][]byte, len(pairs))
	for i, p := range pairs {
		bufs[i] = make([]byte, 64)
		r.push(ioOpRecv, p.b, bufs[i], ioRecvFlags, uint64(i))
	}
	for i, res := range do(t, r, len(pairs)) {
		if want := bytes.Repeat([]byte{byte('a' + i)}, 10+int(i)); res < 0 || !bytes.Equal(bufs[i][:res], want) {
			t.Errorf("receive %d: result %d, bytes %q, want %q", i, res, bufs[i][:max(res, 0)], want)
		}
	}
}

// Nothing waits: a receive with nothing to read and a send to a full
// socket come back at once, EAGAIN and a short count, as the loop's
// edge-triggered sockets need.
func TestIORingNeverWaits(t *testing.T) {
	r := ringOrSkip(t)
	a, b := socketPair(t)
	unix.SetsockoptInt(a, unix.SOL_SOCKET, unix.SO_SNDBUF, 4096)
	big := make([]byte, 1<<20)
	buf := make([]byte, 64)
	start := time.Now()
	r.push(ioOpRecv, b, buf, ioRecvFlags, 1)
	r.push(ioOpSend, a, big, ioSendFlags, 2)
	r.push(ioOpSend, a, big, ioSendFlags, 3)
	got := do(t, r, 3)
	if took := time.Since(start); took > time.Second {
		t.Errorf("the call took %v", took)
	}
	if got[1] != -int32(unix.EAGAIN) {
		t.Errorf("receive from an empty socket: %d, want -EAGAIN", got[1])
	}
	if got[2] <= 0 || got[2] >= int32(len(big)) {
		t.Errorf("first send of 1 MiB to a small buffer: %d, want a short count", got[2])
	}
	if got[3] != -int32(unix.EAGAIN) {
		t.Errorf("send to a full socket: %d, want -EAGAIN", got[3])
	}
}

// A ring that fails in the middle of a turn is set aside: that turn's
// operations and the next ones are done with plain system calls.
func TestRingFailureFallsBack(t *testing.T) {
	srv := New(Config{}, upstream.NewSet(nil))
	defer srv.Shutdown(context.Background())
	l, err := newLoop(srv)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(l.epfd)
	defer unix.Close(l.wake)
	if l.ring == nil {
		t.Skip("no io_uring here")
	}
	fd := l.ring.fd
	l.ring.fd = -1 // every call on it fails
	defer unix.Close(fd)
	// Each econn's two descriptors are the ends of one socket pair: what
	// goes to one comes out of the other.
	var conns []*econn
	for range 3 {
		a, b := socketPair(t)
		c := &econn{loop: l, cfd: int32(a), bfd: int32(b)}
		conns = append(conns, c)
	}
	msg := []byte("through the fallback")
	ops := []ioOp{
		{c: conns[0], d: &conns[0].upf, kind: opWriteOut, p: msg}, // client to backend
		{c: conns[1], d: &conns[1].downf, kind: opWriteOut, p: msg},
		{c: conns[2], d: &conns[2].upf, kind: opWriteOwn, p: msg},
	}
	conns[1].downf.dstDead = true // dropped while it waited: not written
	l.perform(ops)
	if l.ring != nil {
		t.Fatal("the failed ring is still in use")
	}
	for i, op := range ops {
		switch {
		case i == 1:
			if !errors.Is(op.err, errSkipped) {
				t.Errorf("op %d, dropped: %d, %v, want skipped", i, op.n, op.err)
			}
		case op.n != len(msg) || op.err != nil:
			t.Errorf("op %d: %d, %v, want %d written", i, op.n, op.err, len(msg))
		}
	}
	buf := make([]byte, 64)
	if n, _ := unix.Read(int(conns[0].cfd), buf); string(buf[:max(n, 0)]) != string(msg) {
		t.Errorf("relayed bytes arrived as %q", buf[:max(n, 0)])
	}
	if n, _ := unix.Read(int(conns[1].bfd), buf); n > 0 {
		t.Errorf("the dropped write reached its socket: %q", buf[:n])
	}
}

// Many clients at once make the loops batch their reads and writes
// through the ring, and every echo comes back whole and in order.
func TestManyClientsThroughTheRing(t *testing.T) {
	if r, err := newIORing(); err != nil {
		t.Skipf("no io_uring here: %v", err)
	} else {
		r.close()
	}
	b := upstreamtest.Start(t)
	p := startProxy(t, Config{}, b)
	const clients, messages = 40, 100
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		c := dial(t, p, "/", nil)
		wg.Go(func() {
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			for m := range messages {
				msg := bytes.Repeat([]byte{byte(i), byte(m)}, 1+(i*m)%3000)
				if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
					errs <- err
					return
				}
				_, got, err := c.ReadMessage()
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, msg) {
					errs <- fmt.Errorf("client %d, message %d: %d bytes back for %d", i, m, len(got), len(msg))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Once the loops have stopped, their counts can be read.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p.srv.Shutdown(ctx)
	batches := 0
	for _, l := range p.srv.poll.loops {
		batches += l.batches
	}
	t.Logf("%d clients × %d echoes; the loops made %d ring calls", clients, messages, batches)
	if batches == 0 {
		t.Error("the loops never used their ring")
	}
}
