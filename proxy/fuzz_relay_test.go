package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// Close codes the proxy may put in a close frame of its own: towards the
// client (relay.go: shutdown, protocol error, slow consumer or pong
// timeout, too big, backend not reading, backend gone or rebalanced,
// backend invalid), and towards the backend.
var (
	proxyCodesToClient  = []ws.StatusCode{1001, 1002, 1008, 1009, 1011, 1012, 1014}
	proxyCodesToBackend = []ws.StatusCode{1001, 1002, 1009}
)

// relayRig is a backend listener the fuzz harness answers itself and the
// relay servers in front of it: with and without io_uring, each with a
// small and a huge message limit.
type relayRig struct {
	backend net.Listener
	servers [4]*fuzzServer // index: bit 0 a system call per read and write, bit 1 small limit
}

func newRelayRig(tb testing.TB) *relayRig {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	rig := &relayRig{backend: ln}
	for i := range rig.servers {
		// No heartbeats: the proxy's own pings would be all a peer gets
		// that the other did not send.
		cfg := Config{MaxMessageBytes: 1 << 40, WriteTimeout: 2 * time.Second}
		if i&2 != 0 {
			cfg.MaxMessageBytes = fuzzSmallLimit
		}
		rig.servers[i] = startFuzzServer(tb, cfg, []string{ln.Addr().String()}, i&1 == 0)
	}
	return rig
}

// relayFlags are the harness's choices for one input, from its flags byte.
type relayFlags struct {
	server    int  // which of the rig's servers
	extension bool // permessage-deflate negotiated, so data frames may carry RSV1
	coalesce  bool // each peer's first bytes go out with its handshake
	backendUp bool // the backend hangs up first, else the client
	dribble   bool // bytes go out a few at a time
}

func parseRelayFlags(b uint8) relayFlags {
	return relayFlags{server: int(b & 3), extension: b&4 != 0, coalesce: b&8 != 0, backendUp: b&16 != 0, dribble: b&32 != 0}
}

// FuzzRelay feeds arbitrary bytes to a relayed WebSocket from both ends at
// once, through either driver: the proxy must not panic or allocate by
// declared lengths, each peer must receive a prefix of what the other sent
// (the proxy's own heartbeat pongs taken out), then at most one close
// frame of the proxy's own with a code it uses, and the connection must
// end and be logged once when the peers hang up.
func FuzzRelay(f *testing.F) {
	text := frameBytes(f, true, 0, ws.OpText, []byte("hello"), true)
	echo := frameBytes(f, true, 0, ws.OpText, []byte("hello"), false)
	f.Add(text, echo, uint8(0))
	f.Add(text, echo, uint8(1))
	f.Add(append(frameBytes(f, false, 0, ws.OpBinary, []byte("frag"), true),
		frameBytes(f, true, 0, ws.OpContinuation, []byte("ment"), true)...),
		frameBytes(f, true, 0, ws.OpClose, ws.NewCloseFrameBody(4000, "app"), false), uint8(8))
	f.Add(frameBytes(f, true, 0, ws.OpText, []byte("x"), false), []byte{0x82, 0x7f, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2}, uint8(2))
	f.Add(frameBytes(f, true, 0, ws.OpPong, []byte("wsedge-hb:00000001"), true), echo, uint8(32))
	f.Add([]byte("garbage that is no frame at all"), []byte("\x8f\x00\x88\x01\x03"), uint8(16|3))

	rig := newRelayRig(f)
	f.Fuzz(func(t *testing.T, fromClient, fromBackend []byte, flags uint8) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		rig.relay(t, fromClient, fromBackend, parseRelayFlags(flags))
		runtime.ReadMemStats(&after)
		if grew := after.TotalAlloc - before.TotalAlloc; grew > fuzzAllocBound {
			t.Fatalf("relaying %d and %d bytes allocated %d MiB", len(fromClient), len(fromBackend), grew>>20)
		}
	})
}

