package bench

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// BroadcastConfig describes a broadcast run: Conns clients join a room
// whose servers fan every message out to all of its members (`wsedge demo
// backends`, behind the proxy), and one of them says something every
// Interval. Each message's latency is measured from when it was sent to
// when each client got it: the path through the proxy to one server, the
// broker to every server, and back through the proxy to every client.
type BroadcastConfig struct {
	Targets Targets
	// Sources are bound round-robin; nil lets the kernel choose. Spread
	// over many addresses, the clients spread over the servers behind an
	// IP-keyed proxy.
	Sources *Sources
	// Transport adds a PROXY protocol header and TLS beneath the
	// WebSocket handshake. The zero value is plain TCP.
	Transport Transport
	// Conns is the number of clients; the first also publishes. Required.
	Conns int
	// Interval is the time between two messages. Zero means 100ms.
	Interval time.Duration
	// Size is each message's text in bytes, at least 32. Zero means 64.
	Size int
	// Duration is the measured window: the messages published in it
	// count. Zero means 5s.
	Duration time.Duration
	// Warmup publishes before the window, unmeasured, once every client
	// has joined. Zero means none.
	Warmup time.Duration
	// Grace is how long after the window the clients wait for the
	// window's last messages. Zero means 2s.
	Grace time.Duration
	// DialTimeout bounds one connect and upgrade. Zero means 5s.
	DialTimeout time.Duration
	// Proxy and Backend name the processes whose CPU time is read over
	// the window: for Backend, the servers and their broker.
	Proxy, Backend PIDs
}

// BroadcastResult is what a broadcast run measured.
type BroadcastResult struct {
	Target     string  `json:"target"`
	Conns      int     `json:"conns"`
	Opened     int     `json:"opened"`
	IntervalMS float64 `json:"interval_ms"`
	Size       int     `json:"size"`
	Window     float64 `json:"window_s"`
	// Published is the messages sent in the window; every opened client
	// should get each once.
	Published  int64 `json:"published"`
	Deliveries int64 `json:"deliveries"`
	// Missing is deliveries that did not come within the grace after the
	// window: messages a server dropped, or clients it dropped.
	Missing          int64   `json:"missing"`
	DeliveriesPerSec float64 `json:"deliveries_per_s"`
	// Latency is from a message's send to its arrival at one client, for
	// every delivery of the window's messages.
	Latency    Latency `json:"latency"`
	Lost       int     `json:"lost"` // clients whose connection failed
	FirstError string  `json:"first_error,omitempty"`
	CPU        CPU     `json:"cpu"`
	// DeliveriesPerProxyCPUSecond compares proxies: each delivery is one
	// message relayed from a server to a client.
	DeliveriesPerProxyCPUSecond float64 `json:"deliveries_per_proxy_cpu_s"`
}

func (c *BroadcastConfig) defaults() error {
	if c.Conns <= 0 {
		return errors.New("broadcast: conns must be positive")
	}
	if c.Interval < 0 || c.Size < 0 {
		return errors.New("broadcast: interval and size must not be negative")
	}
	c.Interval = cmp.Or(c.Interval, 100*time.Millisecond)
	c.Size = max(cmp.Or(c.Size, 64), 32)
	c.Duration = cmp.Or(c.Duration, 5*time.Second)
	c.Grace = cmp.Or(c.Grace, 2*time.Second)
	return nil
}

// broadcastRun is the shared state of one run: when each message was
// sent and whether it counts. The publisher writes an entry before it
// sends the message; clients read it after receiving.
type broadcastRun struct {
	marker []byte         // "bench RUN ": what a message of this run starts with
	sent   []atomic.Int64 // by sequence number: nanoseconds since start, 0 if not sent
	counts []atomic.Bool  // by sequence number: sent in the window
	start  time.Time
	rec    *recorder
	got    atomic.Int64 // deliveries of counted messages
}

