//go:build linux

package proxy

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/wsedge/wsedge/proxy/evloop"
	"github.com/wsedge/wsedge/proxy/http1"
	"github.com/wsedge/wsedge/proxy/looptls"
)

// readProxy reads the PROXY protocol header a load balancer in front sends
// first, if it sends one, and takes the client address it names when the
// balancer is a trusted proxy. A header from anyone else ends the
// connection: nobody picks their own address.
func (u *upgrade) readProxy() {
	if !u.readPartial() {
		return
	}
	end, err := proxyHeaderEnd(u.partial)
	switch {
	case err != nil:
		u.drop("malformed PROXY protocol header", err)
		return
	case end == 0:
		return // an edge brings the rest
	case end > 0:
		if !u.mode.trusted.Contains(u.peer.Addr()) {
			u.drop("PROXY protocol header from a peer outside trusted_proxies", nil)
			return
		}
		client, ok, err := readProxyHeader(u.partial[:end])
		if err != nil {
			u.drop("malformed PROXY protocol header", err)
			return
		}
		if ok {
			u.peer = client
		}
		u.partial = u.partial[end:]
	}
	if len(u.partial) == 0 {
		u.partial = nil
	}
	switch {
	case u.mode.tls != nil:
		u.phase = phTLS
		if len(u.partial) > 0 {
			u.startHandshake() // the ClientHello came behind the header
		}
	default:
		u.phase = phRequest
		if len(u.partial) > 0 {
			u.firstByte = time.Now().UnixNano() // the head came behind the header
		}
		u.takeRequest()
	}
}

// readPartial reads what the client sent into u.partial. It reports false
// when nothing came, or the connection ended (and was closed).
func (u *upgrade) readPartial() bool {
	buf := u.loop.GetBuf()
	defer u.loop.PutBuf(buf)
	n, err := evloop.ReadFD(u.cfd, *buf)
	switch {
	case errors.Is(err, unix.EAGAIN):
		return false
	case err != nil || n == 0:
		u.close()
		return false
	case len(u.partial)+n > 16+0xffff:
		u.drop("PROXY protocol header too long", nil)
		return false
	}
	u.partial = append(u.partial, (*buf)[:n]...)
	return true
}

// drop ends a connection that never got to HTTP, and says why.
func (u *upgrade) drop(why string, err error) {
	u.srv.log.Info("connection refused", zap.Stringer("remote", u.peer), zap.String("reason", why), zap.Error(err))
	u.close()
}

// startHandshake gives the TLS handshake to a worker of the pool, now that
// the ClientHello is there: the loop leaves the socket alone until the
// worker is done, and takes it back with the client's TLS, through which
// it then reads and writes.
func (u *upgrade) startHandshake() {
	fd, prefix := u.cfd, u.partial
	u.partial = nil
	u.phase = phHandshake
	u.loop.upgrades.Cancel(u)
	done := func(side *looptls.Side, err error) {
		if !u.loop.Post(func() { u.handshakeDone(fd, side, err) }) {
			unix.Close(fd) // the loop stopped: nobody else will
		}
	}
	if !u.srv.poll.handshakes.Server(fd, net.TCPAddrFromAddrPort(u.peer), prefix, u.mode.tls, u.deadline(), done) {
		u.phase = phTLS
		u.drop("TLS handshakes queue full", nil)
	}
}

// handshakeDone takes socket fd back from the worker.
func (u *upgrade) handshakeDone(fd int, side *looptls.Side, err error) {
	u.phase = phTLS
	switch {
	case u.halted:
		unix.Close(fd)
		return
	case err != nil:
		u.srv.log.Debug("TLS handshake failed", zap.Stringer("remote", u.peer), zap.Error(err))
		u.close()
		return
	}
	u.tls = side
	u.phase = phRequest
	u.loop.upgrades.Schedule(u, u.deadline())
	u.readRequest() // the handshake may have read the request already
}

// readClient reads what the client sent, decrypted if it speaks TLS.
func (u *upgrade) readClient(p []byte) (int, error) {
	if u.tls != nil {
		return u.tls.Read(p)
	}
	return evloop.ReadFD(u.cfd, p)
}

