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
	"os"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/wsedge/wsedge/proxy/http1"
	"github.com/wsedge/wsedge/upstream"
)

// upgradePhase is where an upgrade stands.
type upgradePhase uint8

const (
	phRequest  upgradePhase = iota // reading the client's request head
	phConnect                      // waiting for the backend's TCP connect
	phSend                         // writing the request to the backend
	phResponse                     // reading the backend's response head
	phAnswer                       // writing the answer to the client
	phRefusal                      // relaying a refusal's body to the client
)

// upgrade takes one client connection through the WebSocket handshake on
// an event loop, with no goroutine and no http.Request: the client's head
// is parsed in place, the backend is dialed without blocking, the client's
// own handshake headers go to the backend, and its 101 comes back with the
// proxy's additions. On success the same sockets become an econn. Anything
// that is not a plain WebSocket upgrade, or needs what only the HTTP server
// path has (DNS names, TLS to backends), is handed to that path with the
// bytes read so far.
//
// All its methods run on the loop's goroutine.
type upgrade struct {
	wheelEntry[upgrade]
	srv      *Server
	loop     *loop
	cfd, bfd int // bfd is -1 until dialed
	peer     netip.AddrPort
	phase    upgradePhase
	started  int64

	buf     *[]byte // borrowed: the client's head, then the backend's
	n       int     // bytes in buf
	partial []byte  // a client head still coming, held without a borrowed buffer
	head    *http1.Head

	t        *table
	rt       route
	reserved bool
	accept   string   // the Sec-WebSocket-Accept the backend must answer
	offered  []string // subprotocols the client offered
	miss     string   // affinity miss to report on the 101

	req      []byte // the request for the backend, until it is connected
	out      []byte // being written: the request to the backend, or the answer to the client
	toClient bool   // out goes to the client
	then     func() // what follows once out is written
	// clientSent: an edge said the client sent more after its head; the
	// bytes wait in the socket for the relay.
	clientSent bool
	// backendFull: the last read from the backend filled the buffer, so the
	// relay starts by reading on.
	backendFull bool

	left int64 // refusal body bytes still to relay; -1 until the backend closes
}

func (u *upgrade) timer() *wheelEntry[upgrade] { return &u.wheelEntry }

// acceptUpgrade hands a freshly accepted connection to an event loop for
// its handshake. It reports false when the loops cannot take it, and the
// caller serves it the usual way.
func (s *Server) acceptUpgrade(conn net.Conn) bool {
	tc, ok := conn.(*net.TCPConn)
	if !ok || s.goroutinesOnly || s.router.table().cfg.UpstreamTLS != nil {
		return false
	}
	peer, err := netip.ParseAddrPort(tc.RemoteAddr().String())
	if err != nil {
		return false
	}
	l, err := s.poll.pick()
	if err != nil {
		return false
	}
	fd, err := detachFD(tc)
	if err != nil {
		conn.Close()
		return true
	}
	u := &upgrade{srv: s, loop: l, cfd: fd, bfd: -1, peer: peer, started: time.Now().UnixNano()}
	if !l.post(u.start) {
		unix.Close(fd)
	}
	return true
}

// Both sockets are registered once, edge-triggered for reads and writes,
// as the relay wants them: connecting, sending, reading and the relay that
// follows need no change of interest.

func (u *upgrade) start() {
	if err := u.loop.register(u.cfd, u, relayInterest); err != nil {
		u.close()
		return
	}
	u.head = nil
	u.loop.upgrades.schedule(u, u.started+int64(u.srv.router.table().cfg.HandshakeTimeout))
}

func (u *upgrade) halt(int64) { u.close() }

func (u *upgrade) onEvent(fd int, events uint32, now int64) {
	if u.cfd < 0 {
		return
	}
	in := events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0
	out := events&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0
	if fd == u.cfd && in && u.phase != phRequest {
		// Bytes before the 101, or the client hanging up: either way an
		// edge the relay must not miss.
		u.clientSent = true
		if events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			u.srv.metrics.handshake(hsClientFailed)
			u.close()
			return
		}
	}
	if out && len(u.out) > 0 && (fd == u.cfd) == u.toClient {
		u.write()
		if u.cfd < 0 {
			return
		}
	}
	switch {
	case fd == u.cfd && u.phase == phRequest && in:
		u.readRequest()
	case fd == u.bfd && u.phase == phConnect && out:
		u.connected(events&(unix.EPOLLERR|unix.EPOLLHUP) != 0)
	case fd == u.bfd && in && (u.phase == phResponse || u.phase == phRefusal):
		u.readResponse()
	}
}

