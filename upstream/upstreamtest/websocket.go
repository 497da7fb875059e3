package upstreamtest

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
)

const (
	// whoami is the text message a backend answers with its name.
	whoami = "whoami"
	// closeWait bounds how long the backend waits, after sending a close
	// frame, for the peer's close (RFC 6455 7.1.1) and for the send itself.
	closeWait = 2 * time.Second
	// maxCloseReason is the longest reason that fits a close frame: control
	// payloads are at most 125 bytes, 2 of them the code (RFC 6455 5.5).
	maxCloseReason = 123
)

// wsConn is one accepted WebSocket connection.
type wsConn struct {
	// c is nil until the 101 has been written. Guarded by Backend.mu.
	c *websocket.Conn
	// closeMsg is a close frame CloseAll asked for before c was set; it is
	// sent as soon as c is. Guarded by Backend.mu.
	closeMsg []byte
}

// Conns returns how many WebSocket connections are live now: counted from
// just before the 101 is sent until the backend has closed the connection.
func (b *Backend) Conns() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.ws)
}

// WaitConns waits until exactly n WebSocket connections are live, or ctx
// ends. Connections end a moment after the peer sees their close, so a test
// that closed one waits here rather than reading Conns once.
func (b *Backend) WaitConns(ctx context.Context, n int) error {
	for {
		b.mu.Lock()
		live, changed := len(b.ws), b.wsChanged
		b.mu.Unlock()
		if live == n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("upstreamtest: %s has %d live connections, want %d: %w",
				b.Name, live, n, context.Cause(ctx))
		}
	}
}

// CloseAll sends a close frame with code and reason on every live WebSocket
// connection, as an app server shutting down does, and returns once the
// frames are written (or could not be within 2s). The backend then
// waits up to 2s for each peer's close before it closes the TCP
// connection. The code is sent as given, even one RFC 6455 forbids on the
// wire (1005 becomes an empty close frame); a reason longer than 123 bytes
// is cut. A backend made WithNeverRead keeps its connections open after
// sending, since it never reads the reply.
func (b *Backend) CloseAll(code ws.StatusCode, reason string) {
	msg := websocket.FormatCloseMessage(int(code), cutReason(reason))
	b.mu.Lock()
	live := make([]*websocket.Conn, 0, len(b.ws))
	for wc := range b.ws {
		if wc.c == nil {
			wc.closeMsg = msg // its 101 is being written; sent right after
			continue
		}
		live = append(live, wc.c)
	}
	b.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range live {
		wg.Go(func() { sendClose(c, msg) })
	}
	wg.Wait()
}

// PingAll sends a ping with payload on every live WebSocket connection, as
// an app server's own heartbeat does, and returns once the pings are
// written. Pongs coming back are counted by Pongs.
func (b *Backend) PingAll(payload string) {
	b.mu.Lock()
	live := make([]*websocket.Conn, 0, len(b.ws))
	for wc := range b.ws {
		if wc.c != nil {
			live = append(live, wc.c)
		}
	}
	b.mu.Unlock()
	for _, c := range live {
		_ = c.WriteControl(websocket.PingMessage, []byte(payload), time.Now().Add(closeWait))
	}
}

// Pongs returns how many pongs the backend has received, whoever's ping
// they answer: a proxy must keep the answers to its own pings to itself.
func (b *Backend) Pongs() int64 { return b.pongs.Load() }

// sendClose writes a close frame and arms the read deadline by which the
// peer's close must arrive.
func sendClose(c *websocket.Conn, msg []byte) {
	deadline := time.Now().Add(closeWait)
	// An error means the connection is gone or its writes are stuck; either
	// way the deadline below ends it.
	_ = c.WriteControl(websocket.CloseMessage, msg, deadline)
	_ = c.SetReadDeadline(deadline)
}

// cutReason shortens reason to fit a close frame without splitting a rune.
func cutReason(reason string) string {
	if len(reason) <= maxCloseReason {
		return reason
	}
	n := maxCloseReason
	for n > 0 && !utf8.RuneStart(reason[n]) {
		n--
	}
	return reason[:n]
}

// serveUpgrade answers a WebSocket upgrade request and, if it accepts it,
// serves the connection until it ends.
func (b *Backend) serveUpgrade(w http.ResponseWriter, r *http.Request) {
	b.recordHandshake(r)
	if d := b.opts.handshakeDelay; d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done(): // the peer left, or Close or Kill
			return
		}
	}
	if b.opts.refuse {
		b.refuse(w, r)
		return
	}
	header := b.upgradeHeader(r)
	if !acceptable(r) {
		// The upgrader answers with the status that says what is wrong.
		if c, err := b.upgrader.Upgrade(w, r, header); err == nil {
			_ = c.Close()
		}
		return
	}
	wc := b.addWS()
	c, err := b.upgrader.Upgrade(w, r, header)
	if err != nil { // the peer left mid-handshake, or sent frames before the 101
		b.dropWS(wc, false)
		return
	}
	b.attachWS(wc, c)
	defer b.dropWS(wc, true)
	defer c.Close()

	switch b.opts.mode {
	case modeNeverRead:
		<-b.ctx.Done()
	case modeSilent:
		b.discard(c.NetConn())
	default:
		b.echo(c)
	}
}

