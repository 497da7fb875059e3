package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/wsedge/wsedge/cmd/wsedge/internal/config"
	"github.com/wsedge/wsedge/proxy"
	"github.com/wsedge/wsedge/upstream"
)

// serve runs the proxy until ctx ends (SIGINT or SIGTERM), re-reading its
// config on SIGHUP.
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
		case <-ctx.Done():
			return d.shutdown()
		}
	}
}

// daemon is a running proxy with its listeners, as serve and demo run it.
type daemon struct {
	log   *zap.Logger
	level zap.AtomicLevel
	path  string // config file to re-read on reload; "" for none

	set   *upstream.Set
	srv   *proxy.Server
	admin *http.Server

	mu  sync.Mutex // guards cur
	cur *config.File

	cancel context.CancelFunc
	wg     sync.WaitGroup // the goroutines serving listeners and watching members
}

func startDaemon(f *config.File, log *zap.Logger, level zap.AtomicLevel) (*daemon, error) {
	pc, err := proxyConfig(f)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", f.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemon{log: log, level: level, path: f.Path, cur: f, cancel: cancel}
	d.set = upstream.NewSet(staticBackends(f))
	d.srv = proxy.New(pc, d.set, log)
	adminAddr := ""
	if f.AdminListen != "" {
		aln, err := net.Listen("tcp", f.AdminListen)
		if err != nil {
			ln.Close()
			cancel()
			return nil, fmt.Errorf("admin listen: %w", err)
		}
		adminAddr = aln.Addr().String()
		d.admin = &http.Server{Handler: d.adminHandler(), ReadHeaderTimeout: 5 * time.Second}
		d.wg.Go(func() { d.admin.Serve(aln) })
	}
	d.wg.Go(func() { d.srv.WatchMembers(ctx) })
	d.wg.Go(func() {
		if err := d.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("serve stopped", zap.Error(err))
		}
	})
	log.Info("listening", zap.String("listen", ln.Addr().String()), zap.String("admin", adminAddr),
		zap.Int("backends", len(f.Upstreams)))
	return d, nil
}

// adminHandler serves the proxy's admin endpoints and the profiler.
func (d *daemon) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", d.srv.AdminHandler())
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// reload re-reads the config file and applies it to new connections. An
// invalid file changes nothing.
func (d *daemon) reload() {
	if d.path == "" {
		d.log.Warn("reload ignored: running on built-in defaults, no file to re-read")
		return
	}
	f, err := config.Load(d.path)
	if err == nil {
		var pc proxy.Config
		if pc, err = proxyConfig(f); err == nil {
			d.level.SetLevel(logLevel(f.LogLevel))
			d.srv.SetConfig(pc)
			d.set.Replace(staticBackends(f))
			d.mu.Lock()
			d.cur = f
			d.mu.Unlock()
			d.log.Info("config reloaded", zap.String("file", f.Path), zap.Int("backends", len(f.Upstreams)))
			return
		}
	}
	d.log.Error("config reload failed; keeping the running config", zap.String("file", d.path), zap.Error(err))
}

// shutdown stops accepting, closes live connections with 1001 and waits,
// bounded by shutdown_timeout.
func (d *daemon) shutdown() error {
	d.mu.Lock()
	timeout := d.cur.ShutdownTimeout
	d.mu.Unlock()
	d.log.Info("shutting down", zap.Duration("timeout", timeout))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := d.srv.Shutdown(ctx)
	if d.admin != nil {
		d.admin.Close()
	}
	d.cancel()
	d.wg.Wait()
	if err != nil {
		d.log.Warn("shutdown cut short", zap.Error(err))
	}
	d.log.Info("stopped")
	return nil
}
