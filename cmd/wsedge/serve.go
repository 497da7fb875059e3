package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/wsedge/wsedge/cmd/wsedge/internal/config"
	"github.com/wsedge/wsedge/cmd/wsedge/internal/memtrim"
	"github.com/wsedge/wsedge/proxy"
	"github.com/wsedge/wsedge/upstream"
)

// errForced is returned when a second signal cut the graceful shutdown short.
var errForced = errors.New("second signal: stopped without waiting for connections")

// serve runs the proxy until SIGINT or SIGTERM, re-reading its config on
// SIGHUP and replacing itself with a new binary on SIGUSR2 or `wsedge
// upgrade`. The first stop signal shuts down gracefully; a second one
// exits at once. Started by an upgrade, it takes over from the old process
// first, or tells it why it cannot and exits.
func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	path := fs.String("config", "", "config file (default ./proxy.toml when present, else built-in defaults)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	tk, err := takeoverFromEnv()
	if err != nil {
		return err
	}
	f, defaulted, err := loadConfig(*path)
	if err != nil {
		tk.fail(fmt.Errorf("config: %w", err))
		return err
	}
	log, level := newLogger(f, stderr)
	defer log.Sync()
	if defaulted {
		log.Info("no config file found; running on built-in defaults",
			zap.String("looked_for", defaultConfigPath), zap.String("listen", f.Listen),
			zap.String("backend", f.Upstreams[0].Address))
	} else {
		log.Info("config loaded", zap.String("file", f.Path))
	}
	if err := tk.recvState(); err != nil {
		tk.fail(err)
		return err
	}
	d, err := startDaemonFrom(f, log, level, tk)
	if err != nil {
		tk.fail(err)
		return err
	}
	if tk != nil {
		if err := d.takeOver(tk); err != nil {
			d.shutdown()
			return err
		}
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	usr2 := make(chan os.Signal, 1)
	if sigs := upgradeSignals(); len(sigs) > 0 {
		signal.Notify(usr2, sigs...)
		defer signal.Stop(usr2)
	}
	for {
		var req upgradeRequest
		select {
		case <-hup:
			d.reload()
			continue
		case <-usr2:
		case req = <-d.upgradeReqs:
		case err := <-d.failed:
			d.shutdown()
			return err
		case <-ctx.Done():
			return d.shutdownUnlessSignalled()
		}
		d.upgrading.Store(true)
		s, res, err := d.upgrade(ctx, req.binary)
		if err != nil {
			res.Result, res.Error = "failed", err.Error()
		}
		d.logUpgrade(res, err)
		req.answer(res, err)
		if err != nil {
			d.upgrades.WithLabelValues("failed").Inc()
			d.upgrading.Store(false)
			continue
		}
		d.retire(ctx, s)
		return nil
	}
}

// spareProcessor returns how many event loops the proxy runs: loops, the
// [tuning] setting, or else one per processor the Go runtime was given at
// start (GOMAXPROCS, which follows a container's CPU limit and the CPU
// affinity mask, not the host's CPU count). Unless GOMAXPROCS is set in
// the environment, it then gives the runtime one processor more than that.
// An idle loop blocks in epoll_wait holding its processor; with none to
// spare, the runtime takes a sleeping loop's processor away to run anything
// else and its monitor thread keeps waking every 20µs to do so, which cost
// a quarter of the proxy's CPU time per handshake on two cores. Call it
// once: it reads the value it changes.
func spareProcessor(loops int) int {
	procs := runtime.GOMAXPROCS(0)
	if loops <= 0 {
		loops = procs
	}
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(max(procs, loops) + 1)
	}
	return loops
}

// daemon is a running proxy with its listeners, as serve and demo run it.
type daemon struct {
	log    *zap.Logger
	level  zap.AtomicLevel
	path   string // config file to re-read on reload; "" for none
	failed chan error

	set      *upstream.Set
	srv      *proxy.Server
	certs    *certificate
	reloads  *prometheus.CounterVec
	upgrades *prometheus.CounterVec
	// upgradeReqs carries POST /debug/upgrade to the serve loop, which
	// does one upgrade at a time; upgrading is set meanwhile, and for
	// good once one went through.
	upgradeReqs chan upgradeRequest
	upgrading   atomic.Bool

	mu         sync.Mutex // guards cur, ln, admin, metrics and their listeners
	cur        *config.File
	ln         net.Listener
	admin      *http.Server
	adminLn    net.Listener // admin's, lent to a new process on upgrade
	adminMux   http.Handler
	metrics    *http.Server // on metrics_listen
	metricsLn  net.Listener
	metricsMux http.Handler
	guard      proxy.AdminGuard // in front of adminMux; its token follows reloads
	// starting is what a daemon taking over from an old process serves
	// once it has the connections: the admin listeners are opened, not
	// yet served.
	starting *adminChange
	// life ends when the daemon shuts down: background work stops with it.
	life   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the goroutines serving listeners, watching members and checking health
}

