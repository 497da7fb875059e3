//go:build linux

package evloop

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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

// A ring that fails in the middle of a batch is set aside: that batch's
// operations and the next ones are done with plain system calls, and an
// operation marked done beforehand is left alone.
func TestRingFailureFallsBack(t *testing.T) {
	l, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(l.epfd)
	defer unix.Close(l.wake)
	if l.ring == nil {
		t.Skipf("no io_uring here: %v", l.RingErr())
	}
	fd := l.ring.fd
	l.ring.fd = -1 // every call on it fails
	defer unix.Close(fd)
	var ends [3][2]int // each a socket pair: what goes to one comes out of the other
	for i := range ends {
		ends[i][0], ends[i][1] = socketPair(t)
	}
	msg := []byte("through the fallback")
	ops := []IO[int]{
		{FD: ends[0][0], Write: true, P: msg, Of: 0},
		{FD: ends[1][0], Write: true, P: msg, Of: 1, Done: true, Err: errSkippedHere}, // dropped while it waited
		{FD: ends[2][0], Write: true, P: msg, Of: 2},
	}
	Do(l, ops)
	if l.ring != nil {
		t.Fatal("the failed ring is still in use")
	}
	for i, op := range ops {
		switch {
		case op.Of != i:
			t.Errorf("op %d came back as %d", i, op.Of)
		case i == 1:
			if !errors.Is(op.Err, errSkippedHere) {
				t.Errorf("op %d, dropped: %d, %v, want left alone", i, op.N, op.Err)
			}
		case op.N != len(msg) || op.Err != nil:
			t.Errorf("op %d: %d, %v, want %d written", i, op.N, op.Err, len(msg))
		}
	}
	buf := make([]byte, 64)
	if n, _ := unix.Read(ends[0][1], buf); string(buf[:max(n, 0)]) != string(msg) {
		t.Errorf("written bytes arrived as %q", buf[:max(n, 0)])
	}
	if n, _ := unix.Read(ends[1][1], buf); n > 0 {
		t.Errorf("the dropped write reached its socket: %q", buf[:n])
	}
}

var errSkippedHere = errors.New("skipped by its owner")

// BenchmarkIORing is one batch of 16 writes, then one of 16 reads, of
// 64 bytes on as many sockets: through the ring, a system call a batch;
// without, a system call an operation.
func BenchmarkIORing(b *testing.B) {
	const pairs = 16
	var a, z [pairs]int
	for i := range pairs {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		a[i], z[i] = fds[0], fds[1]
		b.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	}
	msg := make([]byte, 64)
	bufs := make([][]byte, pairs)
	for i := range bufs {
		bufs[i] = make([]byte, 64)
	}
	b.Run("ring", func(b *testing.B) {
		r, err := newIORing()
		if err != nil {
			b.Skip(err)
		}
		defer r.close()
		b.ReportAllocs()
		for b.Loop() {
			for i := range pairs {
				r.push(ioOpSend, a[i], msg, ioSendFlags, uint64(i))
			}
			r.submit(pairs)
			for {
				if _, ok := r.reap(); !ok {
					break
				}
			}
			for i := range pairs {
				r.push(ioOpRecv, z[i], bufs[i], ioRecvFlags, uint64(i))
			}
			r.submit(pairs)
			for {
				if _, ok := r.reap(); !ok {
					break
				}
			}
		}
	})
	b.Run("syscalls", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for i := range pairs {
				WriteFD(a[i], msg)
			}
			for i := range pairs {
				ReadFD(z[i], bufs[i])
			}
		}
	})
}