// writeTLS writes out through side, then runs then once the socket has
// taken all of it.
func (u *upgrade) writeTLS(side *looptls.Side) {
	var err error
	if len(u.out) > 0 {
		_, err = side.Write(u.out)
		u.out = nil
	}
	done := false
	if err == nil {
		done, err = side.Flush()
	}
	switch {
	case err != nil && u.toClient:
		u.count(hsClientFailed)
		u.close()
		return
	case err != nil:
		u.dialFailed(err)
		return
	case !done:
		return // the socket's next writable edge goes on
	}
	then := u.then
	u.then = nil
	then()
}

// readRequest reads the client's head and acts on it once whole. A
// buffer is borrowed only for the read itself: a client that sends its
// head slowly, or not at all, holds just the bytes it sent. A TLS client
// is read until nothing is left, as records may wait decrypted where no
// edge announces them.
func (u *upgrade) readRequest() {
	for u.cfd >= 0 && u.phase == phRequest && u.buf == nil {
		buf := u.loop.GetBuf()
		n, err := u.readClient((*buf)[:len(*buf)-len(u.partial)])
		switch {
		case errors.Is(err, unix.EAGAIN):
			u.loop.PutBuf(buf)
			return
		case err != nil || n == 0:
			u.loop.PutBuf(buf)
			u.count(hsClientFailed)
			u.close()
			return
		}
		if u.firstByte == 0 {
			u.firstByte = time.Now().UnixNano()
		}
		if len(u.partial) == 0 {
			if end, _ := http1.End((*buf)[:n]); end > 0 {
				u.buf, u.n = buf, n // the usual case: the whole head in one read
				u.takeHead()
				return
			}
		}
		u.partial = append(u.partial, (*buf)[:n]...)
		u.loop.PutBuf(buf)
		u.takeRequest()
		if u.tls == nil {
			return // the next edge brings more
		}
	}
}

// takeRequest acts on the head in u.partial once it is whole.
func (u *upgrade) takeRequest() {
	if len(u.partial) == 0 {
		return
	}
	limit := min(u.srv.router.table().cfg.MaxHeaderBytes, http1.MaxHeadSize)
	end, err := http1.End(u.partial)
	switch {
	case err != nil:
		u.refuseHead(err)
		return
	case end == 0 && len(u.partial) <= limit && len(u.partial) < evloop.BurstSize:
		return
	case end == 0 && len(u.partial) <= limit:
		// A head the limit allows, longer than a loop buffer: the HTTP
		// path reads it, by the same rules.
		u.handOff()
		return
	}
	u.buf = u.loop.GetBuf()
	u.n = copy(*u.buf, u.partial)
	u.partial = nil
	u.takeHead()
}

// takeHead reads the head at the start of u.buf and acts on it.
func (u *upgrade) takeHead() {
	t := u.srv.router.table()
	limit := min(t.cfg.MaxHeaderBytes, http1.MaxHeadSize)
	end, err := http1.End((*u.buf)[:u.n])
	switch {
	case err == nil && (end == 0 || end > limit):
		err = http1.ErrTooLarge
	case err == nil:
		u.head = new(http1.Head)
		err = u.head.ReadRequest((*u.buf)[:end])
	}
	if err != nil {
		u.refuseHead(err)
		return
	}
	if !u.head.IsWebSocketUpgrade() {
		u.handOff() // plain HTTP: the HTTP server path takes it from here
		return
	}
	u.t = t
	u.request(end)
}

// refuseHead answers a request head the rules refuse, upgrade or not.
// What it asked for is not known, so it counts as no handshake.
func (u *upgrade) refuseHead(err error) {
	e := err.(*http1.Error)
	u.head = nil
	u.refuse("", &handshakeError{status: e.Status, msg: e.Reason})
}

