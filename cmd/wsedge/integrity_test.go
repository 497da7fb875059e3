package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
)

// streamPool holds the bytes every message body is cut from, the same on
// every side, so that a receiver knows what each message of a stream must
// be without it being sent twice.
type streamPool struct {
	bin  []byte // random
	text []byte // printable ASCII
}

func newStreamPool() *streamPool {
	rng := rand.NewChaCha8([32]byte{'w', 's', 'e', 'd', 'g', 'e'})
	sp := &streamPool{bin: make([]byte, 2<<20), text: make([]byte, 2<<20)}
	rng.Read(sp.bin)
	rng.Read(sp.text)
	for i, b := range sp.text {
		sp.text[i] = ' ' + b%95
	}
	return sp
}

// headerLen is the length of the "seq:hash:" header a message long enough
// starts with.
const headerLen = 34

// message returns message seq of the stream seeded with seed: its type,
// size and bytes follow from (seed, seq). Sizes run from 1 byte to 1 MiB:
// most are small, 2% between 1 and 64 KiB, 0.1% between 64 KiB and 1 MiB.
// A message of 48 bytes or more starts with its sequence number and the
// xxhash of the rest, so that a receiver can tell a lost, repeated or
// reordered message from a corrupted one. Text messages are valid UTF-8,
// with multi-byte runes at the end so that fragments split them.
func (sp *streamPool) message(seed uint64, seq int) (op int, p []byte) {
	op, size, off := sp.shape(seed, seq)
	pool := sp.bin
	if op == websocket.TextMessage {
		pool = sp.text
	}
	p = bytes.Clone(pool[off : off+size])
	if op == websocket.TextMessage && size >= 16 {
		copy(p[size-9:], "é€😀")
	}
	if size >= 48 {
		copy(p, fmt.Sprintf("%016x:%016x:", seq, xxhash.Sum64(p[headerLen:])))
	}
	return op, p
}

// shape is the type, size and offset in the pool of message seq.
func (sp *streamPool) shape(seed uint64, seq int) (op, size, off int) {
	rng := rand.New(rand.NewPCG(seed, uint64(seq)))
	switch r := rng.IntN(1000); {
	case r < 1:
		size = 64<<10 + rng.IntN(1<<20-64<<10+1)
	case r < 21:
		size = 1<<10 + rng.IntN(63<<10)
	case r < 500:
		size = 1 + rng.IntN(64)
	default:
		size = 1 + rng.IntN(1<<10)
	}
	op = websocket.BinaryMessage
	if rng.IntN(2) == 0 {
		op = websocket.TextMessage
	}
	return op, size, rng.IntN(len(sp.bin) - size + 1)
}

// streamStats sums up n messages of the stream seed as a sender with a
// write buffer of wbuf bytes sends them.
type streamStats struct {
	messages, bytes, text, large, fragmented int
}

func (st *streamStats) add(sp *streamPool, seed uint64, n, wbuf int) {
	for i := range n {
		op, size, _ := sp.shape(seed, i)
		st.messages++
		st.bytes += size
		if op == websocket.TextMessage {
			st.text++
		}
		if size >= 64<<10 {
			st.large++
		}
		if size > wbuf {
			st.fragmented++
		}
	}
}

func (st streamStats) String() string {
	return fmt.Sprintf("%d messages, %d MiB, %d text, %d of 64 KiB to 1 MiB, %d fragmented", st.messages, st.bytes>>20, st.text, st.large, st.fragmented)
}

// check compares message seq of a stream as received with what it must
// be, and says how it differs.
func (sp *streamPool) check(seed uint64, seq, op int, got []byte) error {
	wantOp, want := sp.message(seed, seq)
	if op == wantOp && bytes.Equal(got, want) {
		return nil
	}
	if len(got) >= 48 {
		var gotSeq, gotHash uint64
		if _, err := fmt.Sscanf(string(got[:headerLen]), "%016x:%016x:", &gotSeq, &gotHash); err == nil {
			switch {
			case int(gotSeq) != seq:
				return fmt.Errorf("message %d arrived where %d was due: lost, repeated or reordered", gotSeq, seq)
			case gotHash != xxhash.Sum64(got[headerLen:]):
				return fmt.Errorf("message %d: hash mismatch, %d bytes corrupted on the way", seq, len(got))
			}
		}
	}
	return fmt.Errorf("message %d: got type %d, %d bytes; want type %d, %d bytes", seq, op, len(got), wantOp, len(want))
}

