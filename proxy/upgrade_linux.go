//go:build linux

package proxy

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/wsedge/wsedge/proxy/evloop"
	"github.com/wsedge/wsedge/proxy/http1"
	"github.com/wsedge/wsedge/proxy/looptls"
)

// upgradePhase is where an upgrade stands.
type upgradePhase uint8

const (
	phProxy      upgradePhase = iota // reading a PROXY protocol header
	phTLS                            // waiting for the client's ClientHello
	phHandshake                      // in the TLS handshake with the client, on a worker of the pool
	phRequest                        // reading the client's request head
	phResolve                        // looking up the backend's name
	phConnect                        // waiting for the backend's TCP connect
	phBackendTLS                     // in the TLS handshake with the backend, on a worker of the pool
	phSend                           // writing the request to the backend
	phResponse                       // reading the backend's response head
	phAnswer                         // writing the answer to the client
	phRefusal                        // relaying a refusal's body to the client
)

// upgrade takes one client connection through the WebSocket handshake on
// an event loop, with no goroutine and no http.Request: a PROXY protocol
// header is read and TLS terminated first when the listener says so (the
// TLS handshake itself on a worker of the pool), the client's head is
// parsed in place, the backend is dialed without blocking, the client's
// own handshake headers go to the backend, and its 101 comes back with the
// proxy's additions. On success the same sockets become an econn.
// Anything that is not a plain WebSocket upgrade, or needs what only the
// HTTP server path has (DNS names, TLS to backends), is handed to that
// path with the bytes read so far.
//
// All its methods run on the loop's goroutine, but for the TLS handshake,
// which a worker does while the loop leaves the upgrade alone.
type upgrade struct {
	evloop.WheelEntry[upgrade]
	srv      *Server
	loop     *loop
	cfd, bfd int // bfd is -1 until dialed
	peer     netip.AddrPort
	mode     *clientMode      // what the client speaks before HTTP; nil for plain HTTP
	tls      *looptls.Side    // the client's TLS, once its handshake is done
	btls     *looptls.Side    // the backend's TLS, with [upstream_tls], once its handshake is done
	others   []netip.AddrPort // the backend name's other addresses, to try when a connect fails
	phase    upgradePhase
	started  int64
	halted   bool // the loop stopped while a worker had a socket
	// firstByte is when the request's first byte came (unix nanoseconds),
	// from which the handshake's duration is measured.
	firstByte int64

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
	clientRest []byte // bytes the client sent after its head, before the 101
	// backendFull: the last read from the backend filled the buffer, so the
	// relay starts by reading on.
	backendFull bool

	left int64 // refusal body bytes still to relay; -1 until the backend closes
}

// Timer is the upgrade's entry on its loop's wheel of handshake deadlines.
// count counts the handshake's result and its duration.
func (u *upgrade) count(result string) {
	u.srv.metrics.handshake(result)
	u.srv.metrics.handshakeTook(result, u.firstByte)
}

func (u *upgrade) Timer() *evloop.WheelEntry[upgrade] { return &u.WheelEntry }

// acceptUpgrade hands a freshly accepted connection to an event loop for
// its handshake. It reports false when the loops cannot take it, and the
// caller serves it the usual way.
func (s *Server) acceptUpgrade(conn net.Conn) bool {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
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
	if !l.Post(u.start) {
		unix.Close(fd)
	}
	return true
}

// Both sockets are registered once, edge-triggered for reads and writes,
// as the relay wants them: connecting, sending, reading and the relay that
// follows need no change of interest.

func (u *upgrade) start() {
	if err := u.loop.Register(u.cfd, u, relayInterest); err != nil {
		u.close()
		return
	}
	u.head = nil
	switch {
	case u.mode != nil && u.mode.proxyProtocol:
		u.phase = phProxy
	case u.mode != nil && u.mode.tls != nil:
		u.phase = phTLS
	default:
		u.phase = phRequest
	}
	u.loop.upgrades.Schedule(u, u.deadline())
}

// deadline is when the handshake must be done: handshake_timeout after
// the client connected.
func (u *upgrade) deadline() int64 {
	return u.started + int64(u.srv.router.table().cfg.HandshakeTimeout)
}

// Halt closes the upgrade: the loop is stopping. A worker in a TLS
// handshake still uses its socket, so it closes that one once done.
func (u *upgrade) Halt(int64) {
	switch u.phase {
	case phHandshake:
		u.halted = true
		u.loop.Unregister(u.cfd)
		u.cfd = -1 // the worker's now
		u.close()
	case phBackendTLS:
		u.halted = true
		u.loop.Unregister(u.bfd)
		u.bfd = -1 // the worker's now
		u.close()
	default:
		u.close()
	}
}

// withWorker reports whether a worker of the pool has one of the
// upgrade's sockets: the loop leaves both alone until it is done.
func (u *upgrade) withWorker() bool { return u.phase == phHandshake || u.phase == phBackendTLS }

