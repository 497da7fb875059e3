//go:build linux

package looptls

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// slowPeer is a socket pair whose writing end, a transport's, has a small
// send buffer, and whose other end reads everything, a little at a time.
type slowPeer struct {
	tr   *transport
	sent []byte
	got  chan []byte
}

func newSlowPeer(t *testing.T, bufs *pendingBufs) *slowPeer {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.SetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<10); err != nil {
		t.Fatal(err)
	}
	unix.SetNonblock(fds[1], false)
	r := os.NewFile(uintptr(fds[1]), "peer")
	sp := &slowPeer{tr: &transport{fd: fds[0], bufs: bufs}, got: make(chan []byte, 1)}
	go func() {
		defer r.Close()
		var got []byte
		buf := make([]byte, 16<<10)
		for {
			n, err := r.Read(buf[:1+rand.IntN(len(buf))])
			got = append(got, buf[:n]...)
			if err == io.EOF {
				sp.got <- got
				return
			}
			if err != nil {
				sp.got <- nil
				return
			}
		}
	}()
	return sp
}

// write writes p through the transport, corked or not, as a Side does.
func (sp *slowPeer) write(t *testing.T, p []byte, corked bool) {
	t.Helper()
	sp.tr.corked = corked
	if n, err := sp.tr.Write(p); n != len(p) || err != nil {
		t.Fatalf("write = %d, %v", n, err)
	}
	sp.sent = append(sp.sent, p...)
}

// flush flushes once, and checks that a transport that holds nothing more
// has given its buffer back.
func (sp *slowPeer) flush(t *testing.T) bool {
	t.Helper()
	done, err := sp.tr.flush()
	if err != nil {
		t.Fatal(err)
	}
	if done != (sp.tr.pending == nil) {
		t.Fatalf("flush says done %v with pending %v", done, sp.tr.pending != nil)
	}
	return done
}

// Two transports that share the pool, each behind a peer slower than its
// writes, hold what their sockets do not take in borrowed buffers and give
// them back once flushed: whatever the order of writes, partial writes
// and flushes, each peer receives exactly its stream, so no buffer was
// lent to both at once.
func TestTransportHoldsInBorrowedBuffers(t *testing.T) {
	var bufs pendingBufs
	peers := []*slowPeer{newSlowPeer(t, &bufs), newSlowPeer(t, &bufs)}
	held := 0
	for i := range 500 {
		sp := peers[rand.IntN(len(peers))]
		if rand.IntN(3) > 0 {
			p := make([]byte, 1+rand.IntN(40<<10))
			for j := range p {
				p[j] = byte(i + j)
			}
			sp.write(t, p, rand.IntN(2) == 0)
			if sp.tr.held() {
				held++
			}
		} else {
			sp.flush(t)
		}
	}
	if held == 0 {
		t.Fatal("every write went out whole: nothing was held")
	}
	for _, sp := range peers {
		for deadline := time.Now().Add(10 * time.Second); !sp.flush(t); time.Sleep(100 * time.Microsecond) {
			if time.Now().After(deadline) {
				t.Fatal("still holding bytes after 10s")
			}
		}
		unix.Close(sp.tr.fd)
		if got := <-sp.got; !bytes.Equal(got, sp.sent) {
			t.Fatalf("the peer received %d bytes, not the %d sent", len(got), len(sp.sent))
		}
	}
}

// A buffer that grew past pendingKeep behind a peer far behind is not
// lent again; one that did not comes back empty.
func TestPendingBufsKeepNoOversizeBuffer(t *testing.T) {
	var bufs pendingBufs
	big := bufs.get()
	*big = append(*big, make([]byte, pendingKeep+1)...)
	bufs.put(big)
	for range 100 {
		b := bufs.get()
		if cap(*b) > pendingKeep || len(*b) != 0 {
			t.Fatalf("lent a buffer of len %d, cap %d", len(*b), cap(*b))
		}
		*b = append(*b, "some ciphertext"...)
		bufs.put(b)
	}
}