// checkingBackend is an app server (gorilla/websocket, neither the
// proxy's implementation nor the test client's framing) that, on
// /stream, checks every message of the client's stream and sends its own
// stream back at the same time; on /flood, sends until it cannot. It
// records the close code each connection ended with (1006: without a
// close frame). Safe for concurrent use; stopped at test cleanup.
type checkingBackend struct {
	addr     string
	pool     *streamPool
	srv      *httptest.Server
	received atomic.Int64 // messages checked
	sent     atomic.Int64

	mu     sync.Mutex
	closes []int
	errs   []error
	live   map[*websocket.Conn]struct{}
	wg     sync.WaitGroup
}

func startCheckingBackend(t *testing.T, pool *streamPool) *checkingBackend {
	t.Helper()
	cb := &checkingBackend{pool: pool, live: map[*websocket.Conn]struct{}{}}
	cb.srv = httptest.NewServer(http.HandlerFunc(cb.serve))
	cb.addr = strings.TrimPrefix(cb.srv.URL, "http://")
	t.Cleanup(func() {
		cb.srv.Close()
		cb.mu.Lock()
		for c := range cb.live {
			c.Close()
		}
		cb.mu.Unlock()
		cb.wg.Wait()
	})
	return cb
}

func (cb *checkingBackend) serve(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		w.Write([]byte("ok")) // health checks
		return
	}
	q := r.URL.Query()
	wbuf, _ := strconv.Atoi(q.Get("wbuf"))
	up := websocket.Upgrader{WriteBufferSize: max(wbuf, 4096), CheckOrigin: func(*http.Request) bool { return true }}
	c, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	cb.mu.Lock()
	cb.live[c] = struct{}{}
	cb.wg.Add(1)
	cb.mu.Unlock()
	defer cb.wg.Done()
	defer func() {
		cb.mu.Lock()
		delete(cb.live, c)
		cb.mu.Unlock()
		c.Close()
	}()
	c.SetReadLimit(2 << 20)
	switch r.URL.Path {
	case "/stream":
		seed, _ := strconv.ParseUint(q.Get("seed"), 10, 64)
		n, _ := strconv.Atoi(q.Get("n"))
		cb.stream(c, seed, n)
	case "/flood":
		cb.flood(c)
	default:
		cb.record(c, nil)
	}
}

// stream checks n messages from the client while sending n of its own
// (seed+1), then waits for the client's close.
func (cb *checkingBackend) stream(c *websocket.Conn, seed uint64, n int) {
	sending := make(chan error, 1)
	go func() {
		for i := range n {
			op, p := cb.pool.message(seed+1, i)
			if err := c.WriteMessage(op, p); err != nil {
				sending <- fmt.Errorf("backend sending message %d: %w", i, err)
				return
			}
			cb.sent.Add(1)
		}
		sending <- nil
	}()
	for i := range n {
		op, p, err := c.ReadMessage()
		if err == nil {
			err = cb.pool.check(seed, i, op, p)
		}
		if err != nil {
			cb.fail(fmt.Errorf("backend, stream %d: %w", seed, err))
			cb.record(c, sending)
			return
		}
		cb.received.Add(1)
	}
	cb.record(c, sending)
}

// flood sends 64 KiB messages until a write fails, for a client that does
// not read.
func (cb *checkingBackend) flood(c *websocket.Conn) {
	done := make(chan error, 1)
	go func() {
		msg := make([]byte, 64<<10)
		for range 10000 {
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if c.WriteMessage(websocket.BinaryMessage, msg) != nil {
				break
			}
		}
		done <- nil
	}()
	cb.record(c, done)
}

// record reads until the connection ends, notes how, and waits for the
// writer (if any) to stop. gorilla answers a close frame with its own.
func (cb *checkingBackend) record(c *websocket.Conn, writer <-chan error) {
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	code := websocket.CloseAbnormalClosure
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			cb.fail(errors.New("backend: a message after the end of the stream"))
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			code = ce.Code
		}
		break
	}
	c.Close()
	if writer != nil {
		if err := <-writer; err != nil && code != websocket.CloseNormalClosure {
			cb.fail(err)
		}
	}
	cb.mu.Lock()
	cb.closes = append(cb.closes, code)
	cb.mu.Unlock()
}

