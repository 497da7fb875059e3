package chat

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"
)

// Config is one chat server. Name and Broker are required; every other
// zero value means the default given.
type Config struct {
	// Name is how clients and the other servers know this one.
	Name string
	// Addr is where it listens. Default "127.0.0.1:0".
	Addr string
	// Broker carries messages between the servers of the room.
	Broker Broker
	// Channel is the room's broker channel. Default "wsedge-demo".
	Channel string
	// QueueLen bounds each client's send queue; a client whose queue is
	// full when a message is due is dropped with 1008. Default 256; at
	// least 8, for the three messages a joining client gets at once.
	QueueLen int
	// PingInterval is how often each client is pinged. Default 10s.
	PingInterval time.Duration
	// PongTimeout is how much longer than PingInterval a client may stay
	// silent before it is dropped with 1008. Default 5s.
	PongTimeout time.Duration
	// WriteTimeout bounds one write to a client (longer: dropped) and one
	// publish to the broker. Default 5s.
	WriteTimeout time.Duration
	// PresenceInterval is how often the server tells the others who is
	// connected to it; a server not heard from for three intervals is
	// gone. Default 2s.
	PresenceInterval time.Duration
	// MembersInterval is the most often clients are told the membership
	// changed. Default 500ms.
	MembersInterval time.Duration
	// History is how many recent messages a joining client gets. Default
	// 20; negative means none.
	History int
	// MaxText bounds a message's text in bytes. Default 2000.
	MaxText int
	// Handler serves every path but /ws and /healthz (the demo's page);
	// ServedBy tells it which server it runs in. Nil answers 404.
	Handler http.Handler
	// Log is where state changes go. Nil logs nothing.
	Log *zap.Logger
}

func (c *Config) defaults() error {
	if c.Name == "" || c.Broker == nil {
		return errors.New("chat: a server needs a name and a broker")
	}
	c.Addr = cmp.Or(c.Addr, "127.0.0.1:0")
	c.Channel = cmp.Or(c.Channel, "wsedge-demo")
	c.QueueLen = max(cmp.Or(c.QueueLen, 256), 8)
	c.PingInterval = cmp.Or(c.PingInterval, 10*time.Second)
	c.PongTimeout = cmp.Or(c.PongTimeout, 5*time.Second)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, 5*time.Second)
	c.PresenceInterval = cmp.Or(c.PresenceInterval, 2*time.Second)
	c.MembersInterval = cmp.Or(c.MembersInterval, 500*time.Millisecond)
	c.History = max(cmp.Or(c.History, 20), 0)
	c.MaxText = cmp.Or(c.MaxText, 2000)
	if c.Handler == nil {
		c.Handler = http.NotFoundHandler()
	}
	if c.Log == nil {
		c.Log = zap.NewNop()
	}
	c.Log = c.Log.With(zap.String("backend", c.Name))
	return nil
}

// cmpOr is cmp.Or for the config's numbers and strings: v unless it is
// zero.
func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Server is one running chat server. Its methods are safe for concurrent
// use. Close or Kill stops it; either waits for every goroutine it
// started.
type Server struct {
	cfg    Config
	addr   string
	room   *room
	srv    *http.Server
	cancel context.CancelFunc
	wg     sync.WaitGroup // the serve loop, the room's loops
	up     chan struct{}  // closed when the broker first confirmed the subscription
	upOnce sync.Once
	// upgrader speaks chat.v1, or no subprotocol to clients that offer
	// none. The page offers chat.v1 and a token of its tab, so that a
	// proxy can key affinity on Sec-WebSocket-Protocol.
	upgrader websocket.Upgrader

	mu       sync.Mutex // guards stopped and the Add side of handlers
	stopped  bool
	handlers sync.WaitGroup // WebSocket handlers, which outlive net/http's tracking once hijacked
}

// servedBy is the context key under which Config.Handler finds its server.
type servedBy struct{}

// ServedBy returns the name and address of the server a request came to,
// for a Config.Handler.
func ServedBy(r *http.Request) (name, addr string) {
	if s, ok := r.Context().Value(servedBy{}).(*Server); ok {
		return s.cfg.Name, s.addr
	}
	return "", ""
}

