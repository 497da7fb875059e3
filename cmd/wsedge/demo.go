package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/wsedge/wsedge/cmd/wsedge/internal/config"
)

//go:embed demo.html
var demoPage string

// demo runs the proxy on its defaults in front of three echo backends in
// this process, and serves a page (through the proxy, from the sticky
// backend) that shows which backend a browser is stuck to.
func demo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "where the proxy listens")
	admin := fs.String("admin", "127.0.0.1:9090", `admin listener ("" disables)`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	page := template.Must(template.New("demo").Parse(demoPage))
	f := config.Default()
	f.Listen, f.AdminListen, f.Upstreams, f.LogFormat = *listen, *admin, nil, "console"
	var backends []*demoBackend
	defer func() {
		for _, b := range backends {
			b.close()
		}
	}()
	for i := 1; i <= 3; i++ {
		b, err := startDemoBackend(fmt.Sprintf("demo-%d", i), page)
		if err != nil {
			return err
		}
		backends = append(backends, b)
		f.Upstreams = append(f.Upstreams, config.Upstream{Address: b.addr, Weight: 1})
	}
	log, level := newLogger(f, stderr)
	d, err := startDaemon(f, log, level)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wsedge demo: open http://%s/ in a browser (reload it: you stay on the same backend)\n", *listen)
	for _, b := range backends {
		fmt.Fprintf(stdout, "  backend %s on %s\n", b.name, b.addr)
	}
	if *admin != "" {
		fmt.Fprintf(stdout, "  ring: curl http://%s/debug/ring\n", *admin)
	}
	fmt.Fprintln(stdout, "press Ctrl-C to stop")
	<-ctx.Done()
	d.shutdown()
	return nil
}

// demoBackend is a tiny app server: it serves the demo page and echoes
// WebSocket messages, saying who it is.
type demoBackend struct {
	name string
	addr string
	srv  *http.Server
	wg   sync.WaitGroup
}

func startDemoBackend(name string, page *template.Template) (*demoBackend, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &demoBackend{name: name, addr: ln.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		page.Execute(w, map[string]string{"Backend": b.name, "Addr": b.addr})
	})
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, b.name)
	})
	mux.HandleFunc("/ws", b.serveWebSocket)
	b.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	b.wg.Go(func() { b.srv.Serve(ln) })
	return b, nil
}

// serveWebSocket greets with the backend's name, then echoes.
func (b *demoBackend) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	conn, _, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		return
	}
	defer conn.Close()
	hello, _ := json.Marshal(map[string]string{"backend": b.name, "addr": b.addr, "client": r.Header.Get("X-Real-IP")})
	if err := wsutil.WriteServerText(conn, hello); err != nil {
		return
	}
	for {
		msg, op, err := wsutil.ReadClientData(conn)
		if err != nil {
			return
		}
		if err := wsutil.WriteServerMessage(conn, op, msg); err != nil {
			return
		}
	}
}

func (b *demoBackend) close() {
	b.srv.Close()
	b.wg.Wait()
}