func (cb *checkingBackend) fail(err error) {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	cb.errs = append(cb.errs, err)
}

// waitCloses waits until n connections have ended and returns their close
// codes, counted.
func (cb *checkingBackend) waitCloses(t *testing.T, n int, within time.Duration) map[int]int {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		cb.mu.Lock()
		got := len(cb.closes)
		counts := map[int]int{}
		for _, c := range cb.closes {
			counts[c]++
		}
		cb.mu.Unlock()
		if got >= n {
			return counts
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d backend connections ended within %v: %v", got, n, within, counts)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// streamClient runs one connection of the integrity test: it sends n
// messages of the stream seed while checking the n the backend sends
// (seed+1), then closes normally. Its writes are fragmented by gorilla at
// wbuf bytes, the backend's at bbuf.
func streamClient(d websocket.Dialer, target string, pool *streamPool, seed uint64, n, wbuf, bbuf int) (received int, err error) {
	d.WriteBufferSize = wbuf
	d.HandshakeTimeout = 10 * time.Second
	u := fmt.Sprintf("%s/stream?seed=%d&n=%d&wbuf=%d", target, seed, n, bbuf)
	c, _, err := d.Dial(u, nil)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetReadLimit(2 << 20)
	sending := make(chan error, 1)
	go func() {
		for i := range n {
			op, p := pool.message(seed, i)
			c.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if err := c.WriteMessage(op, p); err != nil {
				sending <- fmt.Errorf("sending message %d: %w", i, err)
				return
			}
		}
		sending <- nil
	}()
	for i := range n {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		op, p, err := c.ReadMessage()
		if err == nil {
			err = pool.check(seed+1, i, op, p)
		}
		if err != nil {
			return received, err
		}
		received++
	}
	if err := <-sending; err != nil {
		return received, err
	}
	c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "done"), time.Now().Add(5*time.Second))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	closed := time.Now()
	_, _, err = c.ReadMessage()
	switch {
	case websocket.IsCloseError(err, websocket.CloseNormalClosure):
	case websocket.IsCloseError(err, websocket.CloseAbnormalClosure) && time.Since(closed) >= 2*time.Second:
		// The backend was still reading this client's last messages when
		// the proxy's close linger ran out: TestCloseWaitsForSlowReader
		// holds the proxy to that; here it is the messages that count.
		return received, errLingerCut
	default:
		return received, fmt.Errorf("after the stream: %v, want the close answered", err)
	}
	return received, nil
}

// errLingerCut is a close the proxy cut at the end of its close linger,
// while the backend was still reading what came before it.
var errLingerCut = errors.New("close cut at the end of the proxy's close linger")

