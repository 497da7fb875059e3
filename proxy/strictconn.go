package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/wsedge/wsedge/proxy/http1"
)

// errRefused ends the stream the HTTP server reads once a request was
// refused; it reads as the client having gone, which is what follows.
var errRefused = io.EOF

// strictConn is a client connection as the HTTP server reads it. Every
// request head on it, the first and each one after on a kept-alive
// connection, is read by http1's rules before the server sees a byte of
// it, and passed on only if they accept it; bodies pass as their framing
// says. Go's server reads more leniently (a bare LF ends a line for it,
// Transfer-Encoding silently wins over Content-Length), so without this
// the proxy would read by two sets of rules, and a request hidden where a
// front end saw a body could reach a backend.
//
// Bytes pass straight from the socket into the server's buffer; only a
// head or chunk line cut by a read waits in pending. It is read by the
// HTTP server's one reading goroutine at a time.
type strictConn struct {
	net.Conn
	srv     *Server
	stream  http1.Stream
	pending []byte // read from Conn and not passed on yet
	ready   int    // how many bytes at the start of pending may be passed on
	// err ends the stream for good once nothing is ready: a refusal. The
	// socket's own errors are not kept: the server aborts a pending read
	// with a past deadline before it hands a connection over, and the
	// connection must read on after that.
	err error
}

// maxHeld bounds what a connection held after an upgrade request may read
// ahead: frames a client sent before its 101.
const maxHeld = 64 << 10

func newStrictConn(s *Server, c net.Conn, prefix []byte) *strictConn {
	sc := &strictConn{Conn: c, srv: s, pending: prefix}
	sc.stream.MaxHead = s.router.table().cfg.MaxHeaderBytes
	return sc
}

func (c *strictConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if c.ready > 0 {
			n := copy(p, c.pending[:c.ready])
			c.pending, c.ready = c.pending[n:], c.ready-n
			return n, nil
		}
		if c.err != nil {
			return 0, c.err
		}
		if len(c.pending) > 0 {
			k, err := c.advance(c.pending)
			switch {
			case k > 0:
				c.ready = k
			case err != nil:
				c.refuse(err)
			default:
				if err := c.readMore(); err != nil {
					return 0, err
				}
			}
			continue
		}
		n, err := c.Conn.Read(p)
		k, ferr := c.advance(p[:n])
		if k < n {
			c.pending = append(c.pending[:0:0], p[k:n]...)
		}
		if ferr != nil {
			c.refuse(ferr)
		}
		if k > 0 {
			return k, nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// advance passes b through the stream and returns how much of it may go
// on to the server now.
func (c *strictConn) advance(b []byte) (int, error) {
	k := 0
	for k < len(b) {
		n, err := c.stream.Next(b[k:])
		if err != nil {
			return k, err
		}
		if n == 0 {
			break
		}
		k += n
	}
	return k, nil
}

// readMore reads from the socket behind what is pending.
func (c *strictConn) readMore() error {
	if c.stream.Held() && len(c.pending) >= maxHeld {
		c.err = errors.New("client sent too much before its upgrade was answered")
		return c.err
	}
	if cap(c.pending)-len(c.pending) < 1024 {
		c.pending = append(make([]byte, 0, 2*cap(c.pending)+4096), c.pending...)
	}
	n, err := c.Conn.Read(c.pending[len(c.pending):cap(c.pending)])
	c.pending = c.pending[:len(c.pending)+n]
	if n > 0 {
		return nil
	}
	return err
}

// refuse ends the stream for a refused request. The first request of a
// connection gets its answer here, since the server has sent nothing yet;
// a later one may find the server still answering the one before, so the
// connection just ends behind that answer.
func (c *strictConn) refuse(err error) {
	var e *http1.Error
	if !errors.As(err, &e) {
		c.err = err
		return
	}
	answered := c.stream.Requests == 0
	if answered {
		c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		c.Conn.Write(errorAnswer(e.Status, e.Reason, ""))
	}
	c.err, c.pending, c.ready = errRefused, nil, 0
	c.srv.log.Info("request refused", zap.Stringer("remote", c.RemoteAddr()), zap.Int("status", e.Status),
		zap.String("reason", e.Reason), zap.Bool("answered", answered))
}

// Tunnel passes everything from now on, the connection having switched
// protocols, and returns the bytes read but held back meanwhile: they come
// after whatever the HTTP server has buffered.
func (c *strictConn) Tunnel() []byte {
	c.stream.Tunnel()
	p := c.pending
	c.pending, c.ready = nil, 0
	return p
}

// tlsConnKey marks the *tls.Conn under a request's connection in its
// context.
type tlsConnKey struct{}

// withTLSConn notes the *tls.Conn under c in ctx: the HTTP server reads
// c through a strictConn, so it cannot see the TLS itself and leaves
// Request.TLS nil (see tlsState).
func withTLSConn(ctx context.Context, c net.Conn) context.Context {
	if sc, ok := c.(*strictConn); ok {
		if tc, ok := sc.Conn.(*tls.Conn); ok {
			return context.WithValue(ctx, tlsConnKey{}, tc)
		}
	}
	return ctx
}

// tlsState fills in r.TLS for a request that came over TLS, as the HTTP
// server would have if it saw the TLS connection.
func tlsState(r *http.Request) {
	if tc, ok := r.Context().Value(tlsConnKey{}).(*tls.Conn); ok && r.TLS == nil {
		st := tc.ConnectionState()
		r.TLS = &st
	}
}

// TCPConn returns the TCP socket under the connection, for a relay that
// drives the socket itself once the connection is tunnelled.
func (c *strictConn) TCPConn() (*net.TCPConn, bool) { return tcpConn(c.Conn) }

// errorAnswer is the whole response that refuses a request with status,
// saying msg; extra is more header lines, each ending in CRLF.
func errorAnswer(status int, msg, extra string) []byte {
	body := msg + "\n"
	return []byte("HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) +
		"\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " + strconv.Itoa(len(body)) +
		"\r\nConnection: close\r\n" + extra + "\r\n" + body)
}
