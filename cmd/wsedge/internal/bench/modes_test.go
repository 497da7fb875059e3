package bench

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// startBackend serves an echo Backend on a free loopback port until the
// test ends.
func startBackend(t *testing.T) (*Backend, Target) {
	t.Helper()
	b, err := ListenBackend([]string{"127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, mustTarget(t, "ws://"+b.Addrs()[0]+"/")
}

func mustTarget(t *testing.T, s string) Target {
	t.Helper()
	tg, err := ParseTarget(s)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

// startClosingServer upgrades every connection and, after delay, closes it
// with 1013, as an overloaded app server would.
func startClosingServer(t *testing.T, delay time.Duration) Target {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		defer conn.Close()
		time.Sleep(delay)
		var body [2]byte
		binary.BigEndian.PutUint16(body[:], 1013)
		_ = ws.WriteFrame(conn, ws.NewCloseFrame(body[:]))
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		_, _ = io.Copy(io.Discard, conn)
	})}
	wg.Go(func() { _ = srv.Serve(ln) })
	t.Cleanup(func() {
		srv.Close()
		wg.Wait()
	})
	return mustTarget(t, "ws://"+ln.Addr().String()+"/")
}

func testSources(t *testing.T) *Sources {
	t.Helper()
	s, err := ParseSources("127.0.0.2-127.0.0.9,127.0.3.2-127.0.3.9")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestEchoThroughBackend(t *testing.T) {
	b, tg := startBackend(t)
	self := PIDs{os.Getpid()}
	res, err := Echo(t.Context(), EchoConfig{
		Targets: Targets{tg}, Sources: testSources(t), Conns: 4, Size: 3000,
		Duration: 300 * time.Millisecond, Warmup: 50 * time.Millisecond, Proxy: self, Backend: self,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Opened != 4 || res.Lost != 0 || res.FirstError != "" {
		t.Errorf("opened %d, lost %d (%s); want 4 and 0", res.Opened, res.Lost, res.FirstError)
	}
	if res.Messages < 20 {
		t.Errorf("Messages = %d in %.2fs, want a few hundred at least", res.Messages, res.Window)
	}
	if res.Latency.Count == 0 || res.Latency.Count > res.Messages || res.Latency.P50 > res.Latency.P99 {
		t.Errorf("latency %+v for %d messages: want 0 < count <= messages, p50 <= p99", res.Latency, res.Messages)
	}
	if st := b.Stats(); st.Messages < res.Messages || st.Bytes != st.Messages*3000 {
		t.Errorf("backend echoed %d messages, %d bytes; want at least %d of 3000 bytes", st.Messages, st.Bytes, res.Messages)
	}
	if res.CPU.Proxy <= 0 || res.MsgsPerProxyCPUSecond <= 0 {
		t.Errorf("proxy cpu %.3fs, %g msgs per cpu-s; want both positive (this process counts)", res.CPU.Proxy, res.MsgsPerProxyCPUSecond)
	}
	if want := res.MsgsPerSec * 3000; res.BytesPerSec != want {
		t.Errorf("BytesPerSec = %g, want %g", res.BytesPerSec, want)
	}
}

// At a fixed rate the connections send what was asked for, not as much as
// the backend can echo, and a message's latency counts from when it was
// due.
func TestEchoAtFixedRate(t *testing.T) {
	_, tg := startBackend(t)
	res, err := Echo(t.Context(), EchoConfig{
		Targets: Targets{tg}, Sources: testSources(t), Conns: 4, Rate: 400,
		Duration: 500 * time.Millisecond, Warmup: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	// 400/s for 0.5s is 200 messages; a closed loop on loopback does
	// thousands in that time.
	if res.Messages < 150 || res.Messages > 250 {
		t.Errorf("%d messages at 400/s in %.2fs, want about 200", res.Messages, res.Window)
	}
	if res.Rate != 400 || res.Lost != 0 {
		t.Errorf("rate %g, lost %d (%s); want 400 and 0", res.Rate, res.Lost, res.FirstError)
	}
	if _, err := Echo(t.Context(), EchoConfig{Targets: Targets{tg}, Conns: 1, Rate: -1}); err == nil {
		t.Error("a negative rate was taken")
	}
}

func TestEchoReportsConnectionsClosedByThePeer(t *testing.T) {
	tg := startClosingServer(t, 0)
	res, err := Echo(t.Context(), EchoConfig{Targets: Targets{tg}, Conns: 3, Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Lost != 3 || !strings.Contains(res.FirstError, "closed by peer: 1013") {
		t.Errorf("lost %d, first error %q; want 3 and a close with 1013", res.Lost, res.FirstError)
	}
}

func TestEchoWithNothingListeningFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tg := mustTarget(t, "ws://"+ln.Addr().String()+"/")
	ln.Close()
	if _, err := Echo(t.Context(), EchoConfig{Targets: Targets{tg}, Conns: 2, Duration: 100 * time.Millisecond}); err == nil {
		t.Error("Echo with no listener: no error")
	}
}

func TestHandshakeThroughBackend(t *testing.T) {
	b, tg := startBackend(t)
	res, err := Handshake(t.Context(), HandshakeConfig{
		Targets: Targets{tg}, Sources: testSources(t), Workers: 3,
		Duration: 300 * time.Millisecond, Warmup: 50 * time.Millisecond, Proxy: PIDs{os.Getpid()},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Handshakes < 10 || res.Failures != 0 {
		t.Errorf("%d handshakes, %d failures (%s); want dozens and none", res.Handshakes, res.Failures, res.FirstError)
	}
	if res.Latency.Count != res.Handshakes {
		t.Errorf("latency count %d, want one per handshake (%d)", res.Latency.Count, res.Handshakes)
	}
	if st := b.Stats(); st.Handshakes < res.Handshakes {
		t.Errorf("backend saw %d handshakes, fewer than the %d reported", st.Handshakes, res.Handshakes)
	}
	waitLive(t, b, 0) // every connection was closed the polite way
}

func TestHandshakeCountsFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tg := mustTarget(t, "ws://"+ln.Addr().String()+"/")
	ln.Close()
	res, err := Handshake(t.Context(), HandshakeConfig{Targets: Targets{tg}, Workers: 2, Duration: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Handshakes != 0 || res.Failures == 0 || !strings.Contains(res.FirstError, "connect") {
		t.Errorf("%d handshakes, %d failures (%q); want none and some connect failures", res.Handshakes, res.Failures, res.FirstError)
	}
}

// waitLive waits, briefly, until the backend has n live connections.
func waitLive(t *testing.T, b *Backend, n int64) {
	t.Helper()
	for end := time.Now().Add(2 * time.Second); b.Stats().Live != n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("backend has %d live connections, want %d", b.Stats().Live, n)
		}
	}
}

func TestIdleHoldsConnections(t *testing.T) {
	b, tg := startBackend(t)
	var peak int64
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			peak = max(peak, b.Stats().Live)
			time.Sleep(5 * time.Millisecond)
		}
	})
	res, err := Idle(t.Context(), IdleConfig{
		Targets: Targets{tg}, Sources: testSources(t), Conns: 40, Hold: 200 * time.Millisecond,
		Rate: 1000, PIDs: PIDs{os.Getpid()},
	})
	cancel()
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if res.Opened != 40 || res.Failed != 0 || res.Dropped != 0 {
		t.Errorf("opened %d, failed %d, dropped %d; want 40, 0, 0", res.Opened, res.Failed, res.Dropped)
	}
	if peak != 40 {
		t.Errorf("backend held at most %d connections, want 40", peak)
	}
	// 40 connections at 1000/s take at least 39ms to open.
	if res.OpenSeconds < 0.035 {
		t.Errorf("opened in %.3fs, faster than the 1000/s ramp allows", res.OpenSeconds)
	}
	if res.RSSBefore <= 0 || res.RSSHolding <= 0 {
		t.Errorf("rss before %d, holding %d; want both read", res.RSSBefore, res.RSSHolding)
	}
	waitLive(t, b, 0)
}

func TestIdleCountsDrops(t *testing.T) {
	tg := startClosingServer(t, 20*time.Millisecond)
	res, err := Idle(t.Context(), IdleConfig{Targets: Targets{tg}, Conns: 5, Hold: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Opened != 5 || res.Dropped != 5 {
		t.Errorf("opened %d, dropped %d; want 5 and 5", res.Opened, res.Dropped)
	}
}

// pipeCmd runs RunIdlePart on a goroutine as if in another process, with
// pipes for stdin and stdout.
type pipeCmd struct {
	ctx    context.Context
	cfg    IdleConfig
	part   IdlePart
	stdinR *io.PipeReader
	stdinW *io.PipeWriter
	outR   *io.PipeReader
	outW   *io.PipeWriter
	done   chan error
}

func (c *pipeCmd) StdinPipe() (io.WriteCloser, error) { return c.stdinW, nil }
func (c *pipeCmd) StdoutPipe() (io.ReadCloser, error) { return c.outR, nil }
func (c *pipeCmd) Start() error {
	go func() {
		err := RunIdlePart(c.ctx, c.cfg, c.part, c.stdinR, c.outW)
		c.outW.Close()
		c.done <- err
	}()
	return nil
}
func (c *pipeCmd) Wait() error { return <-c.done }

func TestIdleSpreadsOverProcesses(t *testing.T) {
	b, tg := startBackend(t)
	var mu sync.Mutex
	var parts []IdlePart
	cfg := IdleConfig{Targets: Targets{tg}, Sources: testSources(t), Conns: 31, Hold: 200 * time.Millisecond, Rate: 3000, Procs: 3}
	cfg.Spawn = func(ctx context.Context, p IdlePart) (Cmd, error) {
		mu.Lock()
		parts = append(parts, p)
		mu.Unlock()
		c := &pipeCmd{ctx: ctx, cfg: cfg, part: p, done: make(chan error, 1)}
		c.stdinR, c.stdinW = io.Pipe()
		c.outR, c.outW = io.Pipe()
		return c, nil
	}
	res, err := Idle(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Opened != 31 || res.Procs != 3 || res.Dropped != 0 {
		t.Errorf("opened %d by %d processes, dropped %d; want 31 by 3, 0 dropped", res.Opened, res.Procs, res.Dropped)
	}
	want := []IdlePart{{0, 10, 1000}, {10, 10, 1000}, {20, 11, 1000}}
	for i, p := range parts {
		if p != want[i] {
			t.Errorf("part %d = %+v, want %+v", i, p, want[i])
		}
	}
	if st := b.Stats(); st.Handshakes != 31 {
		t.Errorf("backend saw %d handshakes, want 31", st.Handshakes)
	}
	waitLive(t, b, 0)
}

func TestBackendAnswersPlainHTTP(t *testing.T) {
	b, _ := startBackend(t)
	resp, err := http.Get("http://" + b.Addrs()[0] + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || b.Stats().Requests != 1 {
		t.Errorf("status %d, %d requests counted; want 200 and 1", resp.StatusCode, b.Stats().Requests)
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestBackendEchoesFramesAsReceived(t *testing.T) {
	_, tg := startBackend(t)
	d, err := newDialer(Targets{tg}, nil, Transport{}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn, r, err := d.dial(t.Context(), 0, 64)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	mask := [4]byte{7, 7, 7, 7}
	big := strings.Repeat("x", echoBufferSize+100) // echoed in two pieces
	frames := []ws.Frame{
		{Header: ws.Header{OpCode: ws.OpText, Rsv: 4}, Payload: []byte("frag-")},
		{Header: ws.Header{Fin: true, OpCode: ws.OpContinuation}, Payload: []byte("ment")},
		{Header: ws.Header{Fin: true, OpCode: ws.OpPing}, Payload: []byte("p")},
		{Header: ws.Header{Fin: true, OpCode: ws.OpBinary}, Payload: []byte(big)},
		{Header: ws.Header{Fin: true, OpCode: ws.OpBinary}, Payload: nil},
	}
	for _, f := range frames {
		f.Header.Length, f.Header.Masked, f.Header.Mask = int64(len(f.Payload)), true, mask
		p := append([]byte(nil), f.Payload...)
		ws.Cipher(p, mask, 0)
		f.Payload = p
		if err := ws.WriteFrame(conn, f); err != nil {
			t.Fatal(err)
		}
	}
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	for _, want := range []struct {
		op   ws.OpCode
		fin  bool
		rsv  byte
		data string
	}{
		{ws.OpText, false, 4, "frag-"}, {ws.OpContinuation, true, 0, "ment"},
		{ws.OpPong, true, 0, "p"}, {ws.OpBinary, true, 0, big}, {ws.OpBinary, true, 0, ""},
	} {
		f, err := ws.ReadFrame(r)
		if err != nil {
			t.Fatal(err)
		}
		if f.Header.Masked || f.Header.OpCode != want.op || f.Header.Fin != want.fin || f.Header.Rsv != want.rsv || string(f.Payload) != want.data {
			t.Errorf("got %+v (%d bytes), want unmasked op %d fin %v rsv %d with %d bytes",
				f.Header, len(f.Payload), want.op, want.fin, want.rsv, len(want.data))
		}
	}
}

func TestRunBackendStopsAndReports(t *testing.T) {
	var out strings.Builder
	err := RunBackend(t.Context(), []string{"127.0.0.1:0"}, 50*time.Millisecond, &out, true)
	if err != nil {
		t.Fatal(err)
	}
	var rep BackendReport
	if err := json.Unmarshal([]byte(out.String()), &rep); err != nil {
		t.Fatalf("report %q: %v", out.String(), err)
	}
	if rep.Seconds < 0.05 || len(rep.Addrs) != 1 {
		t.Errorf("report %+v: want one address and at least 50ms", rep)
	}
}

func TestWriteReportTable(t *testing.T) {
	var out strings.Builder
	res := EchoResult{Target: "ws://127.0.0.1:8080/", Conns: 2, Opened: 2, Size: 64, Window: 1, Messages: 1000,
		MsgsPerSec: 1000, CPU: CPU{Proxy: 0.5}, MsgsPerProxyCPUSecond: 2000,
		Latency: Latency{Count: 1000, P99: 2700 * time.Microsecond}}
	if err := WriteReport(&out, res, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"msgs per proxy cpu-s  2000", "p99 2.700ms", "proxy cpu", "50% of a core"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}
