package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// childExitWait bounds how long a generator process may take to close its
// connections and exit once told to stop, before it is killed.
const childExitWait = 30 * time.Second

// Cmd is a generator process not yet started; *exec.Cmd satisfies it.
// Spawn should build it with exec.CommandContext on the context it is
// given, so that cancelling the context kills the process.
type Cmd interface {
	StdinPipe() (io.WriteCloser, error)
	StdoutPipe() (io.ReadCloser, error)
	Start() error
	Wait() error
}

// IdlePart is the share of a multi-process idle run one generator process
// opens: connections First..First+Conns-1 (which fixes their sources and
// targets) at Rate per second.
type IdlePart struct {
	First, Conns int
	Rate         float64
}

// String formats the part as ParseIdlePart reads it: "first:conns:rate".
func (p IdlePart) String() string {
	return fmt.Sprintf("%d:%d:%g", p.First, p.Conns, p.Rate)
}

// ParseIdlePart parses "first:conns:rate".
func ParseIdlePart(s string) (IdlePart, error) {
	f := strings.Split(s, ":")
	if len(f) != 3 {
		return IdlePart{}, fmt.Errorf("idle part %q: want first:conns:rate", s)
	}
	first, err1 := strconv.Atoi(f[0])
	conns, err2 := strconv.Atoi(f[1])
	rate, err3 := strconv.ParseFloat(f[2], 64)
	if err := errors.Join(err1, err2, err3); err != nil || first < 0 || conns <= 0 || rate <= 0 {
		return IdlePart{}, fmt.Errorf("idle part %q: want first:conns:rate with conns and rate positive", s)
	}
	return IdlePart{First: first, Conns: conns, Rate: rate}, nil
}

// partReport is the first line a generator process writes: what it
// opened.
type partReport struct {
	Opened      int     `json:"opened"`
	Failed      int     `json:"failed"`
	OpenSeconds float64 `json:"open_s"`
	FirstError  string  `json:"first_error,omitempty"`
}

// holdReport is the last line a generator process writes, once stopped.
type holdReport struct {
	Dropped int `json:"dropped"`
}

// RunIdlePart is the body of one generator process of a multi-process
// idle run: it opens part's connections, writes a JSON line saying what
// opened, holds them until stop reaches EOF (the parent closed its end) or
// a bound (the parent died), closes them and writes a JSON line with the
// number dropped.
func RunIdlePart(ctx context.Context, cfg IdleConfig, part IdlePart, stop io.Reader, out io.Writer) error {
	d, err := newDialer(cfg.Targets, cfg.Sources, cfg.Transport, cfg.DialTimeout)
	if err != nil {
		return err
	}
	bound := openBound(part.Conns, part.Rate)
	octx, cancel := context.WithTimeout(ctx, bound)
	op := openConns(octx, d, part.First, part.Conns, part.Rate, idleReadBuffer)
	cancel()
	pr := partReport{Opened: len(op.conns), Failed: op.failed, OpenSeconds: op.took.Seconds()}
	if op.firstErr != nil {
		pr.FirstError = op.firstErr.Error()
	}
	enc := json.NewEncoder(out)
	if err := enc.Encode(pr); err != nil {
		closeAll(op.conns, false)
		return err
	}
	h := hold(op.conns)
	stopped := make(chan struct{})
	go func() { // ends with stop's EOF; the process exits soon after
		_, _ = io.Copy(io.Discard, stop)
		close(stopped)
	}()
	// The parent sends EOF after its hold; this bound only matters when
	// the parent is gone.
	safety := time.NewTimer(bound + max(cfg.Hold, 10*time.Second) + time.Minute)
	defer safety.Stop()
	select {
	case <-stopped:
	case <-ctx.Done():
	case <-safety.C:
	}
	return enc.Encode(holdReport{Dropped: h.stop()})
}

// child is one running generator process.
type child struct {
	cmd Cmd
	in  io.WriteCloser
	dec *json.Decoder
}

// idleProcs runs the idle run's connections in cfg.Procs generator
// processes and returns, once every process has reported what it opened,
// the function that stops them.
func idleProcs(ctx context.Context, cfg IdleConfig, res *IdleResult) (func(context.Context) (holdReport, error), error) {
	kctx, kill := context.WithCancel(ctx) // cancelled: the processes are killed
	var children []*child
	stopAll := func() (holdReport, error) {
		var hr holdReport
		var errs []error
		for _, c := range children {
			c.in.Close()
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for _, c := range children {
				var r holdReport
				if err := c.dec.Decode(&r); err != nil {
					errs = append(errs, fmt.Errorf("generator report: %w", err))
				}
				hr.Dropped += r.Dropped
				if err := c.cmd.Wait(); err != nil {
					errs = append(errs, fmt.Errorf("generator: %w", err))
				}
			}
		}()
		t := time.NewTimer(childExitWait)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			kill()
			<-done
		}
		kill()
		return hr, errors.Join(errs...)
	}
	for i := range cfg.Procs {
		part := IdlePart{First: i * cfg.Conns / cfg.Procs, Rate: cfg.Rate / float64(cfg.Procs)}
		part.Conns = (i+1)*cfg.Conns/cfg.Procs - part.First
		c, err := startChild(kctx, cfg, part)
		if err != nil {
			_, _ = stopAll()
			return nil, fmt.Errorf("idle: start generator %d: %w", i, err)
		}
		children = append(children, c)
	}
	reports := make(chan error, 1)
	go func() {
		var errs []error
		for _, c := range children {
			var pr partReport
			if err := c.dec.Decode(&pr); err != nil {
				errs = append(errs, fmt.Errorf("generator report: %w", err))
				continue
			}
			res.Opened += pr.Opened
			res.Failed += pr.Failed
			res.OpenSeconds = max(res.OpenSeconds, pr.OpenSeconds)
			if res.FirstError == "" {
				res.FirstError = pr.FirstError
			}
		}
		reports <- errors.Join(errs...)
	}()
	t := time.NewTimer(openBound(cfg.Conns/cfg.Procs+1, cfg.Rate/float64(cfg.Procs)) + 10*time.Second)
	defer t.Stop()
	var err error
	select {
	case err = <-reports:
	case <-t.C:
		kill() // their pipes close, so the reading goroutine ends
		err = errors.Join(errors.New("generators did not report in time"), <-reports)
	}
	if err == nil && res.Opened == 0 {
		err = fmt.Errorf("no connection opened: %s", res.FirstError)
	}
	if err != nil {
		_, _ = stopAll()
		return nil, fmt.Errorf("idle: %w", err)
	}
	return func(context.Context) (holdReport, error) { return stopAll() }, nil
}

func startChild(ctx context.Context, cfg IdleConfig, part IdlePart) (*child, error) {
	cmd, err := cfg.Spawn(ctx, part)
	if err != nil {
		return nil, err
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		in.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		in.Close()
		return nil, err
	}
	return &child{cmd: cmd, in: in, dec: json.NewDecoder(out)}, nil
}