// relay runs one input: a client and a backend connect through the proxy,
// send their bytes, read until both have been quiet, hang up in the chosen
// order, and the results are checked.
func (rig *relayRig) relay(t *testing.T, fromClient, fromBackend []byte, fl relayFlags) {
	fs := rig.servers[fl.server]
	type side struct {
		conn net.Conn
		r    *bufio.Reader
		err  error
	}
	backendc := make(chan side, 1)
	go func() {
		rig.backend.(*net.TCPListener).SetDeadline(time.Now().Add(fuzzWait))
		conn, err := rig.backend.Accept()
		if err != nil {
			backendc <- side{err: err}
			return
		}
		r, err := answerUpgrade(conn, fl, fromBackend)
		backendc <- side{conn: conn, r: r, err: err}
	}()

	client, err := net.DialTimeout("tcp", fs.addr, fuzzWait)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	cr, err := askUpgrade(client, fl, fromClient)
	b := <-backendc
	if b.conn != nil {
		defer b.conn.Close()
	}
	if b.err != nil {
		t.Fatalf("backend side of the handshake: %v", b.err)
	}
	if err != nil {
		fs.settle(t, 0)
		t.Fatalf("client side of the handshake: %v", err)
	}

	// Read before writing, so that neither peer's writes can wait on the
	// other's reads.
	var written sync.WaitGroup
	written.Add(2)
	allWritten := make(chan struct{})
	go func() { written.Wait(); close(allWritten) }()
	var atClient, atBackend []byte
	var reads sync.WaitGroup
	reads.Go(func() { atClient = readUntilQuiet(client, cr, allWritten) })
	reads.Go(func() { atBackend = readUntilQuiet(b.conn, b.r, allWritten) })
	go func() { defer written.Done(); sendBytes(client, fromClient, fl) }()
	go func() { defer written.Done(); sendBytes(b.conn, fromBackend, fl) }()
	reads.Wait()
	if fl.backendUp {
		b.conn.Close()
		client.Close()
	} else {
		client.Close()
		b.conn.Close()
	}
	<-allWritten

	fs.settle(t, 1)
	if err := checkRelayed(atBackend, fromClient, true); err != nil {
		t.Errorf("client to backend: %v", err)
	}
	if err := checkRelayed(atClient, fromBackend, false); err != nil {
		t.Errorf("backend to client: %v", err)
	}
}

