package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
)

// Backends that come and go by gossip leave nothing behind them in the
// proxy that it does not mean to keep. After 1,000 distinct backends
// joined the ring and left, /metrics names none of them but in
// wsedge_backend_transitions_total, whose series of a departed backend
// stay for 5 minutes so that scrapes see their last counts (the proxy
// package tests that they then go, and the heap with them, on a moved
// clock); the rest of /metrics is back within 10% of where it started, and
// the goroutines to what they were. The heap is logged, with what those
// series take of it: besides them it holds memberlist's, the nodes that
// left (for 15s) and its queue of their last messages, which a proxy alone
// in its cluster has nobody to gossip to.
func TestBackendChurnLeavesNothingBehind(t *testing.T) {
	const (
		total = 1000
		batch = 100 // backends alive at once: a few hundred descriptors
	)
	port := gossipPort(t)
	p := startWsedge(t, fmt.Sprintf(`
[health]
type = "tcp"
interval = "1s"
timeout = "500ms"
rise = 1
fall = 3

[discovery]
bind = %q
profile = "local"
`, gossipAddr(port)))
	p.logs.wait(t, `"msg":"gossip started"`, 5*time.Second)

	// Where it starts: after a first batch came and went, so that what the
	// first of anything allocates once (buffers, pools, tables sized for a
	// batch) is in both measures.
	departed := map[string]bool{}
	churn(t, p, port, "warm", batch, departed)
	waitForgotten(t, p, departed)
	before := footprint(t, p)

	start := time.Now()
	for i := range total / batch {
		churn(t, p, port, strconv.Itoa(i), batch, departed)
	}
	t.Logf("%d backends joined the ring and left in %v, %d at a time", total, time.Since(start).Round(time.Millisecond), batch)
	waitForgotten(t, p, departed)
	after := footprint(t, p)
	t.Logf("before: %s", before)
	t.Logf("after:  %s", after)

	if d := float64(after.size - before.size); d > 0.1*float64(before.size) || d < -0.1*float64(before.size) {
		t.Errorf("/metrics besides transitions: %d bytes, %d at the start", after.size, before.size)
	}
	if after.goroutines > before.goroutines+5 { // a request or two under way; not one per backend
		t.Errorf("%v goroutines, %v at the start", after.goroutines, before.goroutines)
	}
	// A backend's transitions: rising, healthy, draining.
	if max := before.series + 3*total; after.series > max {
		t.Errorf("%d transition series, want at most %d", after.series, max)
	}
	for _, line := range after.lines {
		if strings.HasPrefix(line, "wsedge_backend_transitions_total{") {
			continue
		}
		for a := range departed {
			if strings.Contains(line, `"`+a+`"`) {
				t.Fatalf("/metrics still names departed backend %s: %s", a, line)
			}
		}
	}
}

// churn has n new backends join p's ring by gossip, then drain and leave,
// and adds their addresses to departed.
func churn(t *testing.T, p *proc, port int, name string, n int, departed map[string]bool) {
	t.Helper()
	nodes := make([]*churnNode, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() {
			nodes[i], errs[i] = startChurnNode(fmt.Sprintf("churn-%d-%s-%d", port, name, i), gossipAddr(port))
		})
	}
	wg.Wait()
	addrs := make([]string, 0, n)
	for i, nd := range nodes {
		if nd != nil {
			t.Cleanup(nd.leave)
			addrs = append(addrs, nd.addr())
		}
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
	}
	waitInRing(t, p, addrs, clusterWait)
	// As an agent does, each drains, and leaves once the drain is known.
	for _, nd := range nodes {
		wg.Go(nd.drain)
	}
	wg.Wait()
	waitInRing(t, p, nil, clusterWait)
	for _, nd := range nodes {
		wg.Go(nd.leave)
	}
	wg.Wait()
	for _, a := range addrs {
		departed[a] = true
	}
}

