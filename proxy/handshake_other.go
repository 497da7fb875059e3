//go:build !linux

package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/wsedge/wsedge/upstream"
)

// refusal is a backend's non-101 answer to the upgrade, relayed as is.
type refusal struct {
	status int
	header http.Header
	body   []byte
}

func (r *refusal) Error() string { return "backend refused the upgrade: " + strconv.Itoa(r.status) }

// backendHandshake is an accepted upgrade on the backend.
type backendHandshake struct {
	conn     net.Conn
	pending  []byte // frames the backend sent right after its 101
	protocol string
	exts     []httphead.Option
	header   http.Header // the backend's other 101 headers, to pass on
}

// dialBackend connects to addr and performs the client side of the
// handshake with the client's request, within the handshake deadline.
func (s *Server) dialBackend(ctx context.Context, t *table, r *http.Request, rt route) (*backendHandshake, error) {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.HandshakeTimeout)
	defer cancel()
	deadline, _ := ctx.Deadline()

	// No TCP keepalive probes: health checks and gossip find dead backends,
	// and every connection is spared the system calls.
	d := net.Dialer{KeepAlive: -1}
	conn, err := d.DialContext(ctx, "tcp", rt.backend)
	switch kind := upstream.LocalFailure(err); {
	case kind != "":
		return nil, s.localError(kind, err)
	case err != nil && r.Context().Err() != nil:
		// The client hung up; the backend is not to blame.
		return nil, &handshakeError{status: statusClientClosed, msg: "client went away during the handshake", err: err}
	case err != nil:
		return nil, dialFailure(rt.backend, err)
	}
	if tc := t.cfg.UpstreamTLS; tc != nil {
		if tc.ServerName == "" && !tc.InsecureSkipVerify {
			// server_name defaults to the backend's host.
			tc = tc.Clone()
			tc.ServerName, _, _ = net.SplitHostPort(rt.backend)
		}
		tc := tls.Client(conn, tc)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, dialFailure(rt.backend, err)
		}
		conn = tc
	}
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	hs := &backendHandshake{header: http.Header{}}
	var refused *refusal
	dialer := ws.Dialer{
		Header:     ws.HandshakeHeaderHTTP(backendRequestHeader(r, rt, t.cfg.UpstreamTLS != nil)),
		Host:       r.Host,
		Protocols:  offeredProtocols(r.Header),
		Extensions: offeredExtensions(r.Header),
		OnHeader: func(k, v []byte) error {
			key := http.CanonicalHeaderKey(string(k))
			if !isHopHeader(key) {
				hs.header.Add(key, string(v))
			}
			return nil
		},
		OnStatusError: func(status int, _ []byte, resp io.Reader) {
			refused = readRefusal(status, resp, r)
		},
	}
	u := &url.URL{Scheme: "ws", Host: rt.backend, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	if t.cfg.UpstreamTLS != nil {
		u.Scheme = "wss"
	}
	br, got, err := dialer.Upgrade(conn, u)
	if err != nil {
		conn.Close()
		if br != nil {
			ws.PutReader(br)
		}
		switch {
		case refused != nil:
			return nil, refused
		case r.Context().Err() != nil:
			// The client hung up; the backend is not to blame.
			return nil, &handshakeError{status: statusClientClosed, msg: "client went away during the handshake", err: err}
		case errors.Is(err, os.ErrDeadlineExceeded), ctx.Err() != nil:
			return nil, &handshakeError{status: http.StatusGatewayTimeout, msg: "backend handshake timed out", err: err}
		}
		return nil, &handshakeError{status: http.StatusBadGateway, msg: "backend handshake failed", err: err}
	}
	conn.SetDeadline(time.Time{})
	if br != nil {
		hs.pending = make([]byte, br.Buffered())
		io.ReadFull(br, hs.pending)
		ws.PutReader(br)
	}
	hs.conn, hs.protocol, hs.exts = conn, got.Protocol, got.Extensions
	return hs, nil
}