func startDaemon(f *config.File, log *zap.Logger, level zap.AtomicLevel) (*daemon, error) {
	return startDaemonFrom(f, log, level, nil)
}

// startDaemonFrom starts a daemon; with tk, one that takes over from an
// old process: on the listening sockets it lent, and serving them only
// once takeOver has the old process's connections.
func startDaemonFrom(f *config.File, log *zap.Logger, level zap.AtomicLevel, tk *takeover) (*daemon, error) {
	loops := spareProcessor(f.Tuning.Loops)
	pc, err := proxyConfig(f)
	if err != nil {
		return nil, err
	}
	d := &daemon{log: log, level: level, path: f.Path, cur: f, failed: make(chan error, 1), certs: &certificate{},
		upgradeReqs: make(chan upgradeRequest)}
	if err := d.certs.load(f.TLS); err != nil {
		return nil, err
	}
	d.set, err = upstream.New(upstreamConfig(f, pc), log)
	if err != nil {
		return nil, err
	}
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wsedge_config_reloads_total",
		Help: "Config reloads on SIGHUP, by result (ok or failed).",
	}, []string{"result"})
	metrics.MustRegister(d.reloads)
	d.upgrades = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wsedge_upgrades_total",
		Help: "Binary upgrades: failed ones, counted by the old process, which keeps serving; ok, counted by the new process once it took over.",
	}, []string{"result"})
	metrics.MustRegister(d.upgrades)
	metrics.MustRegister(newGossipRejections(d.set))
	metrics.MustRegister(newDNSErrors(d.set))
	// Loops and io_uring are the process's: a reload does not change them.
	opts := []proxy.Option{proxy.WithLogger(log), proxy.WithMetrics(metrics), proxy.WithLoops(loops)}
	if f.Tuning.IOUring == "off" {
		opts = append(opts, proxy.WithoutIOUring())
	}
	d.srv = proxy.New(pc, d.set, opts...)
	tk.inherit(d)
	d.adminMux = d.withUpgrade(d.adminHandler(metrics))
	d.metricsMux = metricsHandler(metrics)

	ln, err := tk.clientListener(f, d.certs, d.srv.Loops())
	if err != nil {
		return nil, err
	}
	d.ln = ln
	adm, err := tk.prepareAdmin(d, f)
	if err != nil {
		ln.Close()
		return nil, err
	}
	d.starting = adm

	d.life, d.cancel = context.WithCancel(context.Background())
	d.wg.Go(func() {
		if err := d.set.Run(d.life); err != nil && d.life.Err() == nil {
			d.fail(fmt.Errorf("backend set: %w", err))
		}
	})
	d.wg.Go(func() { d.srv.WatchMembers(d.life) })
	d.wg.Go(func() { memtrim.New(log).Run(d.life) })
	if tk == nil {
		d.goLive()
		sdNotify("READY=1")
	}
	return d, nil
}

// goLive serves the listeners startDaemonFrom opened: clients and the
// admin endpoints.
func (d *daemon) goLive() {
	d.mu.Lock()
	defer d.mu.Unlock()
	adm, f := d.starting, d.cur
	d.starting = nil
	d.commitAdmin(adm)
	d.noteAdmin(adm)
	d.serveProxy(d.ln)
	d.log.Info("listening", zap.String("listen", d.ln.Addr().String()), zap.String("admin", addr(adm.admin)),
		zap.String("metrics", addr(adm.metrics)),
		zap.Int("backends", len(f.Upstreams)), zap.Bool("tls", f.TLS.Cert != ""),
		zap.Bool("proxy_protocol", f.ProxyProtocol), zap.Int("pid", os.Getpid()))
}

// noteAdmin keeps the admin and metrics listeners c opened, which an
// upgrade lends to the new process. d.mu must be held, or d not yet
// shared.
func (d *daemon) noteAdmin(c *adminChange) {
	if c.moveAdmin {
		d.adminLn = c.admin
	}
	if c.moveMetrics {
		d.metricsLn = c.metrics
	}
}

