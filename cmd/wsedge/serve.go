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
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/wsedge/wsedge/cmd/wsedge/internal/config"
	"github.com/wsedge/wsedge/proxy"
	"github.com/wsedge/wsedge/upstream"
)

// errForced is returned when a second signal cut the graceful shutdown short.
var errForced = errors.New("second signal: stopped without waiting for connections")

// serve runs the proxy until SIGINT or SIGTERM, re-reading its config on
// SIGHUP. The first stop signal shuts down gracefully; a second one exits
// at once.
func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	path := fs.String("config", "", "config file (default ./proxy.toml when present, else built-in defaults)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	f, defaulted, err := loadConfig(*path)
	if err != nil {
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
	d, err := startDaemon(f, log, level)
	if err != nil {
		return err
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			d.reload()
		case err := <-d.failed:
			d.shutdown()
			return err
		case <-ctx.Done():
			return d.shutdownUnlessSignalled()
		}
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

	set     *upstream.Set
	srv     *proxy.Server
	certs   *certificate
	reloads *prometheus.CounterVec

	mu         sync.Mutex // guards cur, ln, admin and metrics
	cur        *config.File
	ln         net.Listener
	admin      *http.Server
	adminMux   http.Handler
	metrics    *http.Server // on metrics_listen
	metricsMux http.Handler
	guard      proxy.AdminGuard // in front of adminMux; its token follows reloads
	cancel     context.CancelFunc
	wg         sync.WaitGroup // the goroutines serving listeners, watching members and checking health
}

func startDaemon(f *config.File, log *zap.Logger, level zap.AtomicLevel) (*daemon, error) {
	loops := spareProcessor(f.Tuning.Loops)
	pc, err := proxyConfig(f)
	if err != nil {
		return nil, err
	}
	d := &daemon{log: log, level: level, path: f.Path, cur: f, failed: make(chan error, 1), certs: &certificate{}}
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
	metrics.MustRegister(newGossipRejections(d.set))
	metrics.MustRegister(newDNSErrors(d.set))
	// Loops and io_uring are the process's: a reload does not change them.
	opts := []proxy.Option{proxy.WithLogger(log), proxy.WithMetrics(metrics), proxy.WithLoops(loops)}
	if f.Tuning.IOUring == "off" {
		opts = append(opts, proxy.WithoutIOUring())
	}
	d.srv = proxy.New(pc, d.set, opts...)
	d.adminMux = d.adminHandler(metrics)
	d.metricsMux = metricsHandler(metrics)

	ln, err := listen(f, d.certs, d.srv.Loops())
	if err != nil {
		return nil, err
	}
	d.ln = ln
	adm, err := d.prepareAdmin(nil, f)
	if err != nil {
		ln.Close()
		return nil, err
	}
	d.commitAdmin(adm)

	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	d.wg.Go(func() {
		if err := d.set.Run(ctx); err != nil && ctx.Err() == nil {
			d.fail(fmt.Errorf("backend set: %w", err))
		}
	})
	d.wg.Go(func() { d.srv.WatchMembers(ctx) })
	d.serveProxy(ln)
	log.Info("listening", zap.String("listen", ln.Addr().String()), zap.String("admin", addr(adm.admin)),
		zap.String("metrics", addr(adm.metrics)),
		zap.Int("backends", len(f.Upstreams)), zap.Bool("tls", f.TLS.Cert != ""),
		zap.Bool("proxy_protocol", f.ProxyProtocol))
	return d, nil
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
	d.closeAdmin()
	d.mu.Unlock()
	d.cancel()
	d.wg.Wait()
	if err != nil {
		d.log.Warn("shutdown cut short", zap.Error(err))
	}
	d.log.Info("stopped")
}