// askUpgrade sends the client's upgrade request, with the first bytes of
// payload when coalescing, and reads the proxy's 101. The rest of payload
// is left for sendBytes; the reader returned holds what came after the
// 101.
func askUpgrade(conn net.Conn, fl relayFlags, payload []byte) (*bufio.Reader, error) {
	req := "GET /fuzz HTTP/1.1\r\nHost: fuzz.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + fuzzKey + "\r\n"
	if fl.extension {
		req += "Sec-WebSocket-Extensions: permessage-deflate\r\n"
	}
	msg := []byte(req + "\r\n")
	if fl.coalesce {
		msg = append(msg, payload...)
	}
	conn.SetDeadline(time.Now().Add(fuzzWait))
	if _, err := conn.Write(msg); err != nil {
		return nil, err
	}
	r := bufio.NewReader(conn)
	res, err := http.ReadResponse(r, nil)
	if err != nil {
		return nil, err
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSwitchingProtocols {
		return nil, fmt.Errorf("proxy answered %s", res.Status)
	}
	if got := res.Header.Get("Sec-WebSocket-Extensions"); fl.extension != (got != "") {
		return nil, fmt.Errorf("extension offered %v, proxy answered %q", fl.extension, got)
	}
	conn.SetDeadline(time.Time{})
	return r, nil
}

// answerUpgrade reads the proxy's upgrade request on the backend side and
// accepts it, sending the first bytes of payload with the 101 when
// coalescing.
func answerUpgrade(conn net.Conn, fl relayFlags, payload []byte) (*bufio.Reader, error) {
	conn.SetDeadline(time.Now().Add(fuzzWait))
	r := bufio.NewReader(conn)
	req, err := http.ReadRequest(r)
	if err != nil {
		return nil, err
	}
	accept := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	res := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(accept[:]) + "\r\n"
	if fl.extension {
		if !strings.Contains(req.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate") {
			return nil, fmt.Errorf("proxy did not pass the extension offer on: %q", req.Header.Get("Sec-WebSocket-Extensions"))
		}
		res += "Sec-WebSocket-Extensions: permessage-deflate\r\n"
	}
	msg := []byte(res + "\r\n")
	if fl.coalesce {
		msg = append(msg, payload...)
	}
	if _, err := conn.Write(msg); err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return r, nil
}

// sendBytes writes what the handshake did not carry of p, a few bytes at a
// time when dribbling. Write errors are expected: the proxy may have hung
// up on a peer that broke the protocol.
func sendBytes(conn net.Conn, p []byte, fl relayFlags) {
	if fl.coalesce {
		return
	}
	conn.SetWriteDeadline(time.Now().Add(fuzzWait))
	for len(p) > 0 {
		n := len(p)
		if fl.dribble {
			n = min(n, 1+int(p[0]%7))
		}
		if _, err := conn.Write(p[:n]); err != nil {
			return
		}
		p = p[n:]
	}
}

// readUntilQuiet reads everything the peer gets until the connection ends
// or, once allWritten is closed, nothing has come for fuzzQuiet.
func readUntilQuiet(conn net.Conn, r io.Reader, allWritten <-chan struct{}) []byte {
	var got []byte
	buf := make([]byte, 4096)
	for deadline := time.Now().Add(fuzzWait); time.Now().Before(deadline); {
		conn.SetReadDeadline(time.Now().Add(fuzzQuiet))
		n, err := r.Read(buf)
		got = append(got, buf[:n]...)
		var ne net.Error
		switch {
		case err == nil:
		case errors.As(err, &ne) && ne.Timeout():
			select {
			case <-allWritten:
				return got
			default:
			}
		default:
			return got
		}
	}
	return got
}

// checkRelayed checks what one peer received against what the other sent:
// a prefix of it, then at most one close frame of the proxy's own, which
// may only start between frames. Towards the backend (masked) the proxy's
// heartbeat pongs are taken out of what the client sent, and the proxy's
// close carries a mask. Nothing may follow a close frame.
func checkRelayed(got, sent []byte, masked bool) error {
	want := sent
	codes := proxyCodesToClient
	if masked {
		want = withoutHeartbeatPongs(sent)
		codes = proxyCodesToBackend
	}
	if err := nothingAfterClose(got); err != nil {
		return err
	}
	if bytes.HasPrefix(want, got) {
		return nil
	}
	for _, b := range frameStarts(want) {
		if b > len(got) || !bytes.Equal(got[:b], want[:b]) {
			break
		}
		if code, ok := oneCloseFrame(got[b:], masked); ok {
			for _, c := range codes {
				if code == c {
					return nil
				}
			}
			return fmt.Errorf("after %d relayed bytes the proxy closed with code %d, not one it uses", b, code)
		}
	}
	n := 0
	for n < len(got) && n < len(want) && got[n] == want[n] {
		n++
	}
	return fmt.Errorf("received %d bytes that are not what was sent (%d bytes) plus a close of the proxy's: they differ at byte %d: got % x, sent % x",
		len(got), len(want), n, clip(got[n:]), clip(want[n:]))
}

// frameStarts returns the offsets in p where a frame starts, as long as p
// parses as frames: 0, then the end of each whole frame.
func frameStarts(p []byte) []int {
	starts := []int{0}
	for off := 0; off < len(p); {
		n, ok := wholeFrame(p[off:])
		if !ok {
			break
		}
		off += n
		starts = append(starts, off)
	}
	return starts
}

// wholeFrame returns the length of the whole frame at the start of p, by
// gobwas/ws's reading of its header, not the proxy's.
func wholeFrame(p []byte) (int, bool) {
	r := bytes.NewReader(p)
	h, err := ws.ReadHeader(r)
	if err != nil {
		return 0, false
	}
	hlen := len(p) - r.Len()
	if h.Length < 0 || h.Length > int64(len(p)-hlen) {
		return 0, false
	}
	return hlen + int(h.Length), true
}

// withoutHeartbeatPongs returns p without the masked pongs whose payload
// marks them as answers to the proxy's own pings, which the proxy keeps
// from the backend. It stops looking at the first bytes that are not a
// whole frame.
func withoutHeartbeatPongs(p []byte) []byte {
	var out []byte
	for len(p) > 0 {
		n, ok := wholeFrame(p)
		if !ok {
			break
		}
		if !isHeartbeatPong(p[:n]) {
			out = append(out, p[:n]...)
		}
		p = p[n:]
	}
	return append(out, p...)
}

func isHeartbeatPong(frame []byte) bool {
	f, err := ws.ReadFrame(bytes.NewReader(frame))
	if err != nil || f.Header.OpCode != ws.OpPong || !f.Header.Fin || f.Header.Rsv != 0 || !f.Header.Masked || f.Header.Length > 125 {
		return false
	}
	ws.Cipher(f.Payload, f.Header.Mask, 0)
	return bytes.HasPrefix(f.Payload, heartbeatPrefix)
}

// oneCloseFrame reports whether p is exactly one close frame, masked or
// not as asked, and its code (1005 when it has none).
func oneCloseFrame(p []byte, masked bool) (ws.StatusCode, bool) {
	n, ok := wholeFrame(p)
	if !ok || n != len(p) {
		return 0, false
	}
	f, err := ws.ReadFrame(bytes.NewReader(p))
	if err != nil || f.Header.OpCode != ws.OpClose || f.Header.Masked != masked {
		return 0, false
	}
	if masked {
		ws.Cipher(f.Payload, f.Header.Mask, 0)
	}
	if len(f.Payload) < 2 {
		return ws.StatusNoStatusRcvd, true
	}
	return ws.StatusCode(binary.BigEndian.Uint16(f.Payload)), true
}

// nothingAfterClose fails when a whole close frame in p is followed by
// anything (RFC 6455 section 5.5.1).
func nothingAfterClose(p []byte) error {
	for off := 0; off < len(p); {
		n, ok := wholeFrame(p[off:])
		if !ok {
			return nil
		}
		if ws.OpCode(p[off]&0x0f) == ws.OpClose && off+n < len(p) {
			return fmt.Errorf("%d bytes relayed after a close frame", len(p)-off-n)
		}
		off += n
	}
	return nil
}