// waitForgotten waits until p lists none of departed among its backends:
// a backend whose node drained and then left is forgotten at once, unlike
// a dead one.
func waitForgotten(t *testing.T, p *proc, departed map[string]bool) {
	t.Helper()
	deadline := time.Now().Add(clusterWait)
	for {
		var ring struct{ Members []struct{ Addr string } }
		getJSON(t, "http://"+p.admin+"/debug/ring", &ring)
		known := 0
		for _, m := range ring.Members {
			if departed[m.Addr] {
				known++
			}
		}
		if known == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the proxy still knows %d departed backends %v after they left", known, clusterWait)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// churnNode is a backend and the gossip node that announces it, as
// `wsedge agent` does: memberlist with wsedge's label, advertising the
// metadata of upstream/meta.go.
type churnNode struct {
	ln       net.Listener // takes the proxy's TCP health checks
	accepted chan struct{}
	ml       *memberlist.Memberlist
	meta     atomic.Pointer[[]byte]
	join     string
	role     string
	left     sync.Once
}

// startChurnNode starts a backend and its gossip node, joined to the
// node at join.
func startChurnNode(name, join string) (*churnNode, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	nd := &churnNode{ln: ln, accepted: make(chan struct{}), join: join}
	go func() {
		defer close(nd.accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	nd.setMeta("alive")
	c := memberlist.DefaultLocalConfig()
	c.Name = name
	c.BindAddr, c.BindPort = "127.0.0.1", 0
	c.Label = "wsedge" // the proxy's: it drops packets labelled otherwise
	c.Delegate = (*churnMeta)(&nd.meta)
	c.LogOutput = io.Discard
	// A hundred nodes at once in the test process, each with memberlist's
	// own probes and gossip, would starve the proxy of CPU: these only
	// answer the proxy's, and push their own news to it (a push/pull
	// exchange, as memberlist does every few seconds).
	c.ProbeInterval, c.GossipInterval, c.PushPullInterval = 0, 0, 0
	if nd.ml, err = memberlist.Create(c); err != nil {
		ln.Close()
		<-nd.accepted
		return nil, fmt.Errorf("node %s: %w", name, err)
	}
	if err := nd.push(); err != nil {
		nd.leave()
		return nil, fmt.Errorf("node %s: join: %w", name, err)
	}
	return nd, nil
}

func (nd *churnNode) addr() string { return nd.ln.Addr().String() }

func (nd *churnNode) setMeta(state string) {
	b := fmt.Appendf(nil, `{"v":1,"role":"backend","addr":%q,"weight":1,"state":%q}`, nd.addr(), state)
	if nd.role == "proxy" {
		b = fmt.Appendf(nil, `{"v":1,"role":"proxy","state":%q}`, state)
	}
	nd.meta.Store(&b)
}

// drain advertises draining and pushes the news to the proxy.
func (nd *churnNode) drain() {
	nd.setMeta("draining")
	nd.ml.UpdateNode(time.Nanosecond) // queues the news; its error is the wait timing out
	nd.push()
}

// leave leaves the cluster, pushes that to the proxy too, and stops.
func (nd *churnNode) leave() {
	nd.left.Do(func() {
		nd.ml.Leave(time.Nanosecond)
		nd.push()
		nd.ml.Shutdown()
		nd.ln.Close()
		<-nd.accepted
	})
}

// push sends the node's state to the proxy, trying again while the
// proxy, busy with a hundred others, does not take it in time.
func (nd *churnNode) push() error {
	var err error
	for range 5 {
		if _, err = nd.ml.Join([]string{nd.join}); err == nil {
			return nil
		}
	}
	return err
}

// churnMeta is a memberlist delegate advertising a node's metadata.
type churnMeta atomic.Pointer[[]byte]

func (m *churnMeta) NodeMeta(int) []byte {
	return *(*atomic.Pointer[[]byte])(m).Load()
}
func (*churnMeta) NotifyMsg([]byte)                {}
func (*churnMeta) GetBroadcasts(int, int) [][]byte { return nil }
func (*churnMeta) LocalState(bool) []byte          { return nil }
func (*churnMeta) MergeRemoteState([]byte, bool)   {}

// metricsFootprint is what the proxy's state costs.
type metricsFootprint struct {
	lines      []string // of /metrics
	size       int      // bytes of /metrics but wsedge_backend_transitions_total
	series     int      // of wsedge_backend_transitions_total
	goroutines float64
	heapInuse  float64 // right after a collection
	heapAlloc  float64
	// kept is the heap that the transition series, and when each of their
	// backends left, take: what the proxy keeps by design for a while.
	kept float64
}

func (f metricsFootprint) String() string {
	return fmt.Sprintf("/metrics %d bytes besides %d transition series, %.0f goroutines; heap %.2f MiB in use, %.2f MiB live, %.2f MiB of it those series",
		f.size, f.series, f.goroutines, f.heapInuse/(1<<20), f.heapAlloc/(1<<20), f.kept/(1<<20))
}

// footprint reads p's heap right after a collection, from the profiler
// (which collects first when asked with gc=1, and ends its text form with
// the runtime's memory statistics: a scrape of /metrics would count the
// garbage it makes itself), then /metrics.
func footprint(t *testing.T, p *proc) metricsFootprint {
	t.Helper()
	f := metricsFootprint{heapInuse: -1, heapAlloc: -1, goroutines: -1}
	for _, line := range strings.Split(plainGet(t, "http://"+p.admin+"/debug/pprof/heap?gc=1&debug=1"), "\n") {
		if v, ok := strings.CutPrefix(line, "# HeapInuse = "); ok {
			f.heapInuse = parseSample(t, line, v)
		}
		if v, ok := strings.CutPrefix(line, "# HeapAlloc = "); ok {
			f.heapAlloc = parseSample(t, line, v)
		}
	}
	f.lines = strings.Split(plainGet(t, "http://"+p.admin+"/metrics"), "\n")
	var transitions [][2]string
	for _, line := range f.lines {
		name, value, _ := strings.Cut(line, " ")
		switch {
		case strings.HasPrefix(line, "wsedge_backend_transitions_total{"):
			// wsedge_backend_transitions_total{backend="a",state="s"} 1
			fields := strings.Split(name, `"`)
			if len(fields) < 4 {
				t.Fatalf("%q", line)
			}
			transitions = append(transitions, [2]string{fields[1], fields[3]})
			continue
		case name == "go_goroutines":
			f.goroutines = parseSample(t, line, value)
		}
		f.size += len(line) + 1
	}
	if f.heapInuse < 0 || f.heapAlloc < 0 || f.goroutines < 0 {
		t.Fatal("no HeapInuse or HeapAlloc in the heap profile, or no go_goroutines in /metrics")
	}
	f.series, f.kept = len(transitions), keptCost(transitions)
	return f
}

// plainGet returns the body of url, asked for uncompressed: a pooled gzip
// writer would count in the heap or not depending on the collector's last
// visit to its pool.
func plainGet(t *testing.T, url string) string {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true, DisableCompression: true}
	defer tr.CloseIdleConnections()
	c := http.Client{Transport: tr, Timeout: 10 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v", url, res.Status, err)
	}
	return string(body)
}

func parseSample(t *testing.T, line, value string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(value, 64)
	if err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	return v
}

// keptCost measures, in this process, the heap that the proxy keeps for
// a while of departed backends whose transitions are labelled so: the
// series of a counter vector labelled as wsedge_backend_transitions_total,
// with the same library, and when each backend left.
func keptCost(labels [][2]string) float64 {
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cost_total", Help: "cost"}, []string{"backend", "state"})
	left := map[string]time.Time{}
	for _, l := range labels {
		vec.WithLabelValues(strings.Clone(l[0]), strings.Clone(l[1])).Inc()
		left[l[0]] = time.Now()
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	runtime.KeepAlive(vec)
	runtime.KeepAlive(left)
	return max(float64(m1.HeapAlloc)-float64(m0.HeapAlloc), 0)
}
