//go:build linux

package looptls

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// loopback accepts TCP connections on 127.0.0.1 as the loops do: raw
// non-blocking descriptors, the test's to close.
type loopback struct {
	t  testing.TB
	ln net.Listener
}

func listenLoopback(t testing.TB) *loopback {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &loopback{t: t, ln: ln}
}

// dial connects a client and returns it with the server's descriptor.
func (l *loopback) dial() (net.Conn, int) {
	l.t.Helper()
	c, err := net.Dial("tcp", l.ln.Addr().String())
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { c.Close() })
	s, err := l.ln.Accept()
	if err != nil {
		l.t.Fatal(err)
	}
	defer s.Close()
	f, err := s.(*net.TCPConn).File()
	if err != nil {
		l.t.Fatal(err)
	}
	fd, err := unix.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		l.t.Fatal(err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { unix.Close(fd) })
	return c, fd
}

// handshakeResults collects what the pool's done callbacks report.
type handshakeResults chan error

func (r handshakeResults) done(_ *Side, err error) { r <- err }

// serverConfig is a TLS server config with a fresh certificate.
func serverConfig(t testing.TB) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{testCertificate(t)}}
}

// A burst of clients that each take their time between flights all get
// through a pool of one slot: a handshake waiting for its client holds
// up no other. One at a time, 500 clients waiting 200ms each would take
// 100s.
func TestPoolBurstOfSlowClients(t *testing.T) {
	const clients, pause = 500, 200 * time.Millisecond
	lb := listenLoopback(t)
	pool := NewPool(1)
	defer pool.Close()
	cfg := serverConfig(t)
	results := make(handshakeResults, clients)
	conns := make([]net.Conn, clients)
	for i := range conns {
		c, fd := lb.dial()
		conns[i] = c
		if !pool.Server(fd, c.LocalAddr(), nil, cfg, time.Now().Add(time.Minute).UnixNano(), results.done) {
			t.Fatalf("the pool refused handshake %d", i)
		}
	}
	start := time.Now()
	var wg sync.WaitGroup
	clientErrs := make(chan error, clients)
	for _, c := range conns {
		wg.Go(func() {
			tc := tls.Client(&pausingConn{Conn: c, pause: pause}, &tls.Config{InsecureSkipVerify: true})
			clientErrs <- tc.Handshake()
		})
	}
	wg.Wait()
	close(clientErrs)
	for err := range clientErrs {
		if err != nil {
			t.Fatalf("client: %v", err)
		}
	}
	for range clients {
		select {
		case err := <-results:
			if err != nil {
				t.Fatalf("server: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("handshakes still under way after 20s")
		}
	}
	took := time.Since(start)
	t.Logf("%d handshakes, each client pausing %v before its second flight, in %v with one slot", clients, pause, took.Round(time.Millisecond))
	if took > 20*time.Second {
		t.Fatalf("%d handshakes took %v: the pool waits out its clients one at a time", clients, took)
	}
}

// pausingConn writes its first flight at once and waits pause before each
// later one, as a client far away.
type pausingConn struct {
	net.Conn
	pause  time.Duration
	writes int
}

func (c *pausingConn) Write(p []byte) (int, error) {
	if c.writes++; c.writes > 1 {
		time.Sleep(c.pause)
	}
	return c.Conn.Write(p)
}

// Close ends handshakes that wait for clients gone quiet, before their
// ClientHello or after it, at once, and leaves no goroutine behind.
func TestPoolCloseEndsWaitingHandshakes(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const quiet = 50 // of each kind
	lb := listenLoopback(t)
	pool := NewPool(1)
	cfg := serverConfig(t)
	results := make(handshakeResults, 2*quiet)
	stuck := make(chan struct{})
	var clients sync.WaitGroup
	for i := range 2 * quiet {
		c, fd := lb.dial()
		if !pool.Server(fd, c.LocalAddr(), nil, cfg, time.Now().Add(time.Minute).UnixNano(), results.done) {
			t.Fatalf("the pool refused handshake %d", i)
		}
		if i%2 == 0 {
			continue // says nothing at all
		}
		// Sends its ClientHello, then never its Finished.
		clients.Go(func() {
			tls.Client(&stuckConn{Conn: c, stuck: stuck}, &tls.Config{InsecureSkipVerify: true}).Handshake()
		})
	}
	defer func() {
		close(stuck)
		clients.Wait()
	}()
	waitFor(t, "every handshake to wait", func() bool {
		pool.mu.Lock()
		defer pool.mu.Unlock()
		return len(pool.waiting) == 2*quiet
	})
	waitFor(t, "no handshake to compute", func() bool {
		pool.slots.mu.Lock()
		defer pool.slots.mu.Unlock()
		return pool.slots.free == 1
	})
	time.Sleep(100 * time.Millisecond) // into the netpoller
	start := time.Now()
	pool.Close()
	if took := time.Since(start); took > time.Second {
		t.Errorf("Close took %v", took)
	}
	for range 2 * quiet {
		if err := <-results; !errors.Is(err, errPoolStopped) {
			t.Errorf("a waiting handshake ended with %v, want %v", err, errPoolStopped)
		}
	}
	if pool.Server(0, nil, nil, cfg, time.Now().Add(time.Minute).UnixNano(), results.done) {
		t.Error("a closed pool took a handshake")
	}
}

// stuckConn writes its first flight and blocks on the next until stuck
// closes, as a client that went quiet halfway.
type stuckConn struct {
	net.Conn
	stuck  chan struct{}
	writes int
}

func (c *stuckConn) Write(p []byte) (int, error) {
	if c.writes++; c.writes > 1 {
		<-c.stuck
		return 0, net.ErrClosed
	}
	return c.Conn.Write(p)
}

// Beyond its cap of handshakes in flight, the pool turns new ones away,
// and takes them again once one is done.
func TestPoolRefusesBeyondItsCap(t *testing.T) {
	lb := listenLoopback(t)
	pool := NewPool(1)
	defer pool.Close()
	pool.limit = 3
	cfg := serverConfig(t)
	results := make(handshakeResults, 8)
	deadline := time.Now().Add(time.Minute).UnixNano()
	var conns []net.Conn
	for i := range pool.limit {
		c, fd := lb.dial()
		conns = append(conns, c)
		if !pool.Server(fd, c.LocalAddr(), nil, cfg, deadline, results.done) {
			t.Fatalf("the pool refused handshake %d of its %d", i+1, pool.limit)
		}
	}
	c, fd := lb.dial()
	if pool.Server(fd, c.LocalAddr(), nil, cfg, deadline, results.done) {
		t.Fatalf("the pool took a handshake beyond its %d", pool.limit)
	}
	conns[0].Close() // its handshake fails, and makes room
	if err := <-results; err == nil {
		t.Fatal("a handshake whose client left succeeded")
	}
	waitFor(t, "room for a handshake", func() bool {
		pool.mu.Lock()
		defer pool.mu.Unlock()
		return pool.running < pool.limit
	})
	if !pool.Server(fd, c.LocalAddr(), nil, cfg, deadline, results.done) {
		t.Fatal("the pool refused a handshake with room for it")
	}
}

// A handshake whose client says nothing ends at its deadline.
func TestPoolHandshakeDeadline(t *testing.T) {
	lb := listenLoopback(t)
	pool := NewPool(1)
	defer pool.Close()
	results := make(handshakeResults, 1)
	c, fd := lb.dial()
	start := time.Now()
	if !pool.Server(fd, c.LocalAddr(), nil, serverConfig(t), start.Add(200*time.Millisecond).UnixNano(), results.done) {
		t.Fatal("the pool refused a handshake")
	}
	select {
	case err := <-results:
		if took := time.Since(start); took < 150*time.Millisecond || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("handshake ended after %v with %v, want about 200ms and a deadline", took, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handshake still waiting 5s past its deadline")
	}
}

// waitFor polls cond for up to 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
	}
}

// Under a flood, handshakes that have begun finish before new ones begin:
// with one slot and every client at once, the first handshakes are done
// long before the last one, rather than all of them finishing together
// once every ClientHello has had its turn.
func TestPoolFinishesWhatItBegan(t *testing.T) {
	const clients = 200
	lb := listenLoopback(t)
	pool := NewPool(1)
	defer pool.Close()
	cfg := serverConfig(t)
	// Every ClientHello waits in its socket before the first handshake
	// starts.
	fds := make([]int, clients)
	var wg sync.WaitGroup
	for i := range fds {
		var c net.Conn
		c, fds[i] = lb.dial()
		wg.Go(func() { tls.Client(c, &tls.Config{InsecureSkipVerify: true}).Handshake() })
	}
	time.Sleep(200 * time.Millisecond)
	done := make(chan time.Duration, clients)
	start := time.Now()
	for _, fd := range fds {
		if !pool.Server(fd, nil, nil, cfg, time.Now().Add(time.Minute).UnixNano(), func(_ *Side, err error) {
			if err != nil {
				t.Error(err)
			}
			done <- time.Since(start)
		}) {
			t.Fatal("the pool refused a handshake")
		}
	}
	wg.Wait()
	var took []time.Duration
	for range clients {
		took = append(took, <-done)
	}
	slices.Sort(took)
	median, last := took[clients/2], took[clients-1]
	t.Logf("%d handshakes at once, one slot: half done after %v, all after %v", clients, median.Round(time.Millisecond), last.Round(time.Millisecond))
	if median > last*17/20 { // behind every ClientHello, all finish within a few percent
		t.Errorf("half the handshakes done after %v, all after %v: the ones under way waited behind new ones", median, last)
	}
}

// A proxy out of descriptors still handshakes with the client it could
// accept, waiting for the socket itself, and still ends that wait when
// the pool closes.
func TestPoolWithoutADescriptorToSpare(t *testing.T) {
	lb := listenLoopback(t)
	pool := NewPool(1)
	cfg := serverConfig(t)
	deadline := time.Now().Add(time.Minute).UnixNano()
	c, fd := lb.dial()
	silent, silentFD := lb.dial()

	var saved unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &saved); err != nil {
		t.Fatal(err)
	}
	spare, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(spare)
	limit := saved
	limit.Cur = uint64(spare) // the lowest free descriptor is one too many
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &limit); err != nil {
		t.Fatal(err)
	}
	defer unix.Setrlimit(unix.RLIMIT_NOFILE, &saved)
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0); err != unix.EMFILE {
		t.Fatalf("a descriptor to spare after all: %v", err)
	}

	results := make(handshakeResults, 2)
	if !pool.Server(fd, c.LocalAddr(), nil, cfg, deadline, results.done) {
		t.Fatal("the pool refused a handshake")
	}
	clientErr := make(chan error, 1)
	go func() { clientErr <- tls.Client(c, &tls.Config{InsecureSkipVerify: true}).Handshake() }()
	if err := <-clientErr; err != nil {
		t.Fatalf("client: %v", err)
	}
	if err := <-results; err != nil {
		t.Fatalf("server: %v", err)
	}

	if !pool.Server(silentFD, silent.LocalAddr(), nil, cfg, deadline, results.done) {
		t.Fatal("the pool refused a handshake")
	}
	time.Sleep(100 * time.Millisecond) // into poll(2)
	start := time.Now()
	pool.Close()
	if err := <-results; !errors.Is(err, errPoolStopped) {
		t.Errorf("the waiting handshake ended with %v, want %v", err, errPoolStopped)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Close took %v", took)
	}
}
