package upstream

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/gobwas/ws"
)

// userAgent names the checks in backends' access logs.
const userAgent = "wsedge-health"

// maxFrames bounds how many frames a websocket check reads while it waits
// for its pong or its close, so that a backend streaming data at it cannot
// keep it busy (the timeout bounds it too).
const maxFrames = 64

// aLongTimeAgo is a deadline that makes pending I/O fail at once.
var aLongTimeAgo = time.Unix(1, 0)

// checkFunc probes the backend at addr once; nil means it passed. ctx
// carries the check's timeout.
type checkFunc func(ctx context.Context, addr string) error

// checker runs one kind of health check. Every check opens its own
// connection, as a new client would, so that a backend which serves the
// connections it has but accepts no new ones fails. A checker is safe for
// concurrent use.
type checker struct {
	typ  string
	path string      // request URI of http and websocket checks
	tls  *tls.Config // nil for plain TCP
	http *http.Client
}

func newChecker(typ, path string, tlsConf *tls.Config) *checker {
	c := &checker{typ: typ, path: path, tls: tlsConf}
	if typ == CheckHTTP {
		tr := &http.Transport{
			DisableKeepAlives:      true,
			TLSClientConfig:        tlsConf.Clone(),
			MaxResponseHeaderBytes: 64 << 10,
		}
		c.http = &http.Client{
			Transport: tr,
			// A redirect is not a 2xx: the backend is not serving the
			// health path.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return c
}

// close releases the checker's idle resources.
func (c *checker) close() {
	if c.http != nil {
		c.http.CloseIdleConnections()
	}
}

// check probes addr once.
func (c *checker) check(ctx context.Context, addr string) error {
	var err error
	switch c.typ {
	case CheckWebSocket:
		err = c.checkWebSocket(ctx, addr)
	case CheckTCP:
		err = c.checkTCP(ctx, addr)
	default:
		err = c.checkHTTP(ctx, addr)
	}
	if err != nil {
		return &CheckError{Type: c.typ, Addr: addr, Err: err}
	}
	return nil
}

func (c *checker) checkHTTP(ctx context.Context, addr string) error {
	scheme := "http"
	if c.tls != nil {
		scheme = "https"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+addr+c.path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", userAgent)
	res, err := c.http.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the URL is the backend's, which CheckError names
		}
		return err
	}
	// Read a little of the body so the backend sees its answer taken,
	// not cut off.
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 4<<10))
	res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return &StatusError{Code: res.StatusCode}
	}
	return nil
}

func (c *checker) checkTCP(ctx context.Context, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if c.tls == nil {
		return nil
	}
	tc := tls.Client(conn, tlsFor(c.tls, addr))
	return tc.HandshakeContext(ctx)
}

// checkWebSocket upgrades, pings and closes, as a client would (RFC 6455
// 4.1, 5.5.2, 5.5.3, 7.1.2). It catches the backend whose HTTP side answers
// while its WebSocket side is wedged: an upgrade that hangs or is refused,
// a ping never answered, a close never returned.
func (c *checker) checkWebSocket(ctx context.Context, addr string) error {
	scheme := "ws"
	if c.tls != nil {
		scheme = "wss"
	}
	d := ws.Dialer{
		Header: ws.HandshakeHeaderHTTP(http.Header{"User-Agent": {userAgent}}),
	}
	if c.tls != nil {
		d.TLSConfig = tlsFor(c.tls, addr)
	}
	conn, br, _, err := d.Dial(ctx, scheme+"://"+addr+c.path)
	if err != nil {
		var status ws.StatusError
		if errors.As(err, &status) {
			return fmt.Errorf("upgrade: %w", &StatusError{Code: int(status)})
		}
		return fmt.Errorf("upgrade: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(aLongTimeAgo) })
	defer stop()
	// Bytes may already sit in br after the handshake: read through it.
	var r io.Reader = conn
	if br != nil {
		r = br
	}

	var payload [8]byte
	_, _ = rand.Read(payload[:])
	if err := ws.WriteFrame(conn, ws.MaskFrame(ws.NewPingFrame(payload[:]))); err != nil {
		return fmt.Errorf("send ping: %w", err)
	}
	if err := awaitFrame(r, ws.OpPong, payload[:]); err != nil {
		return fmt.Errorf("wait for pong: %w", err)
	}
	closing := ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
	if err := ws.WriteFrame(conn, ws.MaskFrame(closing)); err != nil {
		return fmt.Errorf("send close: %w", err)
	}
	if err := awaitFrame(r, ws.OpClose, nil); err != nil {
		return fmt.Errorf("wait for close: %w", err)
	}
	return nil
}

// awaitFrame reads frames until one with opcode op (and, when payload is
// not nil, that payload) arrives, skipping data and other control frames.
func awaitFrame(r io.Reader, op ws.OpCode, payload []byte) error {
	for range maxFrames {
		h, err := ws.ReadHeader(r)
		if err != nil {
			return err
		}
		if h.OpCode != op || h.OpCode.IsData() || h.Length > 125 {
			if _, err := io.CopyN(io.Discard, r, h.Length); err != nil {
				return err
			}
			if h.OpCode == ws.OpClose {
				return errors.New("backend closed the connection")
			}
			continue
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(r, p); err != nil {
			return err
		}
		if h.Masked { // servers must not mask (RFC 6455 5.1), but read it anyway
			ws.Cipher(p, h.Mask, 0)
		}
		if payload == nil || bytes.Equal(p, payload) {
			return nil
		}
	}
	return fmt.Errorf("no %v in %d frames", op, maxFrames)
}

// tlsFor returns base with ServerName set to addr's host when base names
// none, so that the backend's certificate is verified against the name it
// was reached by.
func tlsFor(base *tls.Config, addr string) *tls.Config {
	c := base.Clone()
	if c.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			c.ServerName = host
		}
	}
	return c
}

// parseCheckURL reads a check written as a URL, as `wsedge agent --health`
// takes it: http(s)://host[:port]/path (GET, 2xx passes),
// ws(s)://host[:port]/path (upgrade, ping, pong, close) or tcp://host:port
// (connect). It returns the checker and the address to check.
func parseCheckURL(raw string) (*checker, string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, "", fmt.Errorf("health URL: %w", err)
	}
	var typ, port string
	secure := false
	switch u.Scheme {
	case "http":
		typ, port = CheckHTTP, "80"
	case "https":
		typ, port, secure = CheckHTTP, "443", true
	case "ws":
		typ, port = CheckWebSocket, "80"
	case "wss":
		typ, port, secure = CheckWebSocket, "443", true
	case "tcp":
		typ = CheckTCP
	default:
		return nil, "", fmt.Errorf("health URL %q: scheme %q: want http, https, ws, wss or tcp", raw, u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, "", fmt.Errorf("health URL %q: no host", raw)
	}
	if u.Port() != "" {
		port = u.Port()
	}
	if port == "" {
		return nil, "", fmt.Errorf("health URL %q: tcp needs a port", raw)
	}
	addr := net.JoinHostPort(u.Hostname(), port)
	var tc *tls.Config
	if secure {
		tc = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return newChecker(typ, u.RequestURI(), tc), addr, nil
}
