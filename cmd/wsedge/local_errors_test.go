package main

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

// A proxy out of file descriptors answers the clients it cannot serve
// 503 with Retry-After, counts it as its own trouble, and blames no
// backend: neither the failed dials nor the health checks that fail for
// the same reason take the backend out of the ring, however fast they
// run.
func TestLocalErrorsNeverBlameBackend(t *testing.T) {
	b := upstreamtest.Start(t)
	p := startWsedge(t, "[health]\ntype = \"tcp\"\ninterval = \"100ms\"\ntimeout = \"50ms\"\nrise = 1\nfall = 1\n"+upstreams(b))
	pid := p.cmd.Process.Pid
	warm, _ := wsDial(t, p, "/", nil)
	askName(t, warm)
	warm.Close()
	waitBackendConns(t, b, 0, 5*time.Second)

	// One descriptor to spare: a client can be accepted, but the socket
	// towards its backend cannot be opened.
	var limit unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &limit); err != nil {
		t.Fatal(err)
	}
	saved := limit
	limit.Cur = uint64(lowestFreeFD(t, pid) + 1)
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &limit, nil); err != nil {
		t.Fatal(err)
	}
	restore := func() {
		if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &saved, nil); err != nil {
			t.Fatal(err)
		}
	}
	defer restore()

	const burst = 20
	var mu sync.Mutex
	statuses := map[int]int{}
	retryAfter := 0
	var wg sync.WaitGroup
	for range burst {
		wg.Go(func() {
			c := dialFrom(t, p)
			defer c.Close()
			io.WriteString(c, upgradeHead(""))
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				statuses[0]++
				return
			}
			statuses[res.StatusCode]++
			if res.Header.Get("Retry-After") != "" {
				retryAfter++
			}
		})
	}
	wg.Wait()
	// A client that says nothing holds the spare descriptor: ten rounds of
	// health checks fail to open a socket meanwhile.
	silent := dialFrom(t, p)
	time.Sleep(time.Second)
	silent.Close()
	restore()

	t.Logf("answers to %d clients while out of descriptors: %v", burst, statuses)
	if statuses[http.StatusServiceUnavailable] == 0 || retryAfter < statuses[http.StatusServiceUnavailable] {
		t.Errorf("want 503 with Retry-After for the clients the proxy could not serve; got %v, %d with Retry-After", statuses, retryAfter)
	}
	if statuses[http.StatusBadGateway] > 0 {
		t.Errorf("%d clients were told the backend failed (502)", statuses[http.StatusBadGateway])
	}
	fams := scrape(t, p)
	if v := counterValue(t, fams, "wsedge_local_errors_total", "kind", "descriptors"); v < 1 {
		t.Errorf("wsedge_local_errors_total{kind=descriptors} = %v", v)
	}
	if v, _ := sampleOf(fams, "wsedge_backend_transitions_total", "backend", b.Addr, "state", "unhealthy"); v > 0 {
		t.Errorf("the backend went unhealthy %v times while the proxy was out of descriptors", v)
	}
	if ring := ringOf(t, p); len(ring) != 1 || ring[0] != b.Addr {
		t.Errorf("ring = %v, want the backend still in it", ring)
	}
	if n := p.logs.count("proxy out of resources"); n == 0 || n > 3 {
		t.Errorf("%d log lines about the proxy's own trouble over about a second; want one or two", n)
	}
	c, _ := wsDial(t, p, "/", nil)
	askName(t, c)
	for _, line := range p.logs.all() {
		if strings.Contains(line, "backend state changed") && strings.Contains(line, `"to":"unhealthy"`) {
			t.Errorf("logged: %s", line)
		}
	}
}
