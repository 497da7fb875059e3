package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// Phases of a timed run. Work completed while the phase is measuring
// counts; warmup and the tail after the window do not.
const (
	phaseWarmup int32 = iota
	phaseMeasuring
	phaseDone
)

// ErrEchoMismatch is returned when an echo differs from what was sent.
var ErrEchoMismatch = errors.New("echo differs from the message sent")

// EchoConfig describes an echo run.
type EchoConfig struct {
	Targets Targets
	// Sources are bound round-robin; nil lets the kernel choose.
	Sources *Sources
	// Transport adds a PROXY protocol header and TLS (for wss:// targets)
	// beneath the WebSocket handshake. The zero value is plain TCP.
	Transport Transport
	// Conns is the number of connections, each a closed loop: send one
	// message, wait for its echo, repeat. Required.
	Conns int
	// Rate, when positive, is the offered load in messages per second over
	// all connections: each sends on a fixed schedule (waiting for every
	// echo before the next send) instead of as fast as echoes come back,
	// and latency counts from when a message was due, so that a proxy
	// falling behind is not excused by sending later (coordinated
	// omission). Zero means closed loops.
	Rate float64
	// Size is the payload of each binary message in bytes. Zero means 64.
	Size int
	// Duration is the measured window. Zero means 5s.
	Duration time.Duration
	// Warmup runs the loops before the window, unmeasured, so that the
	// proxy's buffers and the scheduler settle. Zero means none.
	Warmup time.Duration
	// DialTimeout bounds one connect and upgrade. Zero means 5s.
	DialTimeout time.Duration
	// Proxy and Backend name the processes whose CPU time is read at the
	// start and the end of the window.
	Proxy, Backend PIDs
}

// EchoResult is what an echo run measured.
type EchoResult struct {
	Target string  `json:"target"`
	Conns  int     `json:"conns"`
	Opened int     `json:"opened"`
	Size   int     `json:"size"`
	Rate   float64 `json:"rate,omitempty"` // offered msgs/s; 0 for closed loops
	Window float64 `json:"window_s"`
	// Messages echoed within the window; each is Size bytes each way.
	Messages    int64   `json:"messages"`
	MsgsPerSec  float64 `json:"msgs_per_s"`
	BytesPerSec float64 `json:"bytes_per_s"` // payload bytes echoed per second, one way
	// Latency is from send (from when the message was due, at a fixed
	// rate) to the echo's last byte, for messages sent and echoed within
	// the window.
	Latency Latency `json:"latency"`
	// Lost counts connections that failed during the run.
	Lost       int    `json:"lost"`
	FirstError string `json:"first_error,omitempty"`
	CPU        CPU    `json:"cpu"`
	// MsgsPerProxyCPUSecond is Messages over CPU.Proxy: the figure that
	// compares proxies on a machine where everything shares the cores.
	MsgsPerProxyCPUSecond float64 `json:"msgs_per_proxy_cpu_s"`
}

func (c *EchoConfig) defaults() error {
	if c.Conns <= 0 {
		return errors.New("echo: conns must be positive")
	}
	if c.Size < 0 {
		return errors.New("echo: size must not be negative")
	}
	if c.Size == 0 {
		c.Size = 64
	}
	if c.Duration <= 0 {
		c.Duration = 5 * time.Second
	}
	if c.Rate < 0 {
		return errors.New("echo: rate must not be negative")
	}
	return nil
}

