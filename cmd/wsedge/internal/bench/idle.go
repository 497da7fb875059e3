package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// idleReadBuffer is each idle connection's read buffer: enough for a
	// frame header, since an idle client only ever reads pings and closes.
	idleReadBuffer = 16
	// openSlack is added to the time opening should take at the configured
	// rate to bound it, for targets that accept slower than asked.
	openSlack = 30 * time.Second
)

// IdleConfig describes an idle run.
type IdleConfig struct {
	Targets Targets
	// Sources are bound round-robin; nil lets the kernel choose.
	Sources *Sources
	// Transport adds a PROXY protocol header and TLS (for wss:// targets)
	// beneath the WebSocket handshake. The zero value is plain TCP.
	Transport Transport
	// Conns is the number of connections to open and hold. Required.
	Conns int
	// Hold is how long the connections are held once open; memory is
	// sampled at its end. Zero means 10s.
	Hold time.Duration
	// Rate is new connections per second, at most. Zero means 2000.
	Rate float64
	// DialTimeout bounds one connect and upgrade. Zero means 5s.
	DialTimeout time.Duration
	// PIDs are the processes (the proxy's) whose summed VmRSS is read
	// before opening and at the end of the hold.
	PIDs PIDs
	// Procs spreads the connections over this many generator processes,
	// since one process holds at most RLIMIT_NOFILE sockets. Zero or one
	// means this process alone.
	Procs int
	// Spawn returns the command that runs one part of a multi-process run
	// (RunIdlePart in another process, reading its stop signal from stdin
	// and writing its reports to stdout). Required when Procs > 1.
	Spawn func(context.Context, IdlePart) (Cmd, error)
}

// IdleResult is what an idle run measured.
type IdleResult struct {
	Target string `json:"target"`
	Conns  int    `json:"conns"`
	Procs  int    `json:"procs"`
	Opened int    `json:"opened"`
	Failed int    `json:"failed"`
	// OpenSeconds is the time from the first connect to the last
	// connection open.
	OpenSeconds float64 `json:"open_s"`
	HoldSeconds float64 `json:"hold_s"`
	// Dropped counts connections that ended during the hold.
	Dropped    int    `json:"dropped"`
	FirstError string `json:"first_error,omitempty"`
	// RSSBefore and RSSHolding are the summed VmRSS of IdleConfig.PIDs, in
	// bytes, before opening and at the end of the hold.
	RSSBefore  int64 `json:"rss_before_bytes"`
	RSSHolding int64 `json:"rss_holding_bytes"`
	// PerConnKiB is (RSSHolding-RSSBefore)/Opened in KiB.
	PerConnKiB float64 `json:"rss_per_conn_kib"`
}

func (c *IdleConfig) defaults() error {
	if c.Conns <= 0 {
		return errors.New("idle: conns must be positive")
	}
	if c.Hold <= 0 {
		c.Hold = 10 * time.Second
	}
	if c.Rate <= 0 {
		c.Rate = 2000
	}
	if c.Procs > 1 && c.Spawn == nil {
		return errors.New("idle: several processes need a way to spawn them")
	}
	return nil
}

// openBound is how long opening n connections at rate may take.
func openBound(n int, rate float64) time.Duration {
	return time.Duration(float64(n)/rate*float64(time.Second)) + openSlack
}

// Idle opens cfg.Conns connections, holds them for cfg.Hold, samples the
// proxy's memory and closes them. Connections that fail to open or drop are
// reported, not errors; an error means nothing could be measured.
func Idle(ctx context.Context, cfg IdleConfig) (IdleResult, error) {
	if err := cfg.defaults(); err != nil {
		return IdleResult{}, err
	}
	res := IdleResult{Target: cfg.Targets.String(), Conns: cfg.Conns, Procs: max(cfg.Procs, 1)}
	var err error
	if res.RSSBefore, err = cfg.PIDs.RSS(); err != nil {
		return res, fmt.Errorf("idle: %w", err)
	}
	var hold func(context.Context) (holdReport, error)
	if cfg.Procs > 1 {
		hold, err = idleProcs(ctx, cfg, &res)
	} else {
		hold, err = idleHere(ctx, cfg, &res)
	}
	if err != nil {
		return res, err
	}
	start := time.Now()
	ok := sleep(ctx, cfg.Hold)
	res.HoldSeconds = time.Since(start).Seconds()
	if ok {
		res.RSSHolding, err = cfg.PIDs.RSS()
	}
	hr, herr := hold(ctx)
	res.Dropped = hr.Dropped
	switch {
	case err != nil:
		return res, fmt.Errorf("idle: %w", err)
	case !ok:
		return res, fmt.Errorf("idle: cut short: %w", context.Cause(ctx))
	case herr != nil:
		return res, fmt.Errorf("idle: %w", herr)
	}
	if res.Opened > 0 && len(cfg.PIDs) > 0 {
		res.PerConnKiB = float64(res.RSSHolding-res.RSSBefore) / float64(res.Opened) / 1024
	}
	return res, nil
}

// idleHere opens the connections in this process and returns the function
// that ends the hold.
func idleHere(ctx context.Context, cfg IdleConfig, res *IdleResult) (func(context.Context) (holdReport, error), error) {
	d, err := newDialer(cfg.Targets, cfg.Sources, cfg.Transport, cfg.DialTimeout)
	if err != nil {
		return nil, err
	}
	octx, cancel := context.WithTimeout(ctx, openBound(cfg.Conns, cfg.Rate))
	defer cancel()
	op := openConns(octx, d, 0, cfg.Conns, cfg.Rate, idleReadBuffer)
	res.Opened, res.Failed, res.OpenSeconds = len(op.conns), op.failed, op.took.Seconds()
	if op.firstErr != nil {
		res.FirstError = op.firstErr.Error()
	}
	if res.Opened == 0 {
		return nil, fmt.Errorf("idle: no connection opened: %w", op.firstErr)
	}
	h := hold(op.conns)
	return func(context.Context) (holdReport, error) { return holdReport{Dropped: h.stop()}, nil }, nil
}

// holding keeps idle connections open: a goroutine per connection answers
// pings and notices closes.
type holding struct {
	conns   []*clientConn
	ending  atomic.Bool
	dropped atomic.Int64
	wg      sync.WaitGroup
}

func hold(conns []*clientConn) *holding {
	h := &holding{conns: conns}
	for _, c := range conns {
		h.wg.Go(func() {
			for {
				if _, err := c.fr.readMessage(nil); err != nil {
					if !h.ending.Load() {
						h.dropped.Add(1)
					}
					return
				}
			}
		})
	}
	return h
}

// stop closes every connection and returns how many had dropped before.
func (h *holding) stop() int {
	h.ending.Store(true)
	closeAll(h.conns, true)
	h.wg.Wait()
	return int(h.dropped.Load())
}