// expire ends a handshake that took longer than handshake_timeout: a slow
// client (slowloris) is cut, a slow backend answered with 504.
func (u *upgrade) expire(now int64) {
	if u.cfd < 0 {
		return
	}
	switch u.phase {
	case phRequest:
		// A slowloris client: it gets its answer, then the door.
		u.refuse(hsClientFailed, &handshakeError{status: http.StatusRequestTimeout, msg: "request head not received in time"})
		return
	case phAnswer, phRefusal:
		u.srv.metrics.handshake(hsClientFailed)
		u.close()
		return
	}
	u.refuse(hsBackendTimeout, &handshakeError{status: http.StatusGatewayTimeout, msg: "backend handshake timed out"})
}

// readRequest reads the client's head and acts on it once whole. A
// buffer is borrowed only for the read itself: a client that sends its
// head slowly, or not at all, holds just the bytes it sent.
func (u *upgrade) readRequest() {
	buf := u.loop.getBuf()
	n, err := readFD(u.cfd, (*buf)[:len(*buf)-len(u.partial)])
	switch {
	case errors.Is(err, unix.EAGAIN):
		u.loop.putBuf(buf)
		return
	case err != nil || n == 0:
		u.loop.putBuf(buf)
		u.srv.metrics.handshake(hsClientFailed)
		u.close()
		return
	}
	t := u.srv.router.table()
	limit := min(t.cfg.MaxHeaderBytes, http1.MaxHeadSize)
	if len(u.partial) == 0 {
		if end, _ := http1.End((*buf)[:n]); end > 0 {
			u.buf, u.n = buf, n // the usual case: the whole head in one read
		}
	}
	if u.buf == nil {
		u.partial = append(u.partial, (*buf)[:n]...)
		end, err := http1.End(u.partial)
		switch {
		case err != nil:
			u.loop.putBuf(buf)
			u.refuseHead(err)
			return
		case end == 0 && len(u.partial) <= limit && len(u.partial) < len(*buf):
			u.loop.putBuf(buf)
			return
		case end == 0 && len(u.partial) <= limit:
			// A head the limit allows, longer than a loop buffer: the
			// HTTP path reads it, by the same rules.
			u.loop.putBuf(buf)
			u.handOff()
			return
		}
		u.buf, u.n = buf, copy(*buf, u.partial)
		u.partial = nil
	}
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
	backend, err := netip.ParseAddrPort(rt.backend)
	if err != nil || rest(u) > 0 || t.cfg.UpstreamTLS != nil {
		// A backend by name needs DNS, TLS to backends needs its library
		// (the setting may have come with a reload), and bytes after the
		// head mean a client that did not wait for the 101: the HTTP
		// server path handles all three.
		u.handOff()
		return
	}
	query := ""
	if target := h.Target(); bytes.IndexByte(target, '?') >= 0 {
		query = string(target[bytes.IndexByte(target, '?')+1:])
	}
	u.miss = s.noteAffinity(query, rt)
	u.accept = acceptKey(h.Field("Sec-WebSocket-Key"))
	u.offered = offeredProtocols(h)
	u.req = u.backendRequest(end)
	u.dial(backend)
}

// rest is how many bytes the client sent after its head.
func rest(u *upgrade) int { return u.n - len(u.head.Raw()) }

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
	xff := rt.peer.String() // the event loop only takes TCP peers: always an IP
	if rt.trustedPeer {
		if prior := h.Values("X-Forwarded-For"); len(prior) > 0 {
			xff = joinComma(prior) + ", " + xff
		}
	}
	proto := "http"
	if p := h.Field("X-Forwarded-Proto"); len(p) > 0 && rt.trustedPeer {
		proto = string(p)
	}
	if host := forwardedHost(h.Values("X-Forwarded-Host"), rt.trustedPeer); host != "" {
		out = append(out, "X-Forwarded-Host: "...)
		out = append(out, host...)
		out = append(out, "\r\n"...)
	}
	out = append(out, "Upgrade: websocket\r\nConnection: Upgrade\r\nX-Forwarded-For: "...)
	out = append(out, xff...)
	out = append(out, "\r\nX-Forwarded-Proto: "...)
	out = append(out, proto...)
	out = append(out, "\r\nX-Real-IP: "...)
	out = rt.client.AppendTo(out)
	out = append(out, "\r\nX-Request-ID: "...)
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