// Start listens on cfg.Addr, subscribes to the room and serves. It waits
// up to a second for the broker to confirm the subscription, so that the
// first clients miss nothing, and starts without it after that: a server
// whose broker is down serves its clients and tells them so.
func Start(cfg Config) (*Server, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("chat %s: %w", cfg.Name, err)
	}
	s := &Server{cfg: cfg, addr: ln.Addr().String(), up: make(chan struct{}),
		upgrader: websocket.Upgrader{Subprotocols: []string{"chat.v1"}}}
	s.room = newRoom(&s.cfg, s.addr)
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Go(func() {
		s.cfg.Broker.Subscribe(ctx, s.cfg.Channel, s.room.deliver, func(up bool) {
			s.room.link(up)
			if up {
				s.upOnce.Do(func() { close(s.up) })
			}
		})
	})
	s.wg.Go(func() { s.room.run(ctx) })
	select {
	case <-s.up:
	case <-time.After(time.Second):
		cfg.Log.Warn("starting without the broker", zap.String("broker", cfg.Broker.String()))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", s.serveWS)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok", s.cfg.Name) })
	mux.Handle("/", s.cfg.Handler)
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return context.WithValue(ctx, servedBy{}, s) },
	}
	s.wg.Go(func() { _ = s.srv.Serve(ln) })
	return s, nil
}

// Addr is where the server listens.
func (s *Server) Addr() string { return s.addr }

// Name is the server's name.
func (s *Server) Name() string { return s.cfg.Name }

// Stats is what a server did so far.
type Stats struct {
	Clients   int   `json:"clients"`
	Published int64 `json:"published"` // messages its clients published
	Failed    int64 `json:"failed"`    // messages its clients sent that the broker did not take
	Delivered int64 `json:"delivered"` // messages it took from the broker and fanned out
	Slow      int64 `json:"slow"`      // messages a client's full queue refused (it was dropped)
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	return Stats{
		Clients: s.room.count(), Published: s.room.published.Load(), Failed: s.room.failed.Load(),
		Delivered: s.room.delivered.Load(), Slow: s.room.slow.Load(),
	}
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		http.Error(w, "server stopping", http.StatusServiceUnavailable)
		return
	}
	s.handlers.Add(1)
	s.mu.Unlock()
	defer s.handlers.Done()
	conn, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade has answered
	}
	q := r.URL.Query()
	n := s.room.conns.Add(1)
	id := cleanID(q.Get("id"))
	if id == "" {
		id = "anon-" + strconv.FormatUint(n, 36)
	}
	nick := cleanName(q.Get("nick"), 24)
	if nick == "" {
		nick = id
	}
	c := newClient(conn, id, nick, strconv.FormatUint(n, 36), s.cfg.QueueLen)
	if !s.room.join(c, clientAddr(r)) {
		_ = conn.Close() // the server stopped while this client upgraded
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.writeLoop(&s.cfg)
	}()
	c.readLoop(&s.cfg, func(c *client, text string) { s.room.say(r.Context(), c, text) })
	s.room.leave(c)
	<-done
}

// clientAddr is the client's address: the one the proxy in front says,
// else the peer's.
func clientAddr(r *http.Request) string {
	if ip := r.Header.Get("X-Real-IP"); ip != "" {
		return ip
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// stop marks the server stopping and stops accepting.
func (s *Server) stop() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	s.stopped = true
	_ = s.srv.Close() // the listener and plain HTTP connections
	return true
}

// Close shuts the server down politely: every client gets 1001 and up to
// wait to go, then the rest are cut.
func (s *Server) Close(wait time.Duration) {
	if !s.stop() {
		return
	}
	s.room.shutdown(websocket.CloseGoingAway, "server shutting down")
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.handlers.Wait()
	}()
	select {
	case <-done:
	case <-time.After(wait):
		s.room.cut()
		<-done
	}
	s.cancel()
	s.wg.Wait()
}

// Kill stops the server as the death of its process would: the listener
// closes and every connection is cut without a close frame. Its clients
// learn it from the proxy (1012, "backend went away").
func (s *Server) Kill() {
	if !s.stop() {
		return
	}
	s.cancel()
	s.room.cut()
	s.handlers.Wait()
	s.wg.Wait()
}
