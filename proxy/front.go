package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
)

// front is the HTTP side of the server as one config shapes it: the
// net/http server that reads request heads (handshake_timeout bounds a
// slow one, max_header_bytes a big one) and the transport plain requests
// go out on. A reload that changes any of these builds a new front for new
// connections; the old one finishes what it serves and goes.
type front struct {
	srv       *http.Server
	ln        *handoffListener
	transport *http.Transport
	key       frontKey
	served    chan struct{} // closed when srv.Serve returned
}

// frontKey is what a front is built from.
type frontKey struct {
	handshakeTimeout time.Duration
	maxHeaderBytes   int
	upstreamTLS      *tls.Config
}

func keyOf(cfg Config) frontKey {
	return frontKey{cfg.HandshakeTimeout, cfg.MaxHeaderBytes, cfg.UpstreamTLS}
}

func (s *Server) newFront(cfg Config) *front {
	f := &front{
		key:       keyOf(cfg),
		ln:        newHandoffListener(),
		transport: newTransport(cfg),
		served:    make(chan struct{}),
	}
	f.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: cfg.HandshakeTimeout,
		IdleTimeout:       2 * time.Minute,
		// net/http allows 4 KiB over its limit; take it off so that
		// max_header_bytes means about what it says on this path too.
		MaxHeaderBytes: max(cfg.MaxHeaderBytes-4096, 1),
		ErrorLog:       zap.NewStdLog(s.log),
		ConnContext:    withTLSConn,
	}
	go func() {
		defer close(f.served)
		f.srv.Serve(f.ln)
	}()
	return f
}

// shutdown stops f taking connections and lets its requests finish; when
// ctx ends first, whatever is left is closed.
func (f *front) shutdown(ctx context.Context) error {
	err := f.srv.Shutdown(ctx)
	if err != nil {
		f.srv.Close()
	}
	f.transport.CloseIdleConnections()
	<-f.served
	return err
}

// refreshFront builds a new front when cfg changed what the current one
// was built from, and retires the old one in the background: it finishes
// its requests (long polls included) unless the server shuts down first.
func (s *Server) refreshFront(cfg Config) {
	s.frontMu.Lock()
	defer s.frontMu.Unlock()
	old := s.front.Load()
	if old.key == keyOf(cfg) || s.stopping.Load() {
		return
	}
	s.front.Store(s.newFront(cfg))
	s.retiring.Go(func() { old.shutdown(s.life) })
}

// shutdownFronts shuts the current front down, bounded by ctx, and waits
// for the retiring ones, which end with the server's life.
func (s *Server) shutdownFronts(ctx context.Context) error {
	err := s.front.Load().shutdown(ctx)
	s.retiring.Wait()
	return err
}

// roundTrip sends plain HTTP requests on the current front's transport.
func (s *Server) roundTrip(r *http.Request) (*http.Response, error) {
	return s.front.Load().transport.RoundTrip(r)
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Serve accepts clients on ln until Shutdown and hands each to the current
// front. It returns http.ErrServerClosed after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if !s.track(ln, true) {
		return http.ErrServerClosed
	}
	defer s.track(ln, false)
	var err error
	if lln, ok := ln.(*loopListener); ok {
		err = s.serveLoops(lln)
	} else {
		err = s.acceptLoop(ln)
	}
	if s.stopping.Load() {
		return http.ErrServerClosed
	}
	return err
}

// acceptLoop accepts clients on a goroutine and hands each to a loop or to
// the current front, until ln is closed.
func (s *Server) acceptLoop(ln net.Listener) error {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.stopping.Load() {
				return err
			}
			if isTemporary(err) {
				// Out of descriptors or the like: wait rather than spin,
				// as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", zap.Error(err), zap.Duration("in", backoff))
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		if s.acceptUpgrade(c) {
			continue
		}
		if !s.front.Load().ln.deliver(newStrictConn(s, c, nil)) {
			c.Close()
		}
	}
}

// isTemporary reports whether an accept error is one a listener recovers
// from: too many open files, a connection aborted before it was accepted.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// track adds or removes a listener Shutdown must close. Adding fails once
// shutdown has begun.
func (s *Server) track(ln net.Listener, add bool) bool {
	s.frontMu.Lock()
	defer s.frontMu.Unlock()
	if !add {
		delete(s.listeners, ln)
		return true
	}
	if s.stopping.Load() {
		return false
	}
	s.listeners[ln] = struct{}{}
	return true
}

// closeListeners stops every Serve loop.
func (s *Server) closeListeners() {
	s.frontMu.Lock()
	defer s.frontMu.Unlock()
	for ln := range s.listeners {
		ln.Close()
	}
}

// handoffListener is the listener a front's server accepts from: the
// server's own accept loop hands it connections.
type handoffListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newHandoffListener() *handoffListener {
	return &handoffListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

// handOver passes c to the front's server without waiting for it, as an
// event loop must never wait: at once when the server is ready to take it,
// else from a goroutine of its own. c is closed if the listener closed.
func (l *handoffListener) handOver(c net.Conn) {
	select {
	case l.conns <- c:
	default:
		go func() {
			if !l.deliver(c) {
				c.Close()
			}
		}()
	}
}

// deliver passes c to the front's server; false when the listener closed.
func (l *handoffListener) deliver(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return handoffAddr{} }

type handoffAddr struct{}

func (handoffAddr) Network() string { return "handoff" }
func (handoffAddr) String() string  { return "handoff" }
