package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	"github.com/wsedge/wsedge/cmd/wsedge/internal/bench"
)

// defaultSources spreads client connections over 4,063 loopback addresses
// in 16 /24s; see package bench.
const defaultSources = "127.0.0.2-127.0.15.254"

const benchUsage = `usage:
  wsedge bench idle      --target ws://127.0.0.1:8080/ --conns N [--hold 10s] [--ramp 2000/s] [--procs P] [--pids 1,2]
  wsedge bench echo      --target URL --conns C --size 64 [--rate R] --duration 5s [--warmup 2s] [--pids ...] [--backend-pids ...]
  wsedge bench handshake --target URL --workers W --duration 5s [--warmup 1s] [--pids ...] [--backend-pids ...]
  wsedge bench broadcast --target ws://127.0.0.1:8080/ws --conns N [--interval 100ms] [--size 64] --duration 5s [--warmup 2s] [--pids ...] [--backend-pids ...]
  wsedge bench backend   --listen 127.0.100.1:9001 [--listen ...] [--duration 1h]
Broadcast needs a room behind the target: wsedge demo backends --listen ADDR ... [--redis HOST:PORT].
Targets and sources must be loopback addresses. --json prints the result as JSON.
Over TLS: wss:// targets, with --ca FILE or --insecure, and --tls-curves X25519,P256 to pin the key exchange.
Behind a balancer: --proxy-protocol v1|v2 sends a PROXY protocol header before TLS and the upgrade.
`

// benchCmd runs `wsedge bench MODE`: flag parsing only; package bench does
// the work.
func benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, benchUsage)
		return errors.New("bench: missing mode")
	}
	mode, args := args[0], args[1:]
	fs := newFlags("bench "+mode, stderr)
	asJSON := fs.Bool("json", false, "print the result as JSON")
	var run func() (any, error)
	switch mode {
	case "idle":
		run = idleFlags(ctx, fs, args, stdout)
	case "echo":
		run = echoFlags(ctx, fs)
	case "handshake":
		run = handshakeFlags(ctx, fs)
	case "broadcast":
		run = broadcastFlags(ctx, fs)
	case "backend":
		var listen stringList
		fs.Var(&listen, "listen", "address to serve on; repeat for several")
		limit := fs.Duration("duration", time.Hour, "stop after this long")
		run = func() (any, error) {
			return nil, bench.RunBackend(ctx, listen, *limit, stdout, *asJSON)
		}
	default:
		fmt.Fprint(stderr, benchUsage)
		return fmt.Errorf("bench: unknown mode %q", mode)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench %s: unexpected argument %q", mode, fs.Arg(0))
	}
	res, err := run()
	if err != nil || res == nil {
		return err
	}
	return bench.WriteReport(stdout, res, *asJSON)
}

// clientFlags are the flags every load mode shares.
type clientFlags struct {
	targets          bench.Targets
	sources          string
	proxy, backend   string
	timeout, wait    time.Duration
	duration, warmup time.Duration
	insecure         bool
	ca, curves       string
	proxyProtocol    string
}

func (c *clientFlags) register(fs *flag.FlagSet, warmup time.Duration) {
	fs.Var(&c.targets, "target", "ws:// or wss:// URL on a loopback address; repeat for several (connections alternate)")
	fs.StringVar(&c.sources, "sources", defaultSources, `local addresses to bind, round-robin ("" lets the kernel choose)`)
	fs.StringVar(&c.proxy, "pids", "", "proxy process IDs, comma-separated: CPU (echo, handshake) or memory (idle) is read from /proc")
	fs.StringVar(&c.backend, "backend-pids", "", "backend process IDs whose CPU is read")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "bound on one connect and upgrade")
	fs.DurationVar(&c.wait, "wait", 10*time.Second, "wait this long for the target to complete a handshake before starting")
	fs.DurationVar(&c.duration, "duration", 5*time.Second, "measured window")
	fs.DurationVar(&c.warmup, "warmup", warmup, "unmeasured run before the window")
	fs.BoolVar(&c.insecure, "insecure", false, "wss://: do not verify the server's certificate")
	fs.StringVar(&c.ca, "ca", "", "wss://: PEM file of the certificates to trust (default: the system's roots)")
	fs.StringVar(&c.curves, "tls-curves", "", `wss://: key exchanges to offer, in order, e.g. "X25519,P256" (default: Go's)`)
	fs.StringVar(&c.proxyProtocol, "proxy-protocol", "", "send a PROXY protocol header of this version (v1 or v2) with each connection's own addresses")
}

// clientSetup is what the shared flags describe, parsed.
type clientSetup struct {
	sources        *bench.Sources
	transport      bench.Transport
	proxy, backend bench.PIDs
}

// transport parses the PROXY protocol and TLS flags.
func (c *clientFlags) transport() (bench.Transport, error) {
	var tr bench.Transport
	var err error
	if tr.ProxyHeader, err = bench.ParseProxyVersion(c.proxyProtocol); err != nil {
		return tr, err
	}
	curves, err := bench.ParseCurves(c.curves)
	if err != nil {
		return tr, err
	}
	tr.TLS, err = bench.ClientTLS(c.insecure, c.ca, curves)
	return tr, err
}

