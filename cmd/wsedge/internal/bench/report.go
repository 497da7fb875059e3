package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// row is one line of a human-readable report.
type row struct{ name, value string }

// tabler is a result that can print itself as a two-column table.
type tabler interface{ rows() []row }

// WriteReport writes a result of this package (EchoResult, IdleResult,
// HandshakeResult, BackendReport) as an aligned table, or as indented JSON
// when asJSON is set.
func WriteReport(w io.Writer, result any, asJSON bool) error { return writeReport(w, result, asJSON) }

func writeReport(w io.Writer, result any, asJSON bool) error {
	t, ok := result.(tabler)
	if asJSON || !ok {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(result)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range t.rows() {
		fmt.Fprintf(tw, "%s\t%s\n", r.name, r.value)
	}
	return tw.Flush()
}

func (r EchoResult) rows() []row {
	rows := []row{
		{"target", r.Target},
		{"connections", fmt.Sprintf("%d opened of %d, %d lost", r.Opened, r.Conns, r.Lost)},
		{"message", fmt.Sprintf("%d bytes binary, %s", r.Size, r.load())},
		{"window", fmt.Sprintf("%.2fs", r.Window)},
		{"messages", fmt.Sprintf("%d (%.0f/s, %s/s)", r.Messages, r.MsgsPerSec, bytesHuman(r.BytesPerSec))},
	}
	rows = append(rows, latencyRows(r.Latency)...)
	rows = append(rows, cpuRows(r.CPU, r.Window)...)
	if r.CPU.Proxy > 0 {
		rows = append(rows, row{"msgs per proxy cpu-s", fmt.Sprintf("%.0f", r.MsgsPerProxyCPUSecond)})
	}
	return withError(rows, r.FirstError)
}

// load says how messages were offered.
func (r EchoResult) load() string {
	if r.Rate > 0 {
		return fmt.Sprintf("offered at %.0f/s", r.Rate)
	}
	return "closed loop"
}

func (r HandshakeResult) rows() []row {
	rows := []row{
		{"target", r.Target},
		{"workers", fmt.Sprint(r.Workers)},
		{"window", fmt.Sprintf("%.2fs", r.Window)},
		{"handshakes", fmt.Sprintf("%d (%.0f/s), %d failed", r.Handshakes, r.HandshakesPerSec, r.Failures)},
	}
	if len(r.KeyExchange) > 0 {
		rows = append(rows, row{"key exchange", shares(r.KeyExchange)})
	}
	rows = append(rows, latencyRows(r.Latency)...)
	rows = append(rows, cpuRows(r.CPU, r.Window)...)
	if r.CPU.Proxy > 0 {
		rows = append(rows, row{"handshakes per proxy cpu-s", fmt.Sprintf("%.0f", r.HandshakesPerProxyCPUSecond)})
	}
	return withError(rows, r.FirstError)
}

func (r IdleResult) rows() []row {
	rows := []row{
		{"target", r.Target},
		{"connections", fmt.Sprintf("%d opened of %d (%d failed) in %.2fs by %d process(es)",
			r.Opened, r.Conns, r.Failed, r.OpenSeconds, r.Procs)},
		{"held", fmt.Sprintf("%.2fs, %d dropped", r.HoldSeconds, r.Dropped)},
	}
	if r.RSSBefore > 0 {
		rows = append(rows,
			row{"proxy rss", fmt.Sprintf("%s before, %s holding",
				bytesHuman(float64(r.RSSBefore)), bytesHuman(float64(r.RSSHolding)))},
			row{"rss per connection", fmt.Sprintf("%.1f KiB", r.PerConnKiB)})
	}
	return withError(rows, r.FirstError)
}

func (r BackendReport) rows() []row {
	return []row{
		{"backend", fmt.Sprint(r.Addrs)},
		{"ran", fmt.Sprintf("%.1fs, cpu %.2fs (%.0f%% of a core)", r.Seconds, r.CPU, 100*r.CPU/max(r.Seconds, 1e-9))},
		{"served", fmt.Sprintf("%d handshakes, %d messages, %s, %d plain requests",
			r.Stats.Handshakes, r.Stats.Messages, bytesHuman(float64(r.Stats.Bytes)), r.Stats.Requests)},
	}
}

func latencyRows(l Latency) []row {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond)) }
	return []row{{"latency", fmt.Sprintf("p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (n=%d)",
		ms(l.P50), ms(l.P90), ms(l.P99), ms(l.P999), ms(l.Max), l.Count)}}
}

// cpuRows shows each side's CPU and its share of one core over the window,
// so that a reader sees at once which process was saturated.
func cpuRows(c CPU, window float64) []row {
	share := func(s float64) string { return fmt.Sprintf("%.2fs (%.0f%% of a core)", s, 100*s/max(window, 1e-9)) }
	return []row{
		{"proxy cpu", share(c.Proxy)},
		{"backend cpu", share(c.Backend)},
		{"client cpu", share(c.Client)},
	}
}

func withError(rows []row, first string) []row {
	if first != "" {
		rows = append(rows, row{"first error", first})
	}
	return rows
}

func bytesHuman(b float64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", b/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.2f MiB", b/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}