// fail reports an error that ends the daemon.
func (d *daemon) fail(err error) {
	select {
	case d.failed <- err:
	default:
	}
}

func (d *daemon) serveProxy(ln net.Listener) {
	d.wg.Go(func() {
		err := d.srv.Serve(ln)
		if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			d.log.Error("serve stopped", zap.Error(err))
			d.fail(err)
		}
	})
}

// reload re-reads the config file and applies it: to new connections, to
// the backend set, to the listeners. An invalid file, or one whose
// certificate or listener cannot be set up, changes nothing.
func (d *daemon) reload() {
	if d.path == "" {
		d.log.Warn("reload ignored: running on built-in defaults, no file to re-read")
		return
	}
	if err := d.apply(d.path); err != nil {
		d.reloads.WithLabelValues("failed").Inc()
		d.log.Error("config reload failed; keeping the running config", zap.String("file", d.path), zap.Error(err))
		return
	}
	d.reloads.WithLabelValues("ok").Inc()
}

func (d *daemon) apply(path string) error {
	f, err := config.Load(path)
	if err != nil {
		return err
	}
	pc, err := proxyConfig(f)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.cur
	certs := d.certs
	if f.TLS.Cert != old.TLS.Cert || f.TLS.Key != old.TLS.Key || f.TLS.Cert != "" {
		// Certificates are read again on every reload, so a renewed file
		// under the same name takes effect.
		next := &certificate{}
		if err := next.load(f.TLS); err != nil {
			return err
		}
		certs = next
	}
	var ln net.Listener
	if f.Listen != old.Listen || f.ProxyProtocol != old.ProxyProtocol || (f.TLS.Cert == "") != (old.TLS.Cert == "") ||
		!slices.Equal(f.TLS.Curves, old.TLS.Curves) ||
		!equalPrefixes(f.Affinity.TrustedProxies, old.Affinity.TrustedProxies) && f.ProxyProtocol {
		if ln, err = listen(f, d.certs, d.srv.Loops()); err != nil {
			return err
		}
	}
	// The admin token is read again on every reload, so a rotated file
	// under the same name takes effect.
	adm, err := d.prepareAdmin(old, f)
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return err
	}
	// The proxy takes the new config before the backend set changes, so
	// that the new file's on_add and on_remove decide what the change does.
	d.srv.SetConfig(pc)
	if err := d.set.Update(upstreamConfig(f, pc)); err != nil {
		if oldPC, perr := proxyConfig(old); perr == nil {
			d.srv.SetConfig(oldPC)
		}
		if ln != nil {
			ln.Close()
		}
		adm.abort()
		return err
	}
	// Everything that can fail has succeeded: swap the rest in.
	d.level.SetLevel(logLevel(f.LogLevel))
	d.certs.set(certs)
	if ln != nil {
		d.ln.Close() // live connections are not the listener's: they stay
		d.ln = ln
		d.serveProxy(ln)
		d.log.Info("listening", zap.String("listen", ln.Addr().String()))
	}
	d.commitAdmin(adm)
	d.noteAdmin(adm)
	d.cur = f
	d.log.Info("config reloaded", zap.String("file", f.Path), zap.Int("backends", len(f.Upstreams)))
	return nil
}

// shutdownUnlessSignalled shuts down gracefully, unless another SIGINT or
// SIGTERM comes first: then it returns at once and the process exits with
// whatever is still open.
func (d *daemon) shutdownUnlessSignalled() error {
	again := make(chan os.Signal, 1)
	signal.Notify(again, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(again)
	done := make(chan struct{})
	go func() { d.shutdown(); close(done) }()
	select {
	case <-done:
		return nil
	case <-again:
		d.log.Warn("second signal: exiting without waiting for connections")
		return errForced
	}
}

// shutdown stops accepting, closes live connections with 1001 at
// migrate_rate and waits, bounded by shutdown_timeout.
func (d *daemon) shutdown() {
	d.mu.Lock()
	timeout := d.cur.ShutdownTimeout
	d.mu.Unlock()
	d.log.Info("shutting down", zap.Duration("timeout", timeout))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := d.srv.Shutdown(ctx)
	d.mu.Lock()
	if d.starting != nil { // never went live: its listeners were not served
		d.starting.abort()
		d.ln.Close()
		d.starting = nil
	}
	d.closeAdmin()
	d.mu.Unlock()
	d.cancel()
	d.wg.Wait()
	if err != nil {
		d.log.Warn("shutdown cut short", zap.Error(err))
	}
	d.log.Info("stopped")
}