// Under load, in both directions at once, through both relay drivers
// (plain TCP on the event loops, TLS on goroutines): every message either
// peer sends arrives once, in order and byte-identical, whatever its size
// (1 byte to 1 MiB), type and fragmentation. Each message is checked
// against the stream it belongs to, by sequence number and hash.
func TestMessageIntegrity(t *testing.T) {
	pool := newStreamPool()
	tests := []struct {
		name     string
		tls      bool
		conns    int
		messages int // per connection, each way
	}{
		{"event loop", false, 32, 1600},
		{"TLS on goroutines", true, 16, 400},
	}
	total := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cb := startCheckingBackend(t, pool)
			// The backend shares the test's cores with a race-checked load
			// generator: give its health checks room.
			cfg := "[health]\ninterval = \"5s\"\ntimeout = \"4s\"\n" + fmt.Sprintf("\n[[upstream]]\naddress = %q\nweight = 1\n", cb.addr)
			var d websocket.Dialer
			if tt.tls {
				ca := newTestCA(t)
				dir := t.TempDir()
				cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
				ca.issue(t, 1, cert, key)
				cfg = fmt.Sprintf("[tls]\ncert = %q\nkey = %q\n", cert, key) + cfg
				d.TLSClientConfig = &tls.Config{RootCAs: ca.pool}
			}
			p := startWsedge(t, cfg)
			d = *p.wsDialer(d)
			target := p.wsURL("")
			start := time.Now()
			var wg sync.WaitGroup
			var got atomic.Int64
			errs := make([]error, tt.conns)
			bufs := []int{512, 4096, 64 << 10, 2 << 20}
			for i := range tt.conns {
				wg.Go(func() {
					var n int
					n, errs[i] = streamClient(d, target, pool, uint64(1000*i), tt.messages, bufs[i%len(bufs)], bufs[(i/len(bufs))%len(bufs)])
					got.Add(int64(n))
				})
			}
			wg.Wait()
			took := time.Since(start)
			cut := 0
			for i, err := range errs {
				if errors.Is(err, errLingerCut) {
					errs[i] = nil
					cut++
				}
			}
			if cut > 0 {
				t.Logf("%d connections: the final close was cut by the proxy's close linger, not answered (see TestCloseWaitsForSlowReader)", cut)
			}
			var up, down streamStats
			for i := range tt.conns {
				up.add(pool, uint64(1000*i), tt.messages, bufs[i%len(bufs)])
				down.add(pool, uint64(1000*i)+1, tt.messages, bufs[(i/len(bufs))%len(bufs)])
			}
			t.Logf("sent client to backend: %v; backend to client: %v", up, down)
			for i, err := range errs {
				if err != nil {
					t.Errorf("connection %d: %v", i, err)
				}
			}
			closes := cb.waitCloses(t, tt.conns, 10*time.Second)
			cb.mu.Lock()
			for _, err := range cb.errs {
				t.Error(err)
			}
			cb.mu.Unlock()
			checkedUp, checkedDown := cb.received.Load(), got.Load()
			want := int64(tt.conns * tt.messages)
			t.Logf("%d connections: %d messages client to backend and %d back checked in %v (%.0f messages/s); backend saw closes %v",
				tt.conns, checkedUp, checkedDown, took.Round(time.Millisecond), float64(checkedUp+checkedDown)/took.Seconds(), closes)
			if checkedUp != want || checkedDown != want {
				t.Errorf("checked %d and %d messages, want %d each way", checkedUp, checkedDown, want)
			}
			if closes[websocket.CloseNormalClosure] != tt.conns {
				t.Errorf("backend connections ended with %v, want %d normal closes", closes, tt.conns)
			}
			total += int(checkedUp + checkedDown)
		})
	}
	t.Logf("%d messages checked in all", total)
}

