package main

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

func TestAgentFlags(t *testing.T) {
	tests := []struct {
		name string
		give []string
		want string // in the error printed
	}{
		{"no join", []string{"--advertise", "127.0.0.1:9001"}, "--join is required"},
		{"no advertise", []string{"--join", "127.0.0.1:7946"}, "--advertise is required"},
		{"advertise without port", []string{"--join", "127.0.0.1:7946", "--advertise", "app"}, "want host:port"},
		{"weight", []string{"--join", "127.0.0.1:7946", "--advertise", "127.0.0.1:9001", "--weight", "0"}, "--weight 0 out of range"},
		{"health scheme", []string{"--join", "127.0.0.1:7946", "--advertise", "127.0.0.1:9001", "--health", "ftp://app/"}, "want http, https, ws, wss or tcp"},
		{"profile", []string{"--join", "127.0.0.1:7946", "--advertise", "127.0.0.1:9001", "--profile", "fast"}, `gossip profile "fast"`},
		{"missing key file", []string{"--join", "127.0.0.1:7946", "--advertise", "127.0.0.1:9001", "--secret-file", "/nonexistent/key"}, "gossip secret"},
		{"stray argument", []string{"--join", "127.0.0.1:7946", "--advertise", "127.0.0.1:9001", "extra"}, `unexpected argument "extra"`},
		{"advertise with a space", []string{"--join", "127.0.0.1:7946", "--advertise", "app 1:9001"}, "want an IP address or a DNS name"},
		{"default bind without a key", []string{"--join", "127.0.0.1:7946", "--advertise", "127.0.0.1:9001"}, "head -c 32 /dev/urandom | base64 > gossip.key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := runWsedge(t, append([]string{"agent"}, tt.give...)...)
			if code := p.waitExit(t, 10*time.Second); code != 1 {
				t.Errorf("exit code %d, want 1", code)
			}
			if log := strings.Join(p.logs.all(), "\n"); !strings.Contains(log, tt.want) {
				t.Errorf("output %q does not say %q", log, tt.want)
			}
		})
	}
}

// switchableHealth serves 200 while ok holds, 503 otherwise.
func switchableHealth(t *testing.T) (string, *atomic.Bool) {
	ok := new(atomic.Bool)
	ok.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ok.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/healthz", ok
}

// An agent puts its backend in the ring, takes it out while its local
// check fails, and on SIGTERM advertises draining, waits its grace period,
// leaves and exits 0.
func TestAgentLifecycle(t *testing.T) {
	port := gossipPort(t)
	proxy := gossipProxy(t, port, "")
	b := upstreamtest.Start(t)
	url, healthy := switchableHealth(t)

	start := time.Now()
	agent := startAgent(t, b.Addr, port, "--health", url, "--weight", "3", "--grace", "2s")
	waitRings(t, []*proc{proxy}, []string{b.Addr}, clusterWait)
	t.Logf("agent start to ring: %v", time.Since(start).Round(time.Millisecond))

	healthy.Store(false)
	start = time.Now()
	waitRings(t, []*proc{proxy}, []string{}, clusterWait)
	t.Logf("local check failing to out of the ring: %v (3 checks at 100ms, then gossip)", time.Since(start).Round(time.Millisecond))
	agent.logs.wait(t, `"msg":"backend state changed"`, time.Second, `"to":"draining"`)

	healthy.Store(true)
	waitRings(t, []*proc{proxy}, []string{b.Addr}, clusterWait)
	if n := agent.logs.count(`"msg":"backend state changed"`); n != 3 {
		t.Errorf("%d state change lines, want 3 (draining until the first passes, then draining, alive)", n)
	}

	agent.signal(t, syscall.SIGTERM)
	start = time.Now()
	waitRings(t, []*proc{proxy}, []string{}, 5*time.Second)
	outOfRing := time.Since(start)
	if code := agent.waitExit(t, 10*time.Second); code != 0 {
		t.Errorf("agent exit code %d after SIGTERM, want 0", code)
	}
	exited := time.Since(start)
	t.Logf("SIGTERM: out of the ring after %v, agent exited after %v (grace 2s)", outOfRing.Round(time.Millisecond), exited.Round(time.Millisecond))
	if outOfRing > 1500*time.Millisecond {
		t.Errorf("backend left the ring %v after SIGTERM: it must drain at once, not after the grace period", outOfRing)
	}
	if exited < 2*time.Second {
		t.Errorf("agent exited %v after SIGTERM, before its 2s grace period", exited)
	}
	agent.logs.wait(t, `"msg":"left the gossip cluster"`, time.Second)
}

// A gossip backend enters the ring only once the proxy's own checks pass,
// whatever its agent advertises.
func TestAgentBackendMustPassProxyChecks(t *testing.T) {
	port := gossipPort(t)
	proxy := gossipProxy(t, port, "")
	b := upstreamtest.Start(t)
	addr := b.Addr
	b.Close() // nothing answers there yet
	startAgent(t, addr, port)
	time.Sleep(time.Second)
	if got := ringOf(t, proxy); len(got) != 0 {
		t.Fatalf("ring = %v while the backend is down, want empty", got)
	}
	upstreamtest.Start(t, upstreamtest.WithAddr(addr))
	waitRings(t, []*proc{proxy}, []string{addr}, clusterWait)
	if got := ringOf(t, proxy); !slices.Equal(got, []string{addr}) {
		t.Errorf("ring = %v", got)
	}
}
