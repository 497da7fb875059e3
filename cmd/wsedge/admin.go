package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/wsedge/wsedge/cmd/wsedge/internal/config"
)

const (
	// minAdminToken is the shortest admin token accepted, in bytes: enough
	// that guessing it over the network is hopeless even for a short one
	// made of hex digits.
	minAdminToken = 16
	// maxAdminToken bounds what is read of admin_token_file, so that a
	// path to a device or a log file fails instead of filling memory.
	maxAdminToken = 4096
)

// readAdminToken reads the bearer token in path: one line, at least
// minAdminToken bytes once the whitespace around it is trimmed, and
// nothing an HTTP header cannot carry.
func readAdminToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("admin_token_file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxAdminToken+1))
	if err != nil {
		return "", fmt.Errorf("admin_token_file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	switch {
	case len(b) > maxAdminToken:
		return "", fmt.Errorf("admin_token_file %s: longer than %d bytes; want one token on one line", path, maxAdminToken)
	case tok == "":
		return "", fmt.Errorf("admin_token_file %s: empty; want one token on one line", path)
	case strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r >= 0x7f }):
		return "", fmt.Errorf("admin_token_file %s: want one token on one line, of printable ASCII without spaces", path)
	case len(tok) < minAdminToken:
		return "", fmt.Errorf("admin_token_file %s: token is %d bytes, want at least %d", path, len(tok), minAdminToken)
	}
	return tok, nil
}

// adminHandler serves the proxy's admin endpoints, the metrics and the
// profiler, all behind d.guard: whatever is added here later is covered.
func (d *daemon) adminHandler(metrics *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", d.srv.AdminHandler())
	mux.Handle("GET /metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return d.guard.Wrap(mux)
}

// metricsHandler serves GET /metrics alone, for metrics_listen: a scraper
// given that address reaches neither drain nor the profiler, so it needs
// no admin token. What /metrics tells (backend addresses, counts) is for
// whoever can reach metrics_listen: bind it where only scrapers can.
func metricsHandler(metrics *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}))
	return mux
}

// adminChange is what a start or a reload does to the admin surface: the
// token, and the admin and metrics listeners opened for it. Everything that
// can fail happens in prepareAdmin, so a failed reload changes nothing.
type adminChange struct {
	start       bool   // the daemon is starting: nothing to log, nothing to close
	token       string // "" for none
	moveAdmin   bool   // admin_listen changed: close the old listener
	moveMetrics bool   // metrics_listen changed: close the old listener
	admin       net.Listener
	metrics     net.Listener
}

// prepareAdmin reads f's token and opens the listeners whose address
// differs from old's; old is nil at start.
func (d *daemon) prepareAdmin(old, f *config.File) (*adminChange, error) {
	c := &adminChange{start: old == nil}
	if old == nil {
		old = &config.File{}
	}
	if f.AdminTokenFile != "" {
		tok, err := readAdminToken(f.AdminTokenFile)
		if err != nil {
			return nil, err
		}
		c.token = tok
	}
	var err error
	c.moveAdmin = f.AdminListen != old.AdminListen
	if c.moveAdmin && f.AdminListen != "" {
		if c.admin, err = net.Listen("tcp", f.AdminListen); err != nil {
			return nil, fmt.Errorf("admin listen: %w", err)
		}
	}
	c.moveMetrics = f.MetricsListen != old.MetricsListen
	if c.moveMetrics && f.MetricsListen != "" {
		if c.metrics, err = net.Listen("tcp", f.MetricsListen); err != nil {
			c.abort()
			return nil, fmt.Errorf("metrics listen: %w", err)
		}
	}
	return c, nil
}

// abort closes what prepareAdmin opened, for a reload that failed after it.
func (c *adminChange) abort() {
	for _, ln := range []net.Listener{c.admin, c.metrics} {
		if ln != nil {
			ln.Close()
		}
	}
}

// addr is ln's address, or "" when there is none.
func addr(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// commitAdmin swaps c in: the new token answers the next request, and a
// moved listener is closed and its successor served. d.mu must be held, or
// d not yet shared.
func (d *daemon) commitAdmin(c *adminChange) {
	d.guard.SetToken(c.token)
	if c.moveAdmin {
		d.admin = d.moveServer(d.admin, c.admin, d.adminMux, c.start, "admin")
	}
	if c.moveMetrics {
		d.metrics = d.moveServer(d.metrics, c.metrics, d.metricsMux, c.start, "metrics")
	}
}

// moveServer closes old, when there is one, and serves h on ln, when there
// is one, returning the new server.
func (d *daemon) moveServer(old *http.Server, ln net.Listener, h http.Handler, start bool, what string) *http.Server {
	if old != nil {
		old.Close()
		d.log.Info(what+" listener closed", zap.String("addr", old.Addr))
	}
	if ln == nil {
		return nil
	}
	srv := &http.Server{Addr: ln.Addr().String(), Handler: h, ReadHeaderTimeout: 5 * time.Second}
	d.wg.Go(func() { srv.Serve(ln) })
	if !start {
		d.log.Info(what+" listening", zap.String(what, srv.Addr))
	}
	return srv
}

// closeAdmin stops the admin and metrics listeners, at shutdown. d.mu must
// be held.
func (d *daemon) closeAdmin() {
	for _, srv := range []*http.Server{d.admin, d.metrics} {
		if srv != nil {
			srv.Close()
		}
	}
}