// Echo opens cfg.Conns connections, runs them as closed loops through the
// warmup and the window, and reports. It returns an error when no
// connection opened or CPU could not be read; connections lost during the
// run are reported, not errors.
func Echo(ctx context.Context, cfg EchoConfig) (EchoResult, error) {
	if err := cfg.defaults(); err != nil {
		return EchoResult{}, err
	}
	d, err := newDialer(cfg.Targets, cfg.Sources, cfg.Transport, cfg.DialTimeout)
	if err != nil {
		return EchoResult{}, err
	}
	res := EchoResult{Target: cfg.Targets.String(), Conns: cfg.Conns, Size: cfg.Size, Rate: cfg.Rate}
	// One frame plus header fits the reader's buffer, so an echo is read
	// with one system call when it has arrived whole.
	op := openConns(ctx, d, 0, cfg.Conns, 0, cfg.Size+ws.MaxHeaderSize)
	res.Opened = len(op.conns)
	if res.Opened == 0 {
		return res, fmt.Errorf("echo: no connection opened: %w", op.firstErr)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Closing the connections is what unblocks a worker waiting for an
	// echo when the run ends.
	stop := context.AfterFunc(runCtx, func() { closeAll(op.conns, true) })
	defer stop()

	var (
		phase atomic.Int32
		rec   = newRecorder()
		wg    sync.WaitGroup
		count atomic.Int64
		errMu sync.Mutex // guards lost and firstErr
		lost  int
		first error
	)
	var every time.Duration // each connection's interval at a fixed rate
	if cfg.Rate > 0 {
		every = time.Duration(float64(len(op.conns)) / cfg.Rate * float64(time.Second))
	}
	for i, c := range op.conns {
		wg.Go(func() {
			n, err := echoLoop(runCtx, c, cfg.Size, i, every, &phase, rec)
			count.Add(n)
			if err != nil && runCtx.Err() == nil {
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
	ok := sleep(runCtx, cfg.Warmup)
	if ok {
		err = meter.begin()
	}
	start := time.Now()
	phase.Store(phaseMeasuring)
	if ok && err == nil {
		ok = sleep(runCtx, cfg.Duration)
	}
	phase.Store(phaseDone)
	res.Window = time.Since(start).Seconds()
	if ok && err == nil {
		res.CPU, err = meter.end()
	}
	cancel()
	wg.Wait()
	if err != nil {
		return res, fmt.Errorf("echo: read cpu: %w", err)
	}
	if !ok {
		return res, fmt.Errorf("echo: cut short: %w", context.Cause(ctx))
	}
	res.Messages = count.Load()
	res.MsgsPerSec = float64(res.Messages) / res.Window
	res.BytesPerSec = res.MsgsPerSec * float64(cfg.Size)
	res.Latency = rec.latency()
	res.Lost = lost + op.failed
	if first == nil {
		first = op.firstErr
	}
	if first != nil {
		res.FirstError = first.Error()
	}
	res.MsgsPerProxyCPUSecond = perCPUSecond(res.Messages, res.CPU.Proxy)
	return res, nil
}

// echoLoop sends one message, waits for its echo and repeats until ctx
// ends or the connection fails: at once, or, with every set, when the
// next message is due. It returns the number of echoes completed within
// the window.
func echoLoop(ctx context.Context, c *clientConn, size, id int, every time.Duration, phase *atomic.Int32, rec *recorder) (int64, error) {
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(rand.Uint32())
	}
	frame := clientFrame(ws.OpBinary, payload, c.fr.mask)
	buf := make([]byte, 0, size)
	var n int64
	var due time.Time // when the next message is due, at a fixed rate
	if every > 0 {
		// Connections start at random points of their interval, so that
		// the load is spread rather than in waves.
		due = time.Now().Add(rand.N(every))
	}
	for ctx.Err() == nil {
		sent := time.Now()
		if every > 0 {
			if d := time.Until(due); d > 0 && !sleep(ctx, d) {
				return n, nil
			}
			sent, due = due, due.Add(every)
		}
		inWindow := phase.Load() == phaseMeasuring
		if _, err := c.conn.Write(frame); err != nil {
			return n, fmt.Errorf("send: %w", err)
		}
		got, err := c.fr.readMessage(buf)
		if err != nil {
			return n, fmt.Errorf("read echo: %w", err)
		}
		if !bytes.Equal(got, payload) {
			return n, fmt.Errorf("%w: %d bytes back for %d sent", ErrEchoMismatch, len(got), size)
		}
		buf = got
		if phase.Load() == phaseMeasuring {
			n++
			if inWindow {
				rec.record(id, time.Since(sent))
			}
		}
	}
	return n, nil
}