// OnEvent takes an edge of the client's or the backend's socket and
// moves the phase it concerns on.
func (u *upgrade) OnEvent(fd int, events uint32, now int64) {
	if u.cfd < 0 || u.withWorker() {
		return // the handshake reads what comes; the rest waits for it
	}
	in := events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0
	out := events&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0
	if fd == u.cfd && in && u.phase > phRequest {
		// Bytes before the 101, or the client hanging up: either way an
		// edge the relay must not miss.
		u.clientSent = true
		if events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			u.count(hsClientFailed)
			u.close()
			return
		}
	}
	if out && (len(u.out) > 0 || u.outSide() != nil && u.outSide().Held()) && (fd == u.cfd) == u.toClient {
		u.write()
		if u.cfd < 0 {
			return
		}
	}
	switch {
	case fd == u.cfd && u.phase == phProxy && in:
		u.readProxy()
	case fd == u.cfd && u.phase == phTLS && in:
		u.startHandshake()
	case fd == u.cfd && u.phase == phRequest && in:
		u.readRequest()
	case fd == u.bfd && u.phase == phConnect && out:
		u.connected(events&(unix.EPOLLERR|unix.EPOLLHUP) != 0)
	case fd == u.bfd && in && (u.phase == phResponse || u.phase == phRefusal):
		u.readResponse()
	}
}

// Expire ends a handshake that took longer than handshake_timeout: a slow
// client (slowloris) is cut, a slow backend answered with 504.
func (u *upgrade) Expire(now int64) {
	if u.cfd < 0 {
		return
	}
	switch u.phase {
	case phProxy, phTLS:
		u.close() // nothing to answer in: no HTTP yet
		return
	case phRequest:
		// A slowloris client: it gets its answer, then the door.
		u.refuse(hsClientFailed, &handshakeError{status: http.StatusRequestTimeout, msg: "request head not received in time"})
		return
	case phAnswer, phRefusal:
		u.count(hsClientFailed)
		u.close()
		return
	}
	u.refuse(hsBackendTimeout, &handshakeError{status: http.StatusGatewayTimeout, msg: "backend handshake timed out"})
}

// outSide is the TLS out goes through: the client's or the backend's;
// nil when that peer speaks plain TCP.
func (u *upgrade) outSide() *looptls.Side {
	if u.toClient {
		return u.tls
	}
	return u.btls
}

// write writes out to its peer, then runs then.
func (u *upgrade) write() {
	if side := u.outSide(); side != nil {
		u.writeTLS(side)
		return
	}
	fd := u.bfd
	if u.toClient {
		fd = u.cfd
	}
	n, err := evloop.WriteFD(fd, u.out)
	u.out = u.out[n:]
	switch {
	case err != nil && !errors.Is(err, unix.EAGAIN):
		if u.toClient {
			u.count(hsClientFailed)
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

// refuse answers the client with the proxy's own status and closes.
// result labels the handshake metric; "" counts nothing.
func (u *upgrade) refuse(result string, he *handshakeError) {
	s := u.srv
	if result != "" {
		u.count(result)
	}
	s.log.Info("handshake refused", zap.Stringer("remote", u.peer), zap.Int("status", he.status),
		zap.String("reason", he.msg), zap.Error(he.err))
	u.releaseReservation()
	if u.bfd >= 0 {
		u.loop.Unregister(u.bfd)
		unix.Close(u.bfd)
		u.bfd = -1
	}
	extra := ""
	switch he.status {
	case http.StatusUpgradeRequired:
		extra = "Sec-WebSocket-Version: 13\r\n"
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		extra = "Retry-After: " + he.retryAfter() + "\r\n"
	}
	u.phase, u.out, u.toClient = phAnswer, errorAnswer(he.status, he.msg, extra), true
	u.then = u.close
	// A client that does not take the answer is not waited for long.
	u.loop.upgrades.Schedule(u, time.Now().UnixNano()+int64(time.Second))
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
	u.loop.Release(fd)
	u.cfd = -1
	u.closeBackendAndBuffer()
	f := os.NewFile(uintptr(fd), "client")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return
	}
	if u.tls != nil {
		// The HTTP server reads the records through Go's socket now.
		conn = u.tls.HandOff(conn)
	} else {
		conn = peerConn{Conn: conn, peer: net.TCPAddrFromAddrPort(u.peer)}
	}
	u.srv.front.Load().ln.handOver(newStrictConn(u.srv, conn, prefix))
}

// peerConn is a socket handed to the HTTP server whose client is u.peer:
// the client a PROXY protocol header named, not the balancer that
// connected. Whom the server trusts for forwarding headers hangs on it.
type peerConn struct {
	net.Conn
	peer net.Addr
}

func (c peerConn) RemoteAddr() net.Addr { return c.peer }

// close ends the handshake and closes both sockets.
func (u *upgrade) close() {
	u.releaseReservation()
	if u.cfd >= 0 {
		u.loop.Unregister(u.cfd)
		unix.Close(u.cfd)
		u.cfd = -1
	}
	u.closeBackendAndBuffer()
}

func (u *upgrade) closeBackendAndBuffer() {
	u.loop.upgrades.Cancel(u)
	if u.bfd >= 0 {
		u.loop.Unregister(u.bfd)
		unix.Close(u.bfd)
		u.bfd = -1
	}
	if u.buf != nil {
		u.loop.PutBuf(u.buf)
		u.buf = nil
	}
}