// When the proxy ends connections on purpose (draining a backend, a
// backend leaving the ring on reload, shutting down, a slow consumer), the
// close handshake completes with every peer that cooperates: the client
// gets the close frame that says why and its answer is taken (the proxy
// hangs up at once, not after its close linger), and the backend gets a
// 1001 it answers, so both applications see a planned move, not a crash.
func TestPlannedClosesCompleteHandshake(t *testing.T) {
	const clients = 20
	tests := []struct {
		name       string
		act        func(t *testing.T, p *proc, cfg, doomed string) // ends the doomed backend's connections
		path       string                                          // what the clients open on the backend
		wantClient int                                             // close code the clients get; 0: none can reach a client that stopped reading
		wantCause  string
	}{
		{
			name: "drain",
			act: func(t *testing.T, p *proc, _, doomed string) {
				req, _ := http.NewRequest(http.MethodPost, "http://"+p.admin+"/debug/drain?backend="+url.QueryEscape(doomed)+"&rate=1000", nil)
				req.Header.Set("X-Wsedge-Admin", "1")
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
			},
			path: "/", wantClient: 1012, wantCause: `"cause":"rebalanced"`,
		},
		{
			name: "backend removed by a reload",
			act: func(t *testing.T, p *proc, cfg, doomed string) {
				writeConfig(t, p.cfgPath, strings.Replace(cfg, fmt.Sprintf("\n[[upstream]]\naddress = %q\nweight = 1\n", doomed), "", 1))
				p.signal(t, syscall.SIGHUP)
			},
			path: "/", wantClient: 1012, wantCause: `"cause":"rebalanced"`,
		},
		{
			name: "shutdown",
			act: func(t *testing.T, p *proc, _, _ string) {
				p.signal(t, syscall.SIGTERM)
			},
			path: "/", wantClient: 1001, wantCause: `"cause":"proxy_shutting_down"`,
		},
		{
			// A client that takes no writes cannot get a close frame; its
			// backend still gets a clean one.
			name: "slow consumer",
			act:  func(*testing.T, *proc, string, string) {},
			path: "/flood", wantClient: 0, wantCause: `"cause":"slow_consumer"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool := newStreamPool()
			doomed, other := startCheckingBackend(t, pool), startCheckingBackend(t, pool)
			cfg := fmt.Sprintf("[affinity]\nkey = \"header\"\nheader = %q\n[websocket]\nwrite_timeout = \"1s\"\n", faultKeyHeader) +
				fmt.Sprintf("\n[[upstream]]\naddress = %q\nweight = 1\n", doomed.addr) +
				fmt.Sprintf("\n[[upstream]]\naddress = %q\nweight = 1\n", other.addr)
			p := startWsedge(t, cfg)
			keys := keysOn(t, p, []string{doomed.addr}, clients)[doomed.addr]
			conns := make([]*rawClient, clients)
			for i, key := range keys {
				c, err := dialRawPath(p, key, tt.path)
				if err != nil {
					t.Fatal(err)
				}
				defer c.conn.Close()
				conns[i] = c
			}
			time.Sleep(100 * time.Millisecond) // every connection registered
			acted := time.Now()
			tt.act(t, p, cfg, doomed.addr)
			outcomes := make([]string, clients)
			var wg sync.WaitGroup
			for i, c := range conns {
				wg.Go(func() { outcomes[i] = closeAndAnswer(c, tt.wantClient != 0) })
			}
			wg.Wait()
			want := []string{fmt.Sprintf("close %d answered, hung up", tt.wantClient)}
			if tt.wantClient == 0 {
				// Past write_timeout the proxy stops writing to a slow
				// consumer; a close frame reaches it only if there was
				// room for one.
				want = []string{"no close frame", "close 1008 answered, hung up"}
			}
			for i, o := range outcomes {
				if !slices.ContainsFunc(want, func(w string) bool { return strings.HasPrefix(o, w) }) {
					t.Errorf("client %d: %s; want %s", i, o, strings.Join(want, " or "))
				}
			}
			t.Logf("clients: %v", tally(outcomes))
			closes := doomed.waitCloses(t, clients, 10*time.Second)
			t.Logf("backend: its %d connections ended with close codes %v", clients, closes)
			if closes[websocket.CloseGoingAway] != clients {
				t.Errorf("backend connections ended with %v, want %d clean 1001 closes", closes, clients)
			}
			deadline := time.Now().Add(5 * time.Second)
			for p.logs.count(`"msg":"connection closed"`, tt.wantCause) < clients && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if n := p.logs.count(`"msg":"connection closed"`, tt.wantCause); n != clients {
				t.Errorf("%d connections logged as %s, want %d", n, tt.wantCause, clients)
			}
			if tt.name == "shutdown" {
				// Every handshake completed: nothing is left to wait for.
				if code := p.waitExit(t, 2*time.Second); code != 0 {
					t.Errorf("exit code %d after SIGTERM", code)
				}
				t.Logf("proxy exited %v after SIGTERM", time.Since(acted).Round(time.Millisecond))
			}
		})
	}
}

// dialRawPath opens a frame-level client to path on p as key.
func dialRawPath(p *proc, key, path string) (*rawClient, error) {
	d := p.gobwasDialer(ws.Dialer{Timeout: 10 * time.Second, Header: ws.HandshakeHeaderHTTP(http.Header{faultKeyHeader: {key}})})
	conn, br, _, err := d.Dial(context.Background(), p.wsURL(path))
	if err != nil {
		return nil, err
	}
	c := &rawClient{conn: conn, r: conn}
	if br != nil {
		c.r = br
	}
	return c, nil
}

// closeAndAnswer waits for the proxy's close frame, answers it as RFC 6455
// section 5.5.1 asks, and reports how the connection then ended: "close N
// answered, hung up after D" when the proxy took the answer and hung up.
// With expectClose false the client does not read until the proxy gave
// up on it (a slow consumer), then reads what is left.
func closeAndAnswer(c *rawClient, expectClose bool) string {
	if !expectClose {
		time.Sleep(3 * time.Second) // well past write_timeout
	}
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := ws.ReadFrame(c.r)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return "no close frame within 10s"
			}
			return "no close frame: " + err.Error()
		}
		if f.Header.OpCode != ws.OpClose {
			continue
		}
		code, _ := ws.ParseCloseFrameData(f.Payload)
		c.send(ws.NewCloseFrame(f.Payload), time.Second)
		answered := time.Now()
		c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.r.Read(make([]byte, 1))
		took := time.Since(answered)
		switch {
		case n > 0:
			return fmt.Sprintf("close %d answered, then more bytes", code)
		case took > time.Second:
			return fmt.Sprintf("close %d answered, proxy hung up only after %v (%v)", code, took.Round(time.Millisecond), err)
		}
		return fmt.Sprintf("close %d answered, hung up after %v", code, took.Round(time.Millisecond))
	}
}

// tally counts the outcomes of ss, the time each took left out.
func tally(ss []string) map[string]int {
	out := map[string]int{}
	for _, s := range ss {
		s, _, _ = strings.Cut(s, " after ")
		out[s]++
	}
	return out
}

// The integrity check itself catches what it must: a message lost,
// repeated or reordered, a corrupted byte, a changed type, a cut message.
func TestStreamCheckCatchesDamage(t *testing.T) {
	sp := newStreamPool()
	const seed = 7
	seq := 0
	for ; ; seq++ { // a message long enough to carry its header
		if _, size, _ := sp.shape(seed, seq); size >= 48 {
			break
		}
	}
	op, good := sp.message(seed, seq)
	_, next := sp.message(seed, seq+1)
	flip := bytes.Clone(good)
	flip[len(flip)-1] ^= 1
	other := websocket.TextMessage + websocket.BinaryMessage - op
	tests := []struct {
		name string
		op   int
		give []byte
		want string // in the error; "" for none
	}{
		{"intact", op, good, ""},
		{"next one instead", op, next, "was due"},
		{"a byte flipped", op, flip, "hash mismatch"},
		{"type changed", other, good, "got type"},
		{"cut short", op, good[:len(good)-1], "hash mismatch"},
	}
	for _, tt := range tests {
		err := sp.check(seed, seq, tt.op, tt.give)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: error %v, want one saying %q", tt.name, err, tt.want)
		}
	}
}

// A client's last messages and its close, queued towards a backend that
// reads them slowly but steadily, all arrive, and the backend's answer to
// the close reaches the client: the proxy's close linger is for peers that
// stopped answering, not for one still reading what came before the close.
func TestCloseWaitsForSlowReader(t *testing.T) {
	const total = 8 << 20
	type outcome struct {
		got  int
		code int
		err  error
	}
	result := make(chan outcome, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !websocket.IsWebSocketUpgrade(r) {
			return // health checks
		}
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		c.SetReadLimit(2 << 20)
		var o outcome
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		for {
			_, msg, err := c.NextReader()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					o.code = ce.Code // gorilla answers it
				} else {
					o.err = err
				}
				break
			}
			// About 1 MiB/s: steady progress, far slower than the client,
			// and never a write stalled for write_timeout.
			buf := make([]byte, 32<<10)
			for {
				n, err := io.ReadFull(msg, buf)
				o.got += n
				if err != nil {
					break
				}
				time.Sleep(30 * time.Millisecond)
			}
		}
		result <- o
	}))
	defer backend.Close()
	p := startWsedge(t, fmt.Sprintf("\n[[upstream]]\naddress = %q\nweight = 1\n", strings.TrimPrefix(backend.URL, "http://")))
	c, _ := wsDial(t, p, "/", nil)
	chunk := make([]byte, 1<<20)
	for range total / len(chunk) {
		c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if err := c.WriteMessage(websocket.BinaryMessage, chunk); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "all sent"), time.Now().Add(30*time.Second))
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, _, err := c.ReadMessage()
	took := time.Since(start)
	var o outcome
	select {
	case o = <-result:
	case <-time.After(30 * time.Second):
		t.Fatal("the backend never finished reading")
	}
	t.Logf("backend read %d of %d bytes and got close %d (%v); the client's close ended with %v after %v",
		o.got, total, o.code, o.err, err, took.Round(time.Millisecond))
	if o.got != total || o.code != websocket.CloseNormalClosure {
		t.Errorf("backend read %d of %d bytes, close %d (%v): want everything and the client's 1000", o.got, total, o.code, o.err)
	}
	if !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Errorf("client's close: %v after %v, want the backend's answer", err, took.Round(time.Millisecond))
	}
}
