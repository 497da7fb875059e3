package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
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
	}
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

// WatchMembers rebuilds the ring whenever the member set changes, until ctx
// ends.
func (s *Server) WatchMembers(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.members.Changed():
			_, cur := s.router.setMembers(s.members.Snapshot())
			s.log.Info("ring changed", zap.Int("backends", cur.ring.Len()),
				zap.Uint64("version", cur.snapshot.Version))
		}
	}
}

// SetConfig applies cfg to new connections; live ones keep theirs.
func (s *Server) SetConfig(cfg Config) {
	s.router.setConfig(cfg)
}

// Shutdown stops accepting, finishes in-flight HTTP requests, closes every
// live WebSocket with 1001 and waits for them until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	for _, sess := range s.reg.sessions("") {
		sess.requestClose(ending{cause: "proxy shutting down", linger: true,
			clientCode: ws.StatusGoingAway, clientReason: "proxy shutting down", code: ws.StatusGoingAway,
			backendCode: ws.StatusGoingAway, backendReason: "proxy shutting down"})
	}
	done := make(chan struct{})
	go func() { s.reg.wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		err = errors.Join(err, ctx.Err())
	}
	s.poll.stop()
	return err
}

// ServeHTTP routes one request: a WebSocket upgrade is relayed frame by
// frame, anything else is reverse proxied, both to the client's backend.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := s.router.table()
	rt, err := t.route(peerAddr(r), r.Header)
	upgrade := isWebSocketUpgrade(r)
	if upgrade {
		if he := checkClientHandshake(r); he != nil {
			s.writeHandshakeError(w, r, he)
			return
		}
	}
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

func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request, t *table, rt route) {
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