func dialFailure(addr string, err error) *handshakeError {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &handshakeError{status: http.StatusGatewayTimeout, msg: "backend did not answer in time", err: err, dial: true}
	}
	return &handshakeError{status: http.StatusBadGateway, msg: "backend unreachable", err: err, dial: true}
}

// readRefusal captures a backend's refusal (status, headers and a bounded
// body) while the handshake reader is still valid.
func readRefusal(status int, resp io.Reader, r *http.Request) *refusal {
	ref := &refusal{status: status, header: http.Header{}}
	res, err := http.ReadResponse(bufio.NewReader(resp), r)
	if err != nil {
		return ref
	}
	defer res.Body.Close()
	for k, vs := range res.Header {
		if !isHopHeader(k) && k != "Content-Length" {
			ref.header[k] = vs
		}
	}
	ref.body, _ = io.ReadAll(io.LimitReader(res.Body, maxRefusalBody))
	return ref
}

// backendRequestHeader is what the backend sees of the client's request:
// its end-to-end headers plus who the client is. The WebSocket handshake
// headers are written by the dialer from the offered protocols and
// extensions.
func backendRequestHeader(r *http.Request, rt route, upstreamTLS bool) http.Header {
	h := make(http.Header, len(r.Header)+3)
	for k, vs := range r.Header {
		if isHopHeader(k) || isReplacedHeader(k) || isProxyOwned(k) || connectionListed(r.Header, k) {
			continue
		}
		h[k] = vs
	}
	setForwarded(h, r, rt)
	h.Set("X-Request-ID", rt.requestID)
	return h
}

// offeredExtensions parses the client's extension offers so the backend can
// pick among them (RFC 6455 section 9.1).
func offeredExtensions(h http.Header) []httphead.Option {
	var out []httphead.Option
	for _, line := range h.Values("Sec-WebSocket-Extensions") {
		out, _ = httphead.ParseOptions([]byte(line), out)
	}
	return out
}

// acceptClient completes the client's handshake with what the backend
// chose: the same subprotocol and extensions, so that both ends negotiate
// with each other through the proxy. The client's connection is hijacked.
func (s *Server) acceptClient(w http.ResponseWriter, r *http.Request, bh *backendHandshake, extra http.Header) (net.Conn, []byte, error) {
	used := make([]bool, len(bh.exts))
	up := ws.HTTPUpgrader{
		Timeout: s.router.table().cfg.WriteTimeout,
		Header:  extra,
		Protocol: func(p string) bool {
			return bh.protocol != "" && p == bh.protocol
		},
		Negotiate: func(offer httphead.Option) (httphead.Option, error) {
			for i, e := range bh.exts {
				if !used[i] && string(e.Name) == string(offer.Name) {
					used[i] = true
					return e, nil
				}
			}
			return httphead.Option{}, nil
		},
	}
	conn, rw, _, err := up.Upgrade(r, w)
	if err != nil {
		if conn != nil {
			conn.Close()
		}
		return nil, nil, err
	}
	var pending []byte
	if n := rw.Reader.Buffered(); n > 0 {
		pending = make([]byte, n)
		io.ReadFull(rw.Reader, pending)
	}
	if sc, ok := conn.(*strictConn); ok {
		// Frames the client sent before its 101 waited behind the head.
		pending = append(pending, sc.Tunnel()...)
	}
	return conn, pending, nil
}

// writeRefusal relays a backend's refusal to the client, and ends the
// connection: what the client sends next was meant for a WebSocket.
func writeRefusal(w http.ResponseWriter, ref *refusal) {
	for k, vs := range ref.header {
		w.Header()[k] = vs
	}
	w.Header().Set("Connection", "close")
	w.Header().Set("Content-Length", strconv.Itoa(len(ref.body)))
	w.WriteHeader(ref.status)
	w.Write(ref.body)
}
