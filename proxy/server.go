package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"go.uber.org/zap"
)

// Server is the proxy: it takes clients from a listener, routes each to its
// sticky backend and relays WebSockets and plain HTTP. Build it with New,
// run Serve on a listener and WatchMembers beside it; stop it with
// Shutdown. It is safe for concurrent use.
type Server struct {
	log     *zap.Logger
	router  *router
	members memberSource
	pool    *bufPool
	reg     *registry
	places  *placements
	mig     *migrator
	drains  sync.WaitGroup // background drains, ended by Shutdown

	// life ends when Shutdown starts; background work stops with it.
	life     context.Context
	endLife  context.CancelFunc
	stopping atomic.Bool
	proxy   *httputil.ReverseProxy
	http    *http.Server
	poll    *poller
	ids     atomic.Uint64

	// goroutinesOnly makes every connection use the goroutine driver, so
	// tests can run the same behaviour through both drivers.
	goroutinesOnly bool
}

// New returns a Server routing over the backends of members.
func New(cfg Config, members memberSource, log *zap.Logger) *Server {
	if log == nil {
		log = zap.NewNop()
	}
	s := &Server{
		log:     log,
		router:  newRouter(cfg, members.Snapshot()),
		members: members,
		pool:    newBufPool(),
		reg:     newRegistry(),
		places:  newPlacements(),
		mig:     newMigrator(),
	}
	s.life, s.endLife = context.WithCancel(context.Background())
	s.poll = newPoller(s)
	cfg = s.router.table().cfg
	s.proxy = s.newHTTPProxy(newTransport(cfg))
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: cfg.HandshakeTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          zap.NewStdLog(log),
	}
	return s
}

// Serve accepts clients on ln until Shutdown. It returns
// http.ErrServerClosed after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.http.Serve(ln)
}

// SetConfig applies cfg to new connections; live ones keep theirs.
func (s *Server) SetConfig(cfg Config) {
	s.router.setConfig(cfg)
}

// Shutdown stops accepting, reports not ready, closes every live WebSocket
// with 1001 at migrate_rate while in-flight HTTP requests finish, and waits
// for all of it until ctx ends; whatever is left then is cut.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopping.Store(true)
	httpDone := make(chan error, 1)
	go func() { httpDone <- s.http.Shutdown(ctx) }()
	s.endLife()
	s.drains.Wait()
	goingAway := ending{cause: "proxy shutting down", linger: true,
		clientCode: ws.StatusGoingAway, clientReason: "proxy shutting down", code: ws.StatusGoingAway,
		backendCode: ws.StatusGoingAway, backendReason: "proxy shutting down"}
	rate := s.router.table().cfg.MigrateRate
	// Handshakes under way when the listener closed register late: go
	// round until nothing is left.
	for ctx.Err() == nil {
		conns := s.reg.sessions("")
		if len(conns) == 0 {
			break
		}
		closePaced(ctx, conns, rate, goingAway)
		select {
		case <-s.reg.emptied():
		case <-ctx.Done():
		case <-time.After(closeWait + lastWordTimeout):
		}
	}
	var err error
	if ctx.Err() != nil {
		for _, c := range s.reg.sessions("") {
			c.abort()
		}
		err = ctx.Err()
	}
	s.poll.stop()
	<-s.reg.emptied()
	return errors.Join(err, <-httpDone)
}

// ServeHTTP routes one request: a WebSocket upgrade is relayed frame by
// frame, anything else is reverse proxied, both to the client's backend.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := s.router.table()
	upgrade := isWebSocketUpgrade(r)
	if upgrade {
		if he := checkClientHandshake(r); he != nil {
			s.writeHandshakeError(w, r, he)
			return
		}
	}
	rt, err := s.route(t, r, upgrade)
	if err != nil {
		s.writeHandshakeError(w, r, &handshakeError{status: http.StatusServiceUnavailable, msg: err.Error(), err: err})
		return
	}
	if !upgrade {
		s.serveHTTP(w, r, rt)
		return
	}
	s.serveWebSocket(w, r, t, rt)
}

// route routes r. A WebSocket's route is reserved in the registry, counted
// as load, until its connection registers or its handshake fails; with
// bounded loads the choice and the reservation are one step, so a burst of
// clients cannot all pile onto the same backend.
func (s *Server) route(t *table, r *http.Request, websocket bool) (route, error) {
	if t.cfg.LoadFactor <= 0 {
		rt, err := t.route(peerAddr(r), r.Header, nil)
		if err == nil && websocket {
			s.reg.reserve(rt.backend)
		}
		return rt, err
	}
	s.reg.mu.Lock()
	defer s.reg.mu.Unlock()
	rt, err := t.route(peerAddr(r), r.Header, boundedView{s})
	if err == nil && websocket {
		s.reg.reserveLocked(rt.backend)
	}
	return rt, err
}

// boundedView shows bounded loads the registry, whose lock the caller
// holds, and the remembered placements.
type boundedView struct{ s *Server }

func (v boundedView) load(backend string) (int, int) { return v.s.reg.loadLocked(backend) }

func (v boundedView) placed(key uint64) (string, bool) { return v.s.places.get(key, time.Now()) }

func (v boundedView) place(key uint64, backend string) { v.s.places.put(key, backend, time.Now()) }

func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request, t *table, rt route) {
	registered := false
	defer func() {
		if !registered {
			s.reg.unreserve(rt.backend)
		}
	}()
	bh, err := s.dialBackend(r.Context(), t, r, rt)
	if err != nil {
		var ref *refusal
		var he *handshakeError
		switch {
		case errors.As(err, &ref):
			writeRefusal(w, ref)
			s.log.Info("backend refused upgrade", zap.String("remote", r.RemoteAddr),
				zap.String("backend", rt.backend), zap.Int("status", ref.status))
		case errors.As(err, &he):
			s.writeHandshakeError(w, r, he)
		}
		return
	}
	extra := bh.header
	if rt.setCookie != "" {
		extra.Add("Set-Cookie", t.routeCookie(rt.setCookie))
	}
	conn, pending, err := s.acceptClient(w, r, bh, extra)
	if err != nil {
		bh.conn.Close()
		s.log.Info("client handshake failed", zap.String("remote", r.RemoteAddr), zap.Error(err))
		return
	}
	registered = true
	if !s.goroutinesOnly && isTCP(conn) && isTCP(bh.conn) {
		l, err := s.poll.pick()
		if err == nil {
			err = s.startEconn(l, &t.cfg, rt, conn, bh.conn, pending, bh.pending, len(bh.exts) > 0)
			if err != nil {
				s.log.Warn("event loop refused a connection", zap.String("remote", r.RemoteAddr), zap.Error(err))
			}
			return
		}
	}
	sess := s.newSession(&t.cfg, rt, conn, pending, bh)
	s.reg.add(sess)
	sess.run()
}

// isTCP reports whether c is a plain TCP socket, which the event loops can
// drive; TLS connections need a goroutine per direction.
func isTCP(c net.Conn) bool {
	_, ok := c.(*net.TCPConn)
	return ok
}
