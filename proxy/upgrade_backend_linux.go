//go:build linux

package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/wsedge/wsedge/proxy/evloop"
	"github.com/wsedge/wsedge/proxy/http1"
	"github.com/wsedge/wsedge/proxy/looptls"
	"github.com/wsedge/wsedge/upstream"
)

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
	if err := u.loop.Register(fd, u, relayInterest); err != nil {
		u.dialFailed(err)
	}
}

// resolve looks the backend's name up off the loop, then dials it. The
// loop goes on with the connection meanwhile: a client that hangs up
// closes it, and the answer finds it closed.
func (u *upgrade) resolve() {
	host, port, err := net.SplitHostPort(u.rt.backend)
	p, perr := strconv.ParseUint(port, 10, 16)
	if err != nil || perr != nil {
		u.dialFailed(fmt.Errorf("backend address %q: want host:port", u.rt.backend))
		return
	}
	u.phase = phResolve
	ctx, cancel := context.WithDeadline(u.srv.life, time.Unix(0, u.deadline()))
	u.srv.resolving.Go(func() {
		defer cancel()
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		u.loop.Post(func() { u.resolved(ips, uint16(p), err) })
	})
}

// resolved dials the addresses the backend's name has, in the order the
// resolver gave them, until one takes the connection.
func (u *upgrade) resolved(ips []netip.Addr, port uint16, err error) {
	switch {
	case u.cfd < 0:
		return // closed meanwhile
	case err == nil && len(ips) == 0:
		err = fmt.Errorf("lookup %s: no address", u.rt.backend)
	}
	if err != nil {
		u.dialFailed(err)
		return
	}
	for _, ip := range ips[1:] {
		u.others = append(u.others, netip.AddrPortFrom(ip.Unmap(), port))
	}
	u.dial(netip.AddrPortFrom(ips[0].Unmap(), port))
}

// connected finishes the connect and sends the request, after a TLS
// handshake with [upstream_tls]. Writability without an error condition
// is a connect that succeeded; only a failed one has its error asked for.
func (u *upgrade) connected(failed bool) {
	if failed {
		errno, err := unix.GetsockoptInt(u.bfd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err == nil {
			err = unix.Errno(errno)
			if errno == 0 {
				err = unix.ECONNREFUSED // hung up without a reason
			}
		}
		if len(u.others) > 0 && upstream.LocalFailure(err) == "" {
			// The name has other addresses: try the next.
			u.loop.Unregister(u.bfd)
			unix.Close(u.bfd)
			u.bfd = -1
			next := u.others[0]
			u.others = u.others[1:]
			u.dial(next)
			return
		}
		u.dialFailed(err)
		return
	}
	u.others = nil
	if tc := u.t.cfg.UpstreamTLS; tc != nil {
		u.startBackendHandshake(tc)
		return
	}
	u.send()
}

// startBackendHandshake gives the TLS handshake with the backend to a
// worker of the pool; the loop leaves the upgrade alone until it is done.
func (u *upgrade) startBackendHandshake(tc *tls.Config) {
	if tc.ServerName == "" && !tc.InsecureSkipVerify {
		tc = tc.Clone() // server_name defaults to the backend's host
		tc.ServerName, _, _ = net.SplitHostPort(u.rt.backend)
	}
	fd := u.bfd
	u.phase = phBackendTLS
	u.loop.upgrades.Cancel(u)
	done := func(side *looptls.Side, err error) {
		if !u.loop.Post(func() { u.backendHandshakeDone(fd, side, err) }) {
			unix.Close(fd) // the loop stopped: nobody else will
		}
	}
	if !u.srv.poll.handshakes.Client(fd, evloop.PeerAddr(fd), tc, u.deadline(), done) {
		u.phase = phConnect
		u.refuse(hsOverLimit, &handshakeError{status: http.StatusServiceUnavailable, msg: "proxy busy with TLS handshakes; try again later"})
	}
}

// backendHandshakeDone takes the backend's socket, fd, back from the
// worker.
func (u *upgrade) backendHandshakeDone(fd int, side *looptls.Side, err error) {
	u.phase = phConnect
	switch {
	case u.halted:
		unix.Close(fd)
		return
	case err != nil:
		u.dialFailed(err)
		return
	}
	u.btls = side
	u.loop.upgrades.Schedule(u, u.deadline())
	u.send()
}

// send writes the request to the backend, then reads its answer.
func (u *upgrade) send() {
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
	read := evloop.ReadFD
	if u.btls != nil {
		read = func(_ int, p []byte) (int, error) { return u.btls.Read(p) }
	}
	n, err := read(u.bfd, (*u.buf)[u.n:])
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
	l.upgrades.Cancel(u)
	l.PutBuf(u.buf)
	u.buf = nil
	c := &econn{loop: l, cfd: int32(u.cfd), bfd: int32(u.bfd), ctls: u.tls, btls: u.btls}
	c.init(s, &u.t.cfg, u.rt, extensions)
	c.up.CountSizes(&l.stats.up.sizes)
	c.down.CountSizes(&l.stats.down.sizes)
	c.upf.take(s.pool, u.clientRest)
	c.bytesUp.Add(int64(len(u.clientRest)))
	c.downf.take(s.pool, backendPending)
	c.bytesDown.Add(int64(len(backendPending)))
	u.cfd, u.bfd = -1, -1 // the econn owns them now
	s.reg.add(c)
	u.count(hsOK)
	// A TLS client may have records waiting decrypted, where no edge
	// announces them.
	c.begin(true, u.clientSent || u.tls != nil, u.backendFull || u.btls != nil)
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
	u.count(hsRefused)
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