// Broadcast opens the clients, publishes through the warmup and the window,
// waits Grace for the last deliveries and reports. It returns an error
// when no client opened or CPU could not be read; clients lost during the
// run are reported, not errors.
func Broadcast(ctx context.Context, cfg BroadcastConfig) (BroadcastResult, error) {
	if err := cfg.defaults(); err != nil {
		return BroadcastResult{}, err
	}
	d, err := newDialer(cfg.Targets, cfg.Sources, cfg.Transport, cfg.DialTimeout)
	if err != nil {
		return BroadcastResult{}, err
	}
	res := BroadcastResult{Target: cfg.Targets.String(), Conns: cfg.Conns, Size: cfg.Size,
		IntervalMS: float64(cfg.Interval) / float64(time.Millisecond)}
	op := openConns(ctx, d, 0, cfg.Conns, 0, 4096)
	res.Opened = len(op.conns)
	if res.Opened == 0 {
		return res, fmt.Errorf("broadcast: no connection opened: %w", op.firstErr)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(runCtx, func() { closeAll(op.conns, true) })
	defer stop()

	n := int((cfg.Warmup+cfg.Duration)/cfg.Interval) + 2
	run := &broadcastRun{
		marker: fmt.Appendf(nil, "bench %08x ", rand.Uint32()),
		sent:   make([]atomic.Int64, n), counts: make([]atomic.Bool, n),
		start: time.Now(), rec: newRecorder(),
	}
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex // guards lost and first
		lost  int
		first error
	)
	for i, c := range op.conns {
		wg.Go(func() {
			if err := run.receive(c, i); err != nil && runCtx.Err() == nil {
				errMu.Lock()
				lost++
				if first == nil {
					first = err
				}
				errMu.Unlock()
			}
		})
	}

	meter := cpuMeter{proxy: cfg.Proxy, backend: cfg.Backend}
	pub := op.conns[0]
	seq := 0
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	publish := func(counted bool) error {
		seq++
		if seq >= n {
			return errors.New("broadcast: more messages than the run has room for")
		}
		text := make([]byte, 0, cfg.Size)
		text = strconv.AppendInt(append(text, run.marker...), int64(seq), 10)
		text = append(text, ' ')
		for len(text) < cfg.Size {
			text = append(text, 'x')
		}
		run.counts[seq].Store(counted)
		run.sent[seq].Store(int64(time.Since(run.start)))
		_, err := pub.conn.Write(clientFrame(ws.OpText, text, pub.fr.mask))
		return err
	}
	// phase publishes every Interval until d has passed.
	phase := func(d time.Duration, counted bool) error {
		end := time.After(d)
		for {
			select {
			case <-runCtx.Done():
				return fmt.Errorf("broadcast: cut short: %w", context.Cause(ctx))
			case <-end:
				return nil
			case <-tick.C:
				if err := publish(counted); err != nil {
					return err
				}
			}
		}
	}
	err = phase(cfg.Warmup, false)
	first0 := seq + 1 // the window's first message
	if err == nil {
		err = meter.begin()
	}
	start := time.Now()
	if err == nil {
		err = phase(cfg.Duration, true)
	}
	res.Window = time.Since(start).Seconds()
	if err == nil {
		res.CPU, err = meter.end()
	}
	res.Published = int64(seq - first0 + 1)
	if err == nil {
		// The window's last messages are still on their way.
		want := res.Published * int64(res.Opened)
		deadline := time.Now().Add(cfg.Grace)
		for run.got.Load() < want && time.Now().Before(deadline) && sleep(runCtx, 10*time.Millisecond) {
		}
	}
	cancel()
	wg.Wait()
	if err != nil {
		return res, err
	}
	res.Deliveries = run.got.Load()
	res.Missing = res.Published*int64(res.Opened) - res.Deliveries
	res.DeliveriesPerSec = float64(res.Deliveries) / res.Window
	res.Latency = run.rec.latency()
	res.Lost = lost + op.failed
	if first == nil {
		first = op.firstErr
	}
	if first != nil {
		res.FirstError = first.Error()
	}
	res.DeliveriesPerProxyCPUSecond = perCPUSecond(res.Deliveries, res.CPU.Proxy)
	return res, nil
}

// receive reads client id's messages until its connection ends, and
// records the latency of each counted message of the run the first time
// it arrives. Anything else the servers send (greetings, history,
// membership) is skipped.
func (r *broadcastRun) receive(c *clientConn, id int) error {
	var buf []byte
	last := 0
	for {
		msg, err := c.fr.readMessage(buf)
		if err != nil {
			return err
		}
		buf = msg
		now := time.Since(r.start)
		seq, ok := r.seqOf(msg)
		// History after a join repeats old messages; a message comes at
		// most once per client in order, so anything not newer is one.
		if !ok || seq <= last || seq >= len(r.sent) {
			continue
		}
		last = seq
		if !r.counts[seq].Load() {
			continue
		}
		r.rec.record(id, now-time.Duration(r.sent[seq].Load()))
		r.got.Add(1)
	}
}

// seqOf finds this run's marker in a message and reads the sequence number
// after it. The servers wrap the text in JSON; the marker, digits and
// spaces need no escaping, so they are there verbatim.
func (r *broadcastRun) seqOf(msg []byte) (int, bool) {
	i := bytes.Index(msg, r.marker)
	if i < 0 {
		return 0, false
	}
	seq := 0
	digits := 0
	for _, b := range msg[i+len(r.marker):] {
		if b < '0' || b > '9' {
			break
		}
		seq = 10*seq + int(b-'0')
		digits++
	}
	return seq, digits > 0 && digits < 10
}

func (r BroadcastResult) rows() []row {
	rows := []row{
		{"target", r.Target},
		{"connections", fmt.Sprintf("%d opened of %d, %d lost", r.Opened, r.Conns, r.Lost)},
		{"published", fmt.Sprintf("%d messages of %d bytes, one every %gms", r.Published, r.Size, r.IntervalMS)},
		{"window", fmt.Sprintf("%.2fs", r.Window)},
		{"deliveries", fmt.Sprintf("%d (%.0f/s), %d missing", r.Deliveries, r.DeliveriesPerSec, r.Missing)},
	}
	rows = append(rows, latencyRows(r.Latency)...)
	rows = append(rows, cpuRows(r.CPU, r.Window)...)
	if r.CPU.Proxy > 0 {
		rows = append(rows, row{"deliveries per proxy cpu-s", fmt.Sprintf("%.0f", r.DeliveriesPerProxyCPUSecond)})
	}
	return withError(rows, r.FirstError)
}