// request checks and routes a WebSocket upgrade whose head ends at end,
// then dials its backend.
func (u *upgrade) request(end int) {
	s, t, h := u.srv, u.t, u.head
	if he := checkUpgradeHead(h); he != nil {
		u.refuse(hsBadRequest, he)
		return
	}
	if !t.originAllowed(h.Get("Origin")) {
		u.refuse(hsOriginDenied, &handshakeError{status: http.StatusForbidden, msg: "origin not allowed"})
		return
	}
	rt, err := s.route(t, u.peer.Addr().Unmap(), h, true)
	if err != nil {
		u.refuse(routeRefusal(err))
		return
	}
	u.rt, u.reserved = rt, true
	if ok, wait := s.handshakeRates.allow(&t.cfg, rt.client, time.Now().UnixNano()); !ok {
		s.metrics.limitHit(limitHandshakeRate)
		u.refuse(hsRateLimited, &handshakeError{status: http.StatusTooManyRequests,
			msg: "too many new connections from this address", retry: wait})
		return
	}
	if rest := (*u.buf)[end:u.n]; len(rest) > 0 {
		// A client that did not wait for the 101: its frames go to the
		// backend once the relay starts.
		u.clientRest = append([]byte(nil), rest...)
	}
	query := ""
	if target := h.Target(); bytes.IndexByte(target, '?') >= 0 {
		query = string(target[bytes.IndexByte(target, '?')+1:])
	}
	u.miss = s.noteAffinity(query, rt)
	u.accept = acceptKey(h.Field("Sec-WebSocket-Key"))
	u.offered = offeredProtocols(h)
	u.req = u.backendRequest(end)
	if backend, err := netip.ParseAddrPort(rt.backend); err == nil {
		u.dial(backend)
		return
	}
	u.resolve()
}

// checkUpgradeHead applies RFC 6455 section 4.2.1 to a head the rules of
// http1 accepted, as checkClientHandshake does to a request.
func checkUpgradeHead(h *http1.Head) *handshakeError {
	switch {
	case string(h.Method()) != http.MethodGet:
		return &handshakeError{status: http.StatusMethodNotAllowed, msg: "websocket upgrade needs GET"}
	case string(h.Proto()) != "HTTP/1.1":
		return &handshakeError{status: http.StatusBadRequest, msg: "websocket upgrade needs HTTP/1.1"}
	case h.ContentLength > 0 || h.Chunked:
		return &handshakeError{status: http.StatusBadRequest, msg: "websocket upgrade with a body"}
	}
	switch v := h.Field("Sec-WebSocket-Version"); string(v) {
	case "13":
	case "":
		return &handshakeError{status: http.StatusBadRequest, msg: "missing Sec-WebSocket-Version"}
	default:
		return &handshakeError{status: http.StatusUpgradeRequired, msg: "unsupported Sec-WebSocket-Version " + strconv.Quote(string(v))}
	}
	if h.Count("Sec-WebSocket-Key") != 1 {
		return &handshakeError{status: http.StatusBadRequest, msg: "want exactly one Sec-WebSocket-Key"}
	}
	var key [18]byte
	k := h.Field("Sec-WebSocket-Key")
	if len(k) != 24 {
		return &handshakeError{status: http.StatusBadRequest, msg: "Sec-WebSocket-Key is not 16 bytes in base64"}
	}
	if n, err := base64.StdEncoding.Decode(key[:], k); err != nil || n != 16 {
		return &handshakeError{status: http.StatusBadRequest, msg: "Sec-WebSocket-Key is not 16 bytes in base64"}
	}
	return nil
}

// acceptKey is the Sec-WebSocket-Accept for key (RFC 6455 section 4.2.2).
func acceptKey(key []byte) string {
	h := sha1.New()
	h.Write(key)
	h.Write([]byte("258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// backendRequest is the client's head as the backend sees it: the request
// line and the client's end-to-end headers as they came, its WebSocket
// handshake headers included, so the backend's answer is one the client
// can check; hop-by-hop headers dropped; who the client is added.
func (u *upgrade) backendRequest(end int) []byte {
	h, rt := u.head, u.rt
	out := make([]byte, 0, end+256)
	out = append(out, h.RequestLine()...)
	listed := h.Values("Connection") // more hop-by-hop names, rarely any beyond "Upgrade"
	for i := range h.Len() {
		name := h.Name(i)
		if isHopHeaderBytes(name) || isProxyOwned(name) || connectionNames(listed, name) {
			continue
		}
		out = append(out, h.Line(i)...)
		out = append(out, "\r\n"...)
	}
	out = append(out, "Upgrade: websocket\r\nConnection: Upgrade\r\n"...)
	out = forwardingFor(rt, h, u.tls != nil).appendTo(out)
	out = append(out, "X-Request-ID: "...)
	out = append(out, rt.requestID...)
	return append(out, "\r\n\r\n"...)
}

// connectionNames reports whether name is among the tokens of the
// Connection header lines listed.
func connectionNames(listed []string, name []byte) bool {
	for _, line := range listed {
		for t := range strings.SplitSeq(line, ",") {
			if equalFold(name, strings.TrimSpace(t)) {
				return true
			}
		}
	}
	return false
}
