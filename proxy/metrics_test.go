package proxy

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsedge/wsedge/upstream"
)

// fakeClock is a time that moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// backendsIn returns the sorted backend labels of family name's series,
// and what each counts.
func backendsIn(t *testing.T, reg *prometheus.Registry, name string) ([]string, map[string]float64) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	values := map[string]float64{}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "backend" {
					out = append(out, l.GetValue())
					values[l.GetValue()] += m.GetCounter().GetValue() + m.GetGauge().GetValue()
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), values
}

// A backend's series go once it has been out of the member set for the
// retention, at the first scrape after, whether or not the members changed
// since; one back before then keeps its series and counts on. The gauges
// read from the current state drop it at once.
func TestDepartedBackendSeriesDeleted(t *testing.T) {
	const keep = 5 * time.Minute
	reg := prometheus.NewRegistry()
	set := upstream.NewSet(nil)
	srv := New(Config{}, set, WithMetrics(reg), WithBackendSeriesRetention(keep))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	clock := &fakeClock{now: time.Unix(1000, 0)}
	srv.metrics.departed.now = clock.Now
	members := func(addrs ...string) {
		t.Helper()
		var bs []upstream.Backend
		for _, a := range addrs {
			bs = append(bs, upstream.Backend{Addr: a, Weight: 1})
		}
		set.Replace(bs)
		srv.followMembers()
	}
	check := func(family string, want ...string) map[string]float64 {
		t.Helper()
		got, values := backendsIn(t, reg, family)
		if !slices.Equal(got, want) {
			t.Fatalf("%s names %v, want %v", family, got, want)
		}
		return values
	}
	const transitions = "wsedge_backend_transitions_total"

	members("10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80")
	check(transitions, "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80")
	members("10.0.0.2:80")
	check("wsedge_backend_up", "10.0.0.2:80")
	check("wsedge_connections", "10.0.0.2:80")
	check(transitions, "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80")

	clock.advance(keep / 2)
	members("10.0.0.2:80", "10.0.0.3:80") // back in time
	clock.advance(keep/2 - time.Second)
	check(transitions, "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80")
	clock.advance(time.Second)
	values := check(transitions, "10.0.0.2:80", "10.0.0.3:80")
	if values["10.0.0.3:80"] != 2 {
		t.Fatalf("the backend back counts %v transitions, want 2: its series must live on", values["10.0.0.3:80"])
	}

	// Many come and go: nothing of them stays.
	var many []string
	for i := range 1000 {
		many = append(many, fmt.Sprintf("10.1.%d.%d:80", i/256, i%256))
	}
	members(append(many, "10.0.0.2:80")...)
	members("10.0.0.2:80")
	clock.advance(keep)
	check(transitions, "10.0.0.2:80")
	srv.metrics.departed.mu.Lock()
	gone := len(srv.metrics.departed.gone)
	srv.metrics.departed.mu.Unlock()
	if gone != 0 {
		t.Fatalf("%d departures still remembered after their series went", gone)
	}
}

// Once their retention has passed, a thousand backends that came and went
// leave the proxy's heap within a tenth of what they took meanwhile. It
// starts after a first thousand: maps keep the room they grew to, so the
// proxy's tables cost what the most backends at once needed, not more.
func TestDepartedBackendsLeaveNoHeap(t *testing.T) {
	const keep = time.Minute
	reg := prometheus.NewRegistry()
	set := upstream.NewSet(nil)
	srv := New(Config{}, set, WithMetrics(reg), WithBackendSeriesRetention(keep))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	clock := &fakeClock{now: time.Unix(1000, 0)}
	srv.metrics.departed.now = clock.Now
	next := 0
	churn := func(n int) {
		for range n / 100 {
			var bs []upstream.Backend
			for range 100 {
				bs = append(bs, upstream.Backend{Addr: fmt.Sprintf("10.%d.%d.%d:80", next>>16&0xff, next>>8&0xff, next&0xff), Weight: 1})
				next++
			}
			set.Replace(bs)
			srv.followMembers()
			set.Replace(nil)
			srv.followMembers()
			clock.advance(time.Second)
		}
	}
	scrape := func() {
		if _, err := reg.Gather(); err != nil {
			t.Fatal(err)
		}
	}
	live := func() int64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}

	churn(1000)
	clock.advance(keep)
	scrape()
	before := live()
	churn(1000)
	scrape()
	kept := live() - before
	if kept < 256<<10 {
		t.Fatalf("a thousand departed backends take %d bytes while their series stay: the measure is broken", kept)
	}
	clock.advance(keep)
	scrape()
	left := live() - before
	t.Logf("a thousand departed backends: %d KiB while their series stay, %d KiB after", kept>>10, left>>10)
	if left > kept/10 {
		t.Fatalf("%d KiB still held after the retention, of %d KiB", left>>10, kept>>10)
	}
}

// The proxy's own failures have a counter, and the loops a gauge, from the
// start.
func TestMetricsRegistered(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv := New(Config{}, upstream.NewSet(nil), WithMetrics(reg), WithLoops(3))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	srv.metrics.localErrors.WithLabelValues("descriptors").Inc()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, f := range families {
		found[f.GetName()] = true
	}
	for _, name := range []string{"wsedge_local_errors_total", "wsedge_event_loops"} {
		if !found[name] {
			t.Errorf("%s not registered", name)
		}
	}
	if srv.Loops() != 3 {
		t.Errorf("Loops() = %d, want 3", srv.Loops())
	}
}