func joinComma(vs []string) string {
	out := vs[0]
	for _, v := range vs[1:] {
		out += ", " + v
	}
	return out
}

// dial starts a non-blocking connect to the backend.
func (u *upgrade) dial(backend netip.AddrPort) {
	var sa unix.Sockaddr
	family := unix.AF_INET
	if backend.Addr().Is4() || backend.Addr().Is4In6() {
		sa = &unix.SockaddrInet4{Port: int(backend.Port()), Addr: backend.Addr().Unmap().As4()}
	} else {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(backend.Port()), Addr: backend.Addr().As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		u.dialFailed(err)
		return
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	u.bfd = fd
	if err := unix.Connect(fd, sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		u.dialFailed(err)
		return
	}
	u.phase = phConnect
	if err := u.loop.register(fd, u, relayInterest); err != nil {
		u.dialFailed(err)
	}
}

// connected finishes the connect and sends the request. Writability
// without an error condition is a connect that succeeded; only a failed
// one has its error asked for.
func (u *upgrade) connected(failed bool) {
	if failed {
		errno, err := unix.GetsockoptInt(u.bfd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err == nil {
			err = unix.Errno(errno)
			if errno == 0 {
				err = unix.ECONNREFUSED // hung up without a reason
			}
		}
		u.dialFailed(err)
		return
	}
	u.phase = phSend
	u.out, u.req, u.toClient = u.req, nil, false
	u.then = func() {
		u.phase = phResponse
		u.n = 0
		u.readResponse() // an edge may have come and gone while writing
	}
	u.write()
}

// dialFailed answers a backend that could not be reached: 502, counted
// against the backend; or 503 when the proxy itself ran out of something.
func (u *upgrade) dialFailed(err error) {
	if kind := upstream.LocalFailure(err); kind != "" {
		u.refuse(hsOverLimit, u.srv.localError(kind, err))
		return
	}
	u.srv.passive(u.rt.backend, 0)
	u.refuse(hsUnreachable, &handshakeError{status: http.StatusBadGateway, msg: "backend unreachable", err: err, dial: true})
}

// write writes out to its peer, then runs then.
func (u *upgrade) write() {
	fd := u.bfd
	if u.toClient {
		fd = u.cfd
	}
	n, err := writeFD(fd, u.out)
	u.out = u.out[n:]
	switch {
	case err != nil && !errors.Is(err, unix.EAGAIN):
		if u.toClient {
			u.srv.metrics.handshake(hsClientFailed)
			u.close()
		} else {
			u.dialFailed(err)
		}
		return
	case len(u.out) > 0:
		return // the socket's next writable edge goes on
	}
	then := u.then
	u.then = nil
	then()
}

// readResponse reads what the backend has sent, until it has nothing more
// for now: the socket is edge-triggered.
func (u *upgrade) readResponse() {
	for u.bfd >= 0 && (u.phase == phResponse || u.phase == phRefusal && len(u.out) == 0) {
		if !u.readResponseOnce() {
			return
		}
	}
}

// readResponseOnce reads the backend's answer once: its head, or the rest
// of a refusal's body. It reports whether to read again.
func (u *upgrade) readResponseOnce() bool {
	n, err := readFD(u.bfd, (*u.buf)[u.n:])
	if errors.Is(err, unix.EAGAIN) {
		return false
	}
	if u.phase == phRefusal {
		if n <= 0 {
			u.close()
			return false
		}
		u.relayRefusal((*u.buf)[:n])
		return true
	}
	if err != nil || n == 0 {
		u.refuse(hsUnreachable, &handshakeError{status: http.StatusBadGateway, msg: "backend closed the connection during the handshake", err: err})
		return false
	}
	u.backendFull = u.n+n == len(*u.buf) // a full read may have left bytes behind
	u.n += n
	end, err := http1.End((*u.buf)[:u.n])
	if err == nil && end == 0 {
		if u.n == len(*u.buf) {
			u.refuse(hsUnreachable, &handshakeError{status: http.StatusBadGateway, msg: "backend answer head too large"})
			return false
		}
		return true
	}
	if err == nil {
		err = u.head.ReadResponse((*u.buf)[:end])
	}
	if err != nil {
		u.refuse(hsUnreachable, &handshakeError{status: http.StatusBadGateway, msg: "malformed backend answer", err: err})
		return false
	}
	status := u.head.Status()
	u.srv.passive(u.rt.backend, status)
	if status != http.StatusSwitchingProtocols {
		u.refusal(status, end)
		return false
	}
	if msg := u.checkAnswer(); msg != "" {
		u.refuse(hsUnreachable, &handshakeError{status: http.StatusBadGateway, msg: msg})
		return false
	}
	u.answer(end)
	return false
}

// checkAnswer validates the backend's 101 as a client would (RFC 6455
// section 4.1), returning what is wrong or "".
func (u *upgrade) checkAnswer() string {
	h := u.head
	switch {
	case !h.HasToken("Upgrade", "websocket"), !h.HasToken("Connection", "upgrade"):
		return "backend answered 101 without upgrading to websocket"
	case string(h.Field("Sec-WebSocket-Accept")) != u.accept:
		return "backend's Sec-WebSocket-Accept does not match the key"
	}
	if p := h.Get("Sec-WebSocket-Protocol"); p != "" {
		for _, o := range u.offered {
			if o == p {
				return ""
			}
		}
		return "backend chose a subprotocol the client did not offer"
	}
	return ""
}

// answer sends the backend's 101 to the client, with the proxy's
// additions, and then starts relaying.
func (u *upgrade) answer(end int) {
	h := u.head
	out := make([]byte, 0, end+128)
	out = append(out, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"...)
	for i := range h.Len() {
		if name := h.Name(i); isHopHeaderBytes(name) || equalFold(name, "Content-Length") {
			continue
		}
		out = append(out, h.Line(i)...)
		out = append(out, "\r\n"...)
	}
	if u.rt.setCookie != "" {
		out = append(out, "Set-Cookie: "...)
		out = append(out, u.t.routeCookie(u.rt.setCookie)...)
		out = append(out, "\r\n"...)
	}
	if u.miss != "" {
		out = append(out, "X-Wsedge-Affinity-Miss: "...)
		out = append(out, u.miss...)
		out = append(out, "\r\n"...)
	}
	out = append(out, "\r\n"...)
	extensions := len(h.Field("Sec-WebSocket-Extensions")) > 0
	var pending []byte
	if end < u.n {
		pending = append(pending, (*u.buf)[end:u.n]...)
	}
	u.phase, u.out, u.toClient = phAnswer, out, true
	u.then = func() { u.established(pending, extensions) }
	u.write()
}

// established turns the upgrade into a relayed connection on the same
// sockets.
func (u *upgrade) established(backendPending []byte, extensions bool) {
	s, l := u.srv, u.loop
	l.upgrades.cancel(u)
	l.putBuf(u.buf)
	u.buf = nil
	c := &econn{loop: l, cfd: int32(u.cfd), bfd: int32(u.bfd)}
	c.init(s, &u.t.cfg, u.rt, extensions)
	c.downf.take(s.pool, backendPending)
	c.bytesDown.Add(int64(len(backendPending)))
	u.cfd, u.bfd = -1, -1 // the econn owns them now
	s.reg.add(c)
	s.metrics.handshake(hsOK)
	c.begin(true, u.clientSent, u.backendFull)
	if s.stopping.Load() {
		c.finish(goingAway(), time.Now().UnixNano())
		c.settle(time.Now().UnixNano())
	}
}

// refusal relays a backend's non-101 answer: its head with the connection
// marked to close, then up to maxRefusalBody of its body.
func (u *upgrade) refusal(status, end int) {
	h := u.head
	s := u.srv
	s.metrics.handshake(hsRefused)
	s.log.Info("backend refused upgrade", zap.Stringer("remote", u.peer),
		zap.String("backend", u.rt.backend), zap.Int("status", status))
	u.left = -1
	if cl := h.Field("Content-Length"); cl != nil {
		if n, err := strconv.ParseInt(string(cl), 10, 64); err == nil && n >= 0 {
			u.left = n
		}
	}
	out := make([]byte, 0, end+32)
	out = append(out, h.RequestLine()...)
	for i := range h.Len() {
		if name := h.Name(i); equalFold(name, "Connection") || equalFold(name, "Keep-Alive") {
			continue
		}
		out = append(out, h.Line(i)...)
		out = append(out, "\r\n"...)
	}
	out = append(out, "Connection: close\r\n\r\n"...)
	body := append([]byte(nil), (*u.buf)[end:u.n]...)
	u.releaseReservation()
	u.phase, u.out, u.toClient = phRefusal, out, true
	u.n = 0
	u.then = func() { u.relayRefusal(body) }
	u.write()
}

// relayRefusal passes body bytes of a refusal to the client, closing once
// the body is complete or long enough.
func (u *upgrade) relayRefusal(body []byte) {
	if u.left >= 0 && int64(len(body)) > u.left {
		body = body[:u.left]
	}
	if u.left > 0 {
		u.left -= int64(len(body))
	}
	u.out, u.toClient = append([]byte(nil), body...), true
	u.then = func() {
		if u.left == 0 {
			u.close()
			return
		}
		u.readResponse() // the backend socket is edge-triggered
	}
	if len(u.out) == 0 {
		u.then()
		return
	}
	u.write()
}

// refuse answers the client with the proxy's own status and closes.
// result labels the handshake metric; "" counts nothing.
func (u *upgrade) refuse(result string, he *handshakeError) {
	s := u.srv
	if result != "" {
		s.metrics.handshake(result)
	}
	s.log.Info("handshake refused", zap.Stringer("remote", u.peer), zap.Int("status", he.status),
		zap.String("reason", he.msg), zap.Error(he.err))
	u.releaseReservation()
	if u.bfd >= 0 {
		u.loop.unregister(u.bfd)
		unix.Close(u.bfd)
		u.bfd = -1
	}
	extra := ""
	switch he.status {
	case http.StatusUpgradeRequired:
		extra = "Sec-WebSocket-Version: 13\r\n"
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		extra = "Retry-After: " + retryAfter + "\r\n"
	}
	u.phase, u.out, u.toClient = phAnswer, errorAnswer(he.status, he.msg, extra), true
	u.then = u.close
	// A client that does not take the answer is not waited for long.
	u.loop.upgrades.schedule(u, time.Now().UnixNano()+int64(time.Second))
	u.write()
}

func (u *upgrade) releaseReservation() {
	if u.reserved {
		u.srv.reg.unreserve(u.rt.backend, u.rt.client)
		u.reserved = false
	}
}

// handOff gives the connection, and what it sent so far, to the HTTP
// server path.
func (u *upgrade) handOff() {
	u.releaseReservation()
	prefix := u.partial
	if u.buf != nil {
		prefix = append(prefix, (*u.buf)[:u.n]...)
	}
	fd := u.cfd
	u.loop.release(fd)
	u.cfd = -1
	u.closeBackendAndBuffer()
	f := os.NewFile(uintptr(fd), "client")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return
	}
	u.srv.front.Load().ln.handOver(newStrictConn(u.srv, conn, prefix))
}

// close ends the handshake and closes both sockets.
func (u *upgrade) close() {
	u.releaseReservation()
	if u.cfd >= 0 {
		u.loop.unregister(u.cfd)
		unix.Close(u.cfd)
		u.cfd = -1
	}
	u.closeBackendAndBuffer()
}

func (u *upgrade) closeBackendAndBuffer() {
	u.loop.upgrades.cancel(u)
	if u.bfd >= 0 {
		u.loop.unregister(u.bfd)
		unix.Close(u.bfd)
		u.bfd = -1
	}
	if u.buf != nil {
		u.loop.putBuf(u.buf)
		u.buf = nil
	}
}
