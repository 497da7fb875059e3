package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	dto "github.com/prometheus/client_model/go"
)

// The proxy counts messages, not only frames and bytes: a message sent in
// several frames counts once, its size once; /debug/connections shows each
// connection's messages, rate and idle time; the handshake and the
// connection's life are timed; /debug/stats adds it up for the dashboard.
func TestMessagesCounted(t *testing.T) {
	r := startCloseRecorder(t, "r")
	p := startWsedge(t, fmt.Sprintf("[health]\ntype = \"tcp\"\n[websocket]\nping_interval = \"0s\"\n[[upstream]]\naddress = %q\n", r.addr()))
	// A small write buffer makes the client send a long message in frames.
	d := p.wsDialer(websocket.Dialer{HandshakeTimeout: 5 * time.Second, WriteBufferSize: 64})
	c, _, err := d.Dial(p.wsURL("/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	sizes := []int{10, 20, 30, 1000}
	for _, n := range sizes {
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if err := c.WriteMessage(websocket.BinaryMessage, bytes.Repeat([]byte("x"), n)); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, got, err := c.ReadMessage(); err != nil || len(got) != n {
			t.Fatalf("echo of %d bytes: %d, %v", n, len(got), err)
		}
	}
	var conns []struct {
		MessagesIn  uint64 `json:"messages_in"`
		MessagesOut uint64 `json:"messages_out"`
		Idle        string `json:"idle"`
	}
	getJSON(t, "http://"+p.admin+"/debug/connections", &conns)
	if len(conns) != 1 || conns[0].MessagesIn != 4 || conns[0].MessagesOut != 4 {
		t.Fatalf("/debug/connections = %+v, want one connection with 4 messages each way", conns)
	}
	if idle, err := time.ParseDuration(conns[0].Idle); err != nil || idle > 5*time.Second {
		t.Errorf("idle %q", conns[0].Idle)
	}

	fams := scrape(t, p)
	frames := counterValue(t, fams, "wsedge_frames_relayed_total", "direction", "client_to_backend")
	for _, dir := range []string{"client_to_backend", "backend_to_client"} {
		if v := counterValue(t, fams, "wsedge_messages_relayed_total", "direction", dir); v != 4 {
			t.Errorf("wsedge_messages_relayed_total{direction=%s} = %v, want 4", dir, v)
		}
		h := histogramOf(t, fams, "wsedge_message_size_bytes", "direction", dir)
		if h.GetSampleCount() != 4 || h.GetSampleSum() != 1060 {
			t.Errorf("message sizes %s: %d messages of %v bytes in all, want 4 of 1060", dir, h.GetSampleCount(), h.GetSampleSum())
		}
	}
	if frames < 8 {
		t.Errorf("the long message went in %v frames in all: the client did not fragment it, and the test tests nothing", frames)
	}
	if h := histogramOf(t, fams, "wsedge_handshake_duration_seconds", "result", "ok"); h.GetSampleCount() != 1 {
		t.Errorf("handshake durations: %d, want 1", h.GetSampleCount())
	}

	c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	closeOf(c, 5*time.Second)
	waitUntil(t, 5*time.Second, func() bool {
		v, _ := sampleOf(scrape(t, p), "wsedge_closes_total", "cause", "client_closed")
		return v == 1
	}, "the close counted")
	if h := histogramOf(t, scrape(t, p), "wsedge_connection_duration_seconds", "cause", "client_closed"); h.GetSampleCount() != 1 {
		t.Errorf("connection durations: %d, want 1", h.GetSampleCount())
	}
	var st struct {
		OpenedTotal   uint64            `json:"opened_total"`
		ClosedTotal   map[string]uint64 `json:"closed_total"`
		MessagesTotal map[string]uint64 `json:"messages_total"`
		Handshake     struct {
			Count uint64  `json:"count"`
			P50   float64 `json:"p50"`
		} `json:"handshake_seconds"`
	}
	getJSON(t, "http://"+p.admin+"/debug/stats", &st)
	if st.OpenedTotal != 1 || st.ClosedTotal["client_closed"] != 1 || st.MessagesTotal["client_to_backend"] != 4 ||
		st.Handshake.Count != 1 || st.Handshake.P50 <= 0 {
		t.Errorf("/debug/stats = %+v", st)
	}
}

// The dashboard, opened in a real browser, shows the ring and what the
// proxy does, refreshed from its own data: after a backend is killed, its
// row changes and the rebalance is listed.
func TestDashboardShowsAKilledBackend(t *testing.T) {
	path, err := chromium()
	if err != nil {
		t.Skipf("browser test skipped: %v", err)
	}
	bs := threeBackends(t)
	p := startWsedge(t, "[health]\ntype = \"tcp\"\ninterval = \"300ms\"\ntimeout = \"250ms\"\nfall = 1\n"+upstreams(bs...))
	conns := dialMany(t, p, 30, userHeader)
	for _, c := range conns {
		askName(t, c)
	}
	br := startBrowser(t, path)
	page := br.open(t, "http://"+p.admin+"/dashboard")
	dir := t.TempDir()
	if d := os.Getenv("WSEDGE_SCREENSHOTS"); d != "" {
		dir = d // to look at them
	}
	type view struct {
		Rows       []string `json:"rows"`
		Rebalances []string `json:"rebalances"`
		Legend     string   `json:"legend"`
		Error      string   `json:"error"`
	}
	look := func() view {
		var v view
		err := page.eval(`({
			rows: [...document.querySelectorAll("#ring tr")].map(r => r.innerText),
			rebalances: [...document.querySelectorAll("#rebalances tr")].map(r => r.innerText),
			legend: document.getElementById("msgs-legend").innerText + " " + document.getElementById("conns-legend").innerText,
			error: document.getElementById("error").innerText,
		})`, &v)
		if err != nil {
			v.Error = err.Error() // not loaded yet
		}
		return v
	}
	var before view
	waitFor(t, 15*time.Second, func() string {
		before = look()
		healthy := strings.Count(strings.Join(before.Rows, "\n"), "healthy")
		if healthy != 3 || before.Legend == " " {
			return fmt.Sprintf("dashboard shows %+v", before)
		}
		return ""
	})
	if err := page.screenshot(filepath.Join(dir, "before.png")); err != nil {
		t.Fatal(err)
	}

	victim := bs[1]
	victim.Kill()
	var after view
	waitFor(t, 15*time.Second, func() string {
		after = look()
		out := true // the victim's row says it is out of the ring, or is gone
		for _, row := range after.Rows {
			if f := strings.Fields(row); len(f) > 1 && f[0] == victim.Addr && f[1] == "healthy" {
				out = false
			}
		}
		if out && strings.Contains(strings.Join(after.Rebalances, "\n"), victim.Addr) {
			return ""
		}
		return fmt.Sprintf("after killing %s the dashboard shows %+v", victim.Addr, after)
	})
	if err := page.screenshot(filepath.Join(dir, "after.png")); err != nil {
		t.Fatal(err)
	}
	b1, _ := os.ReadFile(filepath.Join(dir, "before.png"))
	b2, _ := os.ReadFile(filepath.Join(dir, "after.png"))
	if len(b1) == 0 || bytes.Equal(b1, b2) {
		t.Errorf("the screenshots before and after killing a backend are the same (%d bytes)", len(b1))
	}
	if ex := br.uncaught(); len(ex) > 0 {
		t.Errorf("the page threw: %v", ex)
	}
	t.Logf("before: %v\nafter: %v, rebalances %v", before.Rows, after.Rows, after.Rebalances)
}

// histogramOf is the histogram name with labels in fams; it must be there.
func histogramOf(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) *dto.Histogram {
	t.Helper()
	mf, ok := fams[name]
	if !ok {
		t.Fatalf("/metrics has no %s", name)
	}
next:
	for _, m := range mf.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			if !hasLabel(m, labels[i], labels[i+1]) {
				continue next
			}
		}
		if h := m.GetHistogram(); h != nil {
			return h
		}
	}
	t.Fatalf("/metrics has no %s with labels %v", name, labels)
	return nil
}