// refuse answers an upgrade request with the configured status and body.
func (b *Backend) refuse(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	b.addHeaders(h)
	seenHeaders(h, r)
	h.Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(b.opts.refuseStatus)
	_, _ = io.WriteString(w, b.opts.refuseBody)
}

// upgradeHeader returns the extra headers of the 101 response, including
// the chosen subprotocol, which the upgrader takes from here.
func (b *Backend) upgradeHeader(r *http.Request) http.Header {
	h := make(http.Header)
	b.addHeaders(h)
	seenHeaders(h, r)
	// The upgrader negotiates extensions itself and refuses to upgrade
	// when handed this header.
	h.Del("Sec-WebSocket-Extensions")
	if p := b.subprotocol(r); p != "" {
		h.Set("Sec-WebSocket-Protocol", p)
	}
	return h
}

// subprotocol picks the first protocol the client offers that the backend
// supports, so the client's order of preference decides.
func (b *Backend) subprotocol(r *http.Request) string {
	for _, offered := range websocket.Subprotocols(r) {
		for _, p := range b.opts.subprotocols {
			if offered == p {
				return p
			}
		}
	}
	return ""
}

// acceptable reports whether the upgrader will accept r, checking what
// IsWebSocketUpgrade does not (RFC 6455 4.2.1), so that a connection is
// counted before its 101 is written and only if it will be.
func acceptable(r *http.Request) bool {
	if r.Method != http.MethodGet || !hasToken(r.Header, "Sec-WebSocket-Version", "13") {
		return false
	}
	key, err := base64.StdEncoding.DecodeString(r.Header.Get("Sec-WebSocket-Key"))
	return err == nil && len(key) == 16
}

// hasToken reports whether the comma-separated header name lists token.
func hasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// addWS counts a connection whose 101 is about to be written.
func (b *Backend) addWS() *wsConn {
	wc := &wsConn{}
	b.mu.Lock()
	b.ws[wc] = struct{}{}
	b.accepted.Add(1)
	b.wsChangedLocked()
	b.mu.Unlock()
	return wc
}

// attachWS gives wc its connection and sends a close CloseAll asked for
// meanwhile.
func (b *Backend) attachWS(wc *wsConn, c *websocket.Conn) {
	b.mu.Lock()
	wc.c = c
	msg := wc.closeMsg
	b.mu.Unlock()
	if msg != nil {
		sendClose(c, msg)
	}
}

// dropWS forgets wc; accepted says whether its upgrade went through, so
// that a failed one is not counted in Accepted.
func (b *Backend) dropWS(wc *wsConn, accepted bool) {
	b.mu.Lock()
	delete(b.ws, wc)
	if !accepted {
		b.accepted.Add(-1)
	}
	b.wsChangedLocked()
	b.mu.Unlock()
}

// wsChangedLocked wakes WaitConns. b.mu must be held.
func (b *Backend) wsChangedLocked() {
	close(b.wsChanged)
	b.wsChanged = make(chan struct{})
}

// echo sends every data message back until the connection ends. The
// upgrader's default handlers answer a ping with a pong carrying the same
// payload (RFC 6455 5.5.2) and a close with a close echoing its code
// (5.5.1).
func (b *Backend) echo(c *websocket.Conn) {
	c.SetPongHandler(func(string) error {
		b.pongs.Add(1)
		return nil
	})
	for {
		op, r, err := c.NextReader()
		if err != nil {
			return
		}
		if err := b.echoMessage(c, op, r); err != nil {
			return
		}
	}
}

// echoMessage copies one message from r back to c, frame by frame as it
// arrives, so a message is never held whole in memory.
func (b *Backend) echoMessage(c *websocket.Conn, op int, r io.Reader) error {
	// Read one byte more than "whoami": a message that fits is answered or
	// echoed whole, a longer one is streamed.
	var head [len(whoami) + 1]byte
	n, err := io.ReadFull(r, head[:])
	switch err {
	case io.EOF, io.ErrUnexpectedEOF:
		b.messages.Add(1)
		p := head[:n]
		if op == websocket.TextMessage && string(p) == whoami {
			p = []byte(b.Name)
		}
		return c.WriteMessage(op, p)
	case nil:
	default:
		return err
	}
	w, err := c.NextWriter(op)
	if err != nil {
		return err
	}
	if _, err := w.Write(head[:n]); err != nil {
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		return err
	}
	b.messages.Add(1)
	return w.Close()
}

// discard reads and drops every frame, answering nothing, not even a
// protocol error: it parses frames itself on the raw connection because
// the upgrader would answer bad input with a close frame. The upgrader has
// read nothing past the handshake, so the raw connection is where the
// frames start.
func (b *Backend) discard(conn net.Conn) {
	r := bufio.NewReader(conn)
	for {
		h, err := ws.ReadHeader(r)
		if err != nil {
			break
		}
		if _, err := io.CopyN(io.Discard, r, h.Length); err != nil {
			break
		}
		// Reserved opcodes are not data (RFC 6455 5.2), though gobwas's
		// IsData says so.
		data := h.OpCode == ws.OpText || h.OpCode == ws.OpBinary || h.OpCode == ws.OpContinuation
		if h.Fin && data { // the last frame of a message
			b.messages.Add(1)
		}
	}
	// Past a bad frame there are no frames to find; go on draining, as a
	// hung app server would, until the peer hangs up.
	_, _ = io.Copy(io.Discard, r)
}
