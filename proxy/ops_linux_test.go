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

// Many clients at once make the loops batch their reads and writes
// through the ring, and every echo comes back whole and in order.
func TestManyClientsThroughTheRing(t *testing.T) {
	b := upstreamtest.Start(t)
	p := startProxy(t, Config{}, b)
	loops, err := p.srv.poll.all()
	if err != nil {
		t.Fatal(err)
	}
	if err := loops[0].RingErr(); err != nil {
		t.Skipf("no io_uring here: %v", err)
	}
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
	for _, l := range loops {
		batches += l.RingCalls()
	}
	t.Logf("%d clients × %d echoes; the loops made %d ring calls", clients, messages, batches)
	if batches == 0 {
		t.Error("the loops never used their ring")
	}
}

// An operation no longer to be done when the loop gets to it, because its
// connection ended or its destination was dropped, is skipped: it reaches
// no socket, and the others of the batch are done.
func TestSkippedOperations(t *testing.T) {
	srv := New(Config{}, upstream.NewSet(nil), WithoutIOUring())
	defer srv.Shutdown(context.Background())
	l, err := newLoop(srv)
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan struct{})
	go func() { defer close(ran); l.Run() }()
	defer func() { l.Post(l.Stop); <-ran }()
	var conns []*econn
	for range 3 {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
		// Each econn's two descriptors are the ends of one socket pair:
		// what goes to one comes out of the other.
		conns = append(conns, &econn{loop: l, cfd: int32(fds[0]), bfd: int32(fds[1])})
	}
	msg := []byte("written")
	performed := make(chan []ioOp)
	l.Post(func() {
		l.queue(conns[0], &conns[0].upf, opWriteOut, msg, nil) // client to backend
		l.queue(conns[1], &conns[1].downf, opWriteOut, msg, nil)
		l.queue(conns[2], &conns[2].upf, opWriteOwn, msg, nil)
		conns[1].downf.dstDead = true // dropped while it waited
		conns[2].gone = true          // ended while it waited
		ops := l.ops
		l.ops = nil
		l.perform(ops)
		performed <- ops
	})
	ops := <-performed
	for i, op := range ops {
		switch {
		case i > 0:
			if !errors.Is(op.Err, errSkipped) {
				t.Errorf("op %d, no longer to be done: %d, %v, want skipped", i, op.N, op.Err)
			}
		case op.N != len(msg) || op.Err != nil:
			t.Errorf("op %d: %d, %v, want %d written", i, op.N, op.Err, len(msg))
		}
	}
	buf := make([]byte, 64)
	if n, _ := unix.Read(int(conns[0].cfd), buf); string(buf[:max(n, 0)]) != string(msg) {
		t.Errorf("relayed bytes arrived as %q", buf[:max(n, 0)])
	}
	for _, c := range conns[1:] {
		for _, fd := range []int32{c.cfd, c.bfd} {
			if n, _ := unix.Read(int(fd), buf); n > 0 {
				t.Errorf("a skipped write reached its socket: %q", buf[:n])
			}
		}
	}
}
