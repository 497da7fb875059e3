package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

const (
	// closeReplyWait bounds how long a handshake worker waits for the
	// answer to its close frame before cutting the connection: long
	// enough for a proxy whose cores thousands of TLS handshakes keep
	// busy, far shorter than a client left hanging.
	closeReplyWait = 3 * time.Second
	// failurePause slows a worker whose handshake failed, so that a target
	// that refuses everything is not hammered in a tight loop.
	failurePause = 10 * time.Millisecond
)

// HandshakeConfig describes a handshake run.
type HandshakeConfig struct {
	Targets Targets
	// Sources are bound round-robin; nil lets the kernel choose. A run of
	// a few thousand handshakes a second leaves that many sockets a second
	// in TIME_WAIT, so spread them over many source addresses.
	Sources *Sources
	// Transport adds a PROXY protocol header and TLS (for wss:// targets)
	// beneath the WebSocket handshake: with TLS, every handshake is a
	// full one. The zero value is plain TCP.
	Transport Transport
	// Workers each loop: connect, upgrade, send a close, wait for the
	// answering close, disconnect. Required.
	Workers int
	// Duration is the measured window. Zero means 5s.
	Duration time.Duration
	// Warmup runs the workers before the window, unmeasured. Zero means
	// none.
	Warmup time.Duration
	// DialTimeout bounds one connect and upgrade. Zero means 5s.
	DialTimeout time.Duration
	// Proxy and Backend name the processes whose CPU time is read.
	Proxy, Backend PIDs
}

// HandshakeResult is what a handshake run measured.
type HandshakeResult struct {
	Target  string  `json:"target"`
	Workers int     `json:"workers"`
	Window  float64 `json:"window_s"`
	// Handshakes completed (101 received) within the window.
	Handshakes       int64   `json:"handshakes"`
	HandshakesPerSec float64 `json:"handshakes_per_s"`
	Failures         int64   `json:"failures"`
	FirstError       string  `json:"first_error,omitempty"`
	// KeyExchange counts the TLS key exchanges that the handshakes in
	// the window negotiated, by crypto/tls's name ("X25519MLKEM768",
	// "X25519", "CurveP256"); nil without TLS.
	KeyExchange map[string]int64 `json:"key_exchange,omitempty"`
	// Latency is from the start of the connect to the 101 (through TLS,
	// when there is TLS).
	Latency Latency `json:"latency"`
	CPU     CPU     `json:"cpu"`
	// HandshakesPerProxyCPUSecond is Handshakes over CPU.Proxy.
	HandshakesPerProxyCPUSecond float64 `json:"handshakes_per_proxy_cpu_s"`
}

// Handshake runs cfg.Workers handshake loops through the warmup and the
// window and reports. Failed handshakes are counted, not errors; an error
// means the run itself could not be measured.
func Handshake(ctx context.Context, cfg HandshakeConfig) (HandshakeResult, error) {
	if cfg.Workers <= 0 {
		return HandshakeResult{}, errors.New("handshake: workers must be positive")
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 5 * time.Second
	}
	d, err := newDialer(cfg.Targets, cfg.Sources, cfg.Transport, cfg.DialTimeout)
	if err != nil {
		return HandshakeResult{}, err
	}
	res := HandshakeResult{Target: cfg.Targets.String(), Workers: cfg.Workers}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		phase      atomic.Int32
		rec        = newRecorder()
		wg         sync.WaitGroup
		next       atomic.Int64 // connection number, for source and target
		done, fail atomic.Int64
		kex        tally      // key exchanges, with TLS
		errMu      sync.Mutex // guards first
		first      error
	)
	for w := range cfg.Workers {
		wg.Go(func() {
			for runCtx.Err() == nil {
				i := int(next.Add(1))
				took, kx, err := handshakeOnce(runCtx, d, i)
				if runCtx.Err() != nil {
					return // cut by the end of the run: neither success nor failure
				}
				measuring := phase.Load() == phaseMeasuring
				switch {
				case err != nil:
					if measuring {
						fail.Add(1)
						errMu.Lock()
						if first == nil {
							first = err
						}
						errMu.Unlock()
					}
					sleep(runCtx, failurePause)
				case measuring:
					done.Add(1)
					rec.record(w, took)
					if kx != "" {
						kex.add(kx)
					}
				}
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
		return res, fmt.Errorf("handshake: read cpu: %w", err)
	}
	if !ok {
		return res, fmt.Errorf("handshake: cut short: %w", context.Cause(ctx))
	}
	res.Handshakes, res.Failures = done.Load(), fail.Load()
	res.HandshakesPerSec = float64(res.Handshakes) / res.Window
	res.Latency = rec.latency()
	res.KeyExchange = kex.counts()
	if first != nil {
		res.FirstError = first.Error()
	}
	res.HandshakesPerProxyCPUSecond = perCPUSecond(res.Handshakes, res.CPU.Proxy)
	return res, nil
}

// handshakeOnce connects and upgrades connection i, then closes it the
// polite way: a close frame, the peer's answering close (RFC 6455 7.1.2),
// then TCP (after TLS's close_notify). It returns the time to the 101 and
// the TLS key exchange negotiated, "" without TLS.
func handshakeOnce(ctx context.Context, d *dialer, i int) (time.Duration, string, error) {
	start := time.Now()
	conn, r, err := d.dial(ctx, i, 64)
	if err != nil {
		return 0, "", err
	}
	took := time.Since(start)
	kx := keyExchange(conn)
	defer conn.Close()
	c := newClientConn(conn, r)
	_ = conn.SetDeadline(time.Now().Add(closeReplyWait))
	if _, err := conn.Write(closeFrame(ws.StatusNormalClosure, c.fr.mask)); err != nil {
		return took, kx, fmt.Errorf("send close: %w", err)
	}
	// Any data before the close is skipped; a missing answer is a failure,
	// since a client that waits for it (as browsers do) would hang.
	for {
		_, err := c.fr.readMessage(nil)
		var pc *PeerCloseError
		if errors.As(err, &pc) {
			return took, kx, nil
		}
		if err != nil {
			return took, kx, fmt.Errorf("await close: %w", err)
		}
	}
}
