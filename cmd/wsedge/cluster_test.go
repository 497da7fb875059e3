package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

// Gossip in these tests runs with profile "local", memberlist's timing for
// nodes on one host, and health checks twice a second, so that a cluster
// forms in about a second and a killed node is found dead within a few. The
// timeout is generous: the backends live in the test process, which the
// race detector slows.
const (
	gossipHealth = `
[health]
type = "http"
path = "/healthz"
interval = "500ms"
timeout = "400ms"
rise = 2
fall = 3
`
	// clusterWait bounds convergence; failure detection is measured
	// against a separate, logged bound.
	clusterWait = 15 * time.Second
)

// gossipPort returns a loopback port free for both TCP and UDP, as
// memberlist needs, so that other nodes can be told where to join.
func gossipPort(t *testing.T) int {
	t.Helper()
	for range 20 {
		tl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := tl.Addr().(*net.TCPAddr).Port
		ul, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		tl.Close()
		if err == nil {
			ul.Close()
			return port
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return 0
}

func gossipAddr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// gossipProxy starts `wsedge serve` with discovery on port, joining join,
// and no static backends, and waits until its gossip node is up.
func gossipProxy(t *testing.T, port int, extra string, join ...int) *proc {
	t.Helper()
	seeds := make([]string, len(join))
	for i, j := range join {
		seeds[i] = strconv.Quote(gossipAddr(j))
	}
	p := startWsedge(t, fmt.Sprintf("%s\n[discovery]\nbind = %q\njoin = [%s]\nprofile = \"local\"\n%s",
		gossipHealth, gossipAddr(port), strings.Join(seeds, ", "), extra))
	p.logs.wait(t, `"msg":"gossip started"`, 5*time.Second, fmt.Sprintf(`"addr":%q`, gossipAddr(port)))
	return p
}

// startAgent runs `wsedge agent` for backend on a free gossip port,
// joining join, and waits until it has started. It is stopped with
// SIGTERM at cleanup.
func startAgent(t *testing.T, backend string, join int, args ...string) *proc {
	t.Helper()
	all := append([]string{"agent",
		"--join", gossipAddr(join),
		"--advertise", backend,
		"--bind", gossipAddr(gossipPort(t)),
		"--profile", "local",
		"--check-interval", "100ms",
		"--grace", "200ms",
	}, args...)
	p := runWsedge(t, all...)
	t.Cleanup(func() { p.stop(t) })
	p.logs.wait(t, `"msg":"agent started"`, 10*time.Second)
	return p
}

// ringOf returns the addresses in p's ring, sorted: the healthy members of
// /debug/ring, which also lists known backends outside the ring.
func ringOf(t *testing.T, p *proc) []string {
	t.Helper()
	var ring struct {
		Members []struct{ Addr, State string }
	}
	getJSON(t, "http://"+p.admin+"/debug/ring", &ring)
	out := []string{}
	for _, m := range ring.Members {
		if m.State == "healthy" {
			out = append(out, m.Addr)
		}
	}
	slices.Sort(out)
	return out
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, res.Status)
	}
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// waitRings waits until every proxy's ring holds exactly want, and
// returns how long that took.
func waitRings(t *testing.T, proxies []*proc, want []string, within time.Duration) time.Duration {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	start := time.Now()
	for {
		agree := true
		var got []string
		for _, p := range proxies {
			if got = ringOf(t, p); !slices.Equal(got, want) {
				agree = false
				break
			}
		}
		if agree {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("rings not %v within %v; one has %v", want, within, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// clusterKeys are client IPs, the proxies' routing key.
func clusterKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("10.%d.%d.%d", i>>16&0xff, i>>8&0xff, i&0xff)
	}
	return keys
}

// routes asks every proxy where each key goes (/debug/ring?key=), fails
// the test unless all proxies agree, and returns the routes.
func routes(t *testing.T, proxies []*proc, keys []string) map[string]string {
	t.Helper()
	per := make([]map[string]string, len(proxies))
	errc := make(chan error, len(proxies))
	for i, p := range proxies {
		go func() {
			m := make(map[string]string, len(keys))
			c := http.Client{Timeout: 5 * time.Second}
			for _, k := range keys {
				res, err := c.Get("http://" + p.admin + "/debug/ring?key=" + k)
				if err != nil {
					errc <- err
					return
				}
				var ex struct{ Backend string }
				err = json.NewDecoder(res.Body).Decode(&ex)
				res.Body.Close()
				if err != nil || ex.Backend == "" {
					errc <- fmt.Errorf("route of %s on %s: %s, %v", k, p.admin, res.Status, err)
					return
				}
				m[k] = ex.Backend
			}
			per[i] = m
			errc <- nil
		}()
	}
	for range proxies {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i < len(per); i++ {
		for _, k := range keys {
			if per[i][k] != per[0][k] {
				t.Fatalf("key %s: proxy 0 routes it to %s, proxy %d to %s", k, per[0][k], i, per[i][k])
			}
		}
	}
	return per[0]
}

// Three proxies and five agents on loopback: every proxy routes every key
// alike; a sixth agent takes about a sixth of the keys, from every proxy
// alike; a killed agent leaves every ring within memberlist's failure
// detection time, and only its keys move.
func TestClusterAgreement(t *testing.T) {
	ports := []int{gossipPort(t), gossipPort(t), gossipPort(t)}
	var proxies []*proc
	for i, port := range ports {
		var others []int
		for j, q := range ports {
			if j != i {
				others = append(others, q)
			}
		}
		proxies = append(proxies, gossipProxy(t, port, "", others...))
	}

	var backends []*upstreamtest.Backend
	var agents []*proc
	var want []string
	start := time.Now()
	for i := range 5 {
		b := upstreamtest.Start(t, upstreamtest.WithName(fmt.Sprintf("app%d", i)))
		backends = append(backends, b)
		want = append(want, b.Addr)
		agents = append(agents, startAgent(t, b.Addr, ports[i%3], "--health", b.URL()+"/healthz"))
	}
	waitRings(t, proxies, want, clusterWait)
	t.Logf("3 proxies and 5 agents: every ring complete %v after the first agent started", time.Since(start).Round(time.Millisecond))

	keys := clusterKeys(1000)
	before := routes(t, proxies, keys)
	perBackend := make(map[string]int)
	for _, b := range before {
		perBackend[b]++
	}
	for _, b := range want {
		if n := perBackend[b]; n < 100 || n > 330 {
			t.Errorf("%s owns %d of 1000 keys, want about 200", b, n)
		}
	}

	sixth := upstreamtest.Start(t, upstreamtest.WithName("app5"))
	start = time.Now()
	sixthAgent := startAgent(t, sixth.Addr, ports[1], "--health", sixth.URL()+"/healthz")
	waitRings(t, proxies, append(slices.Clone(want), sixth.Addr), clusterWait)
	t.Logf("sixth agent in every ring after %v", time.Since(start).Round(time.Millisecond))
	after := routes(t, proxies, keys)
	moved := 0
	for _, k := range keys {
		if after[k] == before[k] {
			continue
		}
		moved++
		if after[k] != sixth.Addr {
			t.Errorf("key %s moved from %s to %s: only moves to the new backend are allowed", k, before[k], after[k])
		}
	}
	t.Logf("adding a 6th backend moved %d of %d keys (%.1f%%; ideal 1/6 = 16.7%%), identically in all 3 proxies",
		moved, len(keys), 100*float64(moved)/float64(len(keys)))
	if frac := float64(moved) / float64(len(keys)); frac < 0.09 || frac > 0.26 {
		t.Errorf("moved %.1f%% of keys, want about 1/6", 100*frac)
	}

	// At the end, stop every process at once rather than one after the
	// other: each drains and leaves in about a second.
	t.Cleanup(func() {
		for _, p := range slices.Concat(agents, proxies, []*proc{sixthAgent}) {
			p.cmd.Process.Signal(syscall.SIGTERM) // an error means it has exited
		}
	})

	// SIGKILL: no leave, no draining. Its backend still answers the
	// proxies' checks; only gossip's failure detector can tell.
	victim := agents[2]
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	remaining := slices.DeleteFunc(append(slices.Clone(want), sixth.Addr), func(a string) bool { return a == backends[2].Addr })
	took := waitRings(t, proxies, remaining, 20*time.Second)
	t.Logf("SIGKILLed agent out of all 3 rings after %v (profile local: probes every 500ms, suspicion 3 probes)", time.Since(killed).Round(time.Millisecond))
	if took > 8*time.Second {
		t.Errorf("death took %v to notice, beyond memberlist's local failure detection", took)
	}
	final := routes(t, proxies, keys)
	for _, k := range keys {
		if after[k] != backends[2].Addr && final[k] != after[k] {
			t.Errorf("key %s moved from %s to %s though its backend stayed", k, after[k], final[k])
		}
	}
}

// gossipKey writes a gossip key file and returns its path.
func gossipKey(t *testing.T, seed byte) string {
	t.Helper()
	key := make([]byte, 32)
	for i := range key {
		key[i] = seed + byte(i)
	}
	path := filepath.Join(t.TempDir(), "gossip.key")
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Encrypted gossip: an agent with the proxies' key joins, one with another
// key never does.
func TestClusterEncryptedGossip(t *testing.T) {
	key := gossipKey(t, 1)
	port := gossipPort(t)
	proxy := gossipProxy(t, port, fmt.Sprintf("secret_file = %q\n", key))
	proxy.logs.wait(t, `"msg":"gossip started"`, 10*time.Second, `"encrypted":true`)

	good := upstreamtest.Start(t)
	startAgent(t, good.Addr, port, "--secret-file", key)
	waitRings(t, []*proc{proxy}, []string{good.Addr}, clusterWait)

	bad := upstreamtest.Start(t)
	intruder := startAgent(t, bad.Addr, port, "--secret-file", gossipKey(t, 2))
	intruder.logs.wait(t, "gossip join failed", 10*time.Second)
	time.Sleep(2 * time.Second) // time enough for gossip to spread, had it got in
	if got := ringOf(t, proxy); !slices.Equal(got, []string{good.Addr}) {
		t.Errorf("ring = %v, want only the agent with the key", got)
	}
}