// parsed returns the sources, transport and PID lists, and waits for the
// targets.
func (c *clientFlags) parsed(ctx context.Context) (s clientSetup, err error) {
	if len(c.targets) == 0 {
		return s, errors.New("bench: --target is required")
	}
	if c.sources != "" {
		if s.sources, err = bench.ParseSources(c.sources); err != nil {
			return s, err
		}
	}
	if s.transport, err = c.transport(); err != nil {
		return s, err
	}
	if s.proxy, err = bench.ParsePIDs(c.proxy); err != nil {
		return s, err
	}
	if s.backend, err = bench.ParsePIDs(c.backend); err != nil {
		return s, err
	}
	for _, t := range c.targets {
		if err := bench.WaitReady(ctx, t, s.sources, s.transport, c.wait); err != nil {
			return s, err
		}
	}
	return s, nil
}

func echoFlags(ctx context.Context, fs *flag.FlagSet) func() (any, error) {
	var c clientFlags
	c.register(fs, 2*time.Second)
	conns := fs.Int("conns", 100, "connections, each a closed loop")
	size := fs.String("size", "64", "message payload: bytes, or e.g. 4KiB")
	rate := fs.Float64("rate", 0, "offered load in messages per second over all connections, each sending on a schedule; 0 for closed loops")
	return func() (any, error) {
		n, err := bench.ParseSize(*size)
		if err != nil {
			return nil, err
		}
		s, err := c.parsed(ctx)
		if err != nil {
			return nil, err
		}
		return bench.Echo(ctx, bench.EchoConfig{
			Targets: c.targets, Sources: s.sources, Transport: s.transport, Conns: *conns, Size: n, Rate: *rate,
			Duration: c.duration, Warmup: c.warmup, DialTimeout: c.timeout, Proxy: s.proxy, Backend: s.backend,
		})
	}
}

func handshakeFlags(ctx context.Context, fs *flag.FlagSet) func() (any, error) {
	var c clientFlags
	c.register(fs, time.Second)
	workers := fs.Int("workers", 50, "concurrent connect-upgrade-close loops")
	return func() (any, error) {
		s, err := c.parsed(ctx)
		if err != nil {
			return nil, err
		}
		return bench.Handshake(ctx, bench.HandshakeConfig{
			Targets: c.targets, Sources: s.sources, Transport: s.transport, Workers: *workers,
			Duration: c.duration, Warmup: c.warmup, DialTimeout: c.timeout, Proxy: s.proxy, Backend: s.backend,
		})
	}
}

func broadcastFlags(ctx context.Context, fs *flag.FlagSet) func() (any, error) {
	var c clientFlags
	c.register(fs, 2*time.Second)
	conns := fs.Int("conns", 100, "clients in the room; the first also publishes")
	interval := fs.Duration("interval", 100*time.Millisecond, "time between two published messages")
	size := fs.String("size", "64", "each message's text: bytes, at least 32")
	grace := fs.Duration("grace", 2*time.Second, "how long to wait after the window for its last messages")
	return func() (any, error) {
		n, err := bench.ParseSize(*size)
		if err != nil {
			return nil, err
		}
		s, err := c.parsed(ctx)
		if err != nil {
			return nil, err
		}
		return bench.Broadcast(ctx, bench.BroadcastConfig{
			Targets: c.targets, Sources: s.sources, Transport: s.transport, Conns: *conns, Interval: *interval,
			Size: n, Duration: c.duration, Warmup: c.warmup, Grace: *grace, DialTimeout: c.timeout,
			Proxy: s.proxy, Backend: s.backend,
		})
	}
}

// idleFlags parses idle's flags. With --part the process is one generator
// of a multi-process run, started by its parent with the parent's own
// arguments plus --part.
func idleFlags(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) func() (any, error) {
	var c clientFlags
	c.register(fs, 0)
	conns := fs.Int("conns", 1000, "connections to open and hold")
	hold := fs.Duration("hold", 10*time.Second, "how long to hold them once open; memory is sampled at the end")
	ramp := fs.String("ramp", "2000/s", "new connections per second, at most")
	procs := fs.Int("procs", 0, "generator processes (0: one per 18,000 connections, the fd limit allowing)")
	part := fs.String("part", "", "internal: run one generator's part, first:conns:rate")
	return func() (any, error) {
		rate, err := bench.ParseRate(*ramp)
		if err != nil {
			return nil, err
		}
		cfg := bench.IdleConfig{Targets: c.targets, Conns: *conns, Hold: *hold, Rate: rate, DialTimeout: c.timeout}
		if *part != "" {
			p, err := bench.ParseIdlePart(*part)
			if err != nil {
				return nil, err
			}
			if cfg.Transport, err = c.transport(); err != nil {
				return nil, err
			}
			if c.sources != "" {
				if cfg.Sources, err = bench.ParseSources(c.sources); err != nil {
					return nil, err
				}
			}
			return nil, bench.RunIdlePart(ctx, cfg, p, os.Stdin, stdout)
		}
		s, err := c.parsed(ctx)
		if err != nil {
			return nil, err
		}
		cfg.Sources, cfg.Transport, cfg.PIDs = s.sources, s.transport, s.proxy
		cfg.Procs = *procs
		if cfg.Procs == 0 {
			cfg.Procs = (cfg.Conns + 17999) / 18000
		}
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cfg.Spawn = func(ctx context.Context, p bench.IdlePart) (bench.Cmd, error) {
			argv := append([]string{"bench", "idle"}, args...)
			cmd := exec.CommandContext(ctx, self, append(argv, "--part", p.String())...)
			cmd.Stderr = os.Stderr
			return cmd, nil
		}
		return bench.Idle(ctx, cfg)
	}
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return fmt.Sprint(*l) }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }
