package main

import (
	"context"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/wsedge/wsedge/cmd/wsedge/internal/chat"
	"github.com/wsedge/wsedge/cmd/wsedge/internal/config"
)

//go:embed demo.html
var demoPage string

const demoUsage = `usage:
  wsedge demo [--listen 127.0.0.1:8080] [--admin 127.0.0.1:9090] [--redis HOST:PORT]
      the proxy in front of three chat servers in this process, with a page to open in a browser
  wsedge demo backends --listen ADDR [--listen ADDR ...] [--redis HOST:PORT] [--duration 1h]
      chat servers alone, one per --listen, for a proxy of your own (e.g. testdata/bench/run.sh)
`

// demo runs `wsedge demo`: the proxy in front of three chat servers of one
// room, which fan messages out to each other through Redis when --redis is
// given and through an in-process broker otherwise. The servers serve the
// page too (through the proxy), and its controls to kill and revive them.
func demo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "backends" {
		return demoBackends(ctx, args[1:], stdout, stderr)
	}
	fs := newFlags("demo", stderr)
	fs.Usage = func() { fmt.Fprint(stderr, demoUsage) }
	listen := fs.String("listen", "127.0.0.1:8080", "where the proxy listens")
	admin := fs.String("admin", "127.0.0.1:9090", `admin listener ("" disables)`)
	redisAddr := fs.String("redis", "", "Redis server (host:port) the chat servers fan out through; none: in-process")
	if err := fs.Parse(args); err != nil {
		return err
	}
	f := demoConfig(*listen, *admin)
	log, level := newLogger(f, stderr)
	page, err := template.New("demo").Parse(demoPage)
	if err != nil {
		return err
	}
	broker, closeBroker := demoBroker(*redisAddr)
	defer closeBroker()
	fleet := &chat.Fleet{}
	mux := http.NewServeMux()
	mux.Handle("/demo/", fleet)
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		name, addr := chat.ServedBy(r)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_ = page.Execute(w, map[string]string{"Backend": name, "Addr": addr, "Broker": broker.String()})
	})
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		name, _ := chat.ServedBy(r)
		fmt.Fprintln(w, name)
	})
	var cfgs []chat.Config
	for i := 1; i <= 3; i++ {
		cfgs = append(cfgs, chat.Config{Name: fmt.Sprintf("demo-%d", i), Broker: broker, Handler: mux, Log: log})
	}
	if err := fleet.Start(cfgs); err != nil {
		return err
	}
	defer fleet.Close()
	for _, s := range fleet.Servers() {
		f.Upstreams = append(f.Upstreams, config.Upstream{Address: s.Addr(), Weight: 1})
	}
	d, err := startDaemon(f, log, level)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wsedge demo: open http://%s/ in a browser, in several tabs (each tab is a member of the chat room)\n", *listen)
	for _, s := range fleet.Servers() {
		fmt.Fprintf(stdout, "  backend %s on %s\n", s.Name(), s.Addr())
	}
	fmt.Fprintf(stdout, "  fan-out: %s\n", broker)
	if *admin != "" {
		fmt.Fprintf(stdout, "  dashboard: http://%s/dashboard\n", *admin)
		fmt.Fprintf(stdout, "  ring: curl http://%s/debug/ring\n", *admin)
	}
	fmt.Fprintln(stdout, "press Ctrl-C to stop")
	<-ctx.Done()
	// The proxy first: every tab gets 1001 from it, rather than a 1012
	// for each backend stopping after it.
	d.shutdown()
	return nil
}

// demoConfig is the proxy of the demo: its defaults, but affinity keyed on
// Sec-WebSocket-Protocol, in which the page offers a token of its tab, so
// that the tabs of one browser on one machine (one client IP) spread over
// the backends as the clients of many machines would; plain requests
// (the page itself) fall back to the client IP. Health checks run every
// half second so that a killed backend leaves the ring, and a revived one
// joins it, within about a second.
func demoConfig(listen, admin string) *config.File {
	f := config.Default()
	f.Listen, f.AdminListen, f.Upstreams, f.LogFormat = listen, admin, nil, "console"
	f.ShutdownTimeout = 5 * time.Second
	f.Affinity.Key, f.Affinity.Header = "header", "Sec-WebSocket-Protocol"
	f.Health.Interval, f.Health.Timeout, f.Health.Rise, f.Health.Fall = 500*time.Millisecond, 400*time.Millisecond, 2, 2
	return f
}

// demoBroker is Redis at addr, or an in-process broker when addr is "".
func demoBroker(addr string) (chat.Broker, func()) {
	if addr == "" {
		return &chat.Memory{}, func() {}
	}
	r := chat.NewRedis(addr)
	return r, func() { _ = r.Close() }
}

// demoBackends runs `wsedge demo backends`: chat servers only, one per
// --listen, named after their addresses, until ctx ends or --duration
// passes. With several processes on one Redis they are one room.
func demoBackends(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo backends", stderr)
	fs.Usage = func() { fmt.Fprint(stderr, demoUsage) }
	var listen stringList
	fs.Var(&listen, "listen", "address to serve a chat server on; repeat for several")
	redisAddr := fs.String("redis", "", "Redis server (host:port) to fan out through; none: in-process (one process is one room)")
	limit := fs.Duration("duration", time.Hour, "stop after this long")
	queue := fs.Int("queue", 0, "messages queued per client before it is dropped as a slow consumer (0: 256)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(listen) == 0 {
		return fmt.Errorf("demo backends: --listen is required")
	}
	f := config.Default()
	f.LogFormat = "console"
	log, _ := newLogger(f, stderr)
	broker, closeBroker := demoBroker(*redisAddr)
	defer closeBroker()
	var fleet chat.Fleet
	var cfgs []chat.Config
	for _, addr := range listen {
		cfgs = append(cfgs, chat.Config{Name: addr, Addr: addr, Broker: broker, QueueLen: *queue, Log: log})
	}
	if err := fleet.Start(cfgs); err != nil {
		return err
	}
	defer fleet.Close()
	log.Info("chat servers started", zap.Strings("listen", listen), zap.Stringer("broker", broker))
	fmt.Fprintf(stdout, "chat servers on %v, fan-out through %s\n", []string(listen), broker)
	ctx, cancel := context.WithTimeout(ctx, *limit)
	defer cancel()
	<-ctx.Done()
	return nil
}
