package proxy

import (
	"math"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsedge/wsedge/proxy/evloop"
	"github.com/wsedge/wsedge/proxy/wsframe"
)

// connRecord is a relayed WebSocket as it crosses from one process to the
// next in a binary upgrade: everything its econn holds but the two
// descriptors, which travel beside it, and the pointers to the process's
// own server, loop and config. It is plain data; handoff_linux.go takes it
// from an econn and makes an econn of it.
type connRecord struct {
	id      uint64
	reqID   string // the client's own X-Request-ID; "" when the proxy made it from id
	place   placement
	started int64

	up, down wsframe.Framer

	bytesUp, bytesDown           int64
	lastPong, lastRead, lastData int64
	msgTotal                     [2]uint64
	msgRate                      [2]uint32
	msgWindow                    int64
	msgInWin                     [2]uint32

	settings connSettings
	flows    [2]flowRecord // client to backend, backend to client

	nextPing, pingAt int64
	pingSeq          uint32

	end         *endRecord // nil while the connection is not ending
	lingerUntil int64
	limits      *clientLimits // nil when its settings set no rate limit
}

// connSettings are the settings a connection keeps from the config of its
// handshake: a reload, or the new process's own config, applies to new
// connections only.
type connSettings struct {
	pingInterval, pongTimeout, writeTimeout, idleTimeout time.Duration
	maxConnectionAge                                     time.Duration
	maxConnectionAgeJitter                               float64
	maxMessageBytes                                      int64
	clientMessagesPerSecond, clientMessageBurst          int64
	clientBytesPerSecond                                 int64
	rateLimitGrace                                       time.Duration
}

func settingsOf(cfg *Config) connSettings {
	return connSettings{
		pingInterval: cfg.PingInterval, pongTimeout: cfg.PongTimeout, writeTimeout: cfg.WriteTimeout,
		idleTimeout: cfg.IdleTimeout, maxConnectionAge: cfg.MaxConnectionAge,
		maxConnectionAgeJitter: cfg.MaxConnectionAgeJitter, maxMessageBytes: cfg.MaxMessageBytes,
		clientMessagesPerSecond: int64(cfg.ClientMessagesPerSecond), clientMessageBurst: int64(cfg.ClientMessageBurst),
		clientBytesPerSecond: cfg.ClientBytesPerSecond, rateLimitGrace: cfg.RateLimitGrace,
	}
}

// apply sets st on a copy of base, the receiving process's config.
func (st connSettings) apply(base Config) *Config {
	base.PingInterval, base.PongTimeout, base.WriteTimeout = st.pingInterval, st.pongTimeout, st.writeTimeout
	base.IdleTimeout, base.MaxConnectionAge = st.idleTimeout, st.maxConnectionAge
	base.MaxConnectionAgeJitter, base.MaxMessageBytes = st.maxConnectionAgeJitter, st.maxMessageBytes
	base.ClientMessagesPerSecond, base.ClientMessageBurst = int(st.clientMessagesPerSecond), int(st.clientMessageBurst)
	base.ClientBytesPerSecond, base.RateLimitGrace = st.clientBytesPerSecond, st.rateLimitGrace
	return &base
}

// flowRecord is one direction of a connection at rest: the bytes it holds
// (framed and waiting for its destination, read and not framed yet, the
// proxy's own frames) and where its stream stands. Nothing is in flight:
// the old process stopped reading and wrote out what it could first.
type flowRecord struct {
	out, input, own []byte
	stalledAt       int64
	flags           uint16 // flow* bits
}

// Bits of flowRecord.flags: the flow's booleans that are state, not the
// memory of an edge (readable, blocked) or of an operation (busy).
const (
	flowOutBoundary = 1 << iota
	flowOutClose
	flowOwnClose
	flowMidFrame
	flowClosed
	flowDstDead
	flowSrcDone
	flowSrcShut
	flowBits = 1<<iota - 1
)

// endRecord is how an ending connection ends, as far as it got: the close
// handshake it began, and what is logged when it is over.
type endRecord struct {
	cause, rebalance            string
	clientCode, backendCode     uint16
	clientReason, backendReason string
	peerClose, linger           bool
	code                        uint16
	err                         string
}

// Limits on what a record may hold. A record past them was not written by
// a proxy, and the whole hand-over is refused.
const (
	maxRecordString = 1024
	// maxFlowBytes bounds each of a flow's byte runs: a read buffer's
	// worth, plus a control frame gathered by the framer.
	maxFlowBytes = evloop.BurstSize + 256
	// maxOwnBytes bounds the proxy's own frames waiting for a peer: pings
	// and a close, each at most 131 bytes.
	maxOwnBytes = 64 << 10
)

// Flags of a record.
const (
	recPinned = 1 << iota
	recEnding
	recLimits
	recBits = 1<<iota - 1
)

// appendRecord writes r.
func appendRecord(w *wireWriter, r *connRecord) {
	w.u64(r.id)
	w.str(r.reqID)
	w.str(r.place.backend)
	addr, _ := r.place.client.MarshalBinary()
	w.blob8(addr)
	w.u64(r.place.key)
	var flags uint8
	if r.place.pinned {
		flags |= recPinned
	}
	if r.end != nil {
		flags |= recEnding
	}
	if r.limits != nil {
		flags |= recLimits
	}
	w.u8(flags)
	w.i64(r.started)
	for _, f := range [2]*wsframe.Framer{&r.up, &r.down} {
		snap, _ := f.MarshalBinary()
		w.blob8(snap)
	}
	for _, v := range [5]int64{r.bytesUp, r.bytesDown, r.lastPong, r.lastRead, r.lastData} {
		w.i64(v)
	}
	w.u64(r.msgTotal[0])
	w.u64(r.msgTotal[1])
	w.u32(r.msgRate[0])
	w.u32(r.msgRate[1])
	w.i64(r.msgWindow)
	w.u32(r.msgInWin[0])
	w.u32(r.msgInWin[1])

	st := &r.settings
	for _, d := range [5]time.Duration{st.pingInterval, st.pongTimeout, st.writeTimeout, st.idleTimeout, st.maxConnectionAge} {
		w.i64(int64(d))
	}
	w.f64(st.maxConnectionAgeJitter)
	for _, v := range [4]int64{st.maxMessageBytes, st.clientMessagesPerSecond, st.clientMessageBurst, st.clientBytesPerSecond} {
		w.i64(v)
	}
	w.i64(int64(st.rateLimitGrace))

	for i := range r.flows {
		f := &r.flows[i]
		w.u16(f.flags)
		w.i64(f.stalledAt)
		w.blob32(f.out)
		w.blob32(f.input)
		w.blob32(f.own)
	}
	w.i64(r.nextPing)
	w.i64(r.pingAt)
	w.u32(r.pingSeq)
	if e := r.end; e != nil {
		w.str(e.cause)
		w.str(e.rebalance)
		w.u16(e.clientCode)
		w.str(e.clientReason)
		w.u16(e.backendCode)
		w.str(e.backendReason)
		w.boolean(e.peerClose)
		w.boolean(e.linger)
		w.u16(e.code)
		w.str(e.err)
		w.i64(r.lingerUntil)
	}
	if l := r.limits; l != nil {
		for _, b := range [2]*bucket{&l.msgs, &l.bytes} {
			w.f64(b.tokens)
			w.i64(b.last)
			w.boolean(b.full)
		}
		w.i64(l.overSince)
		w.i64(l.until)
	}
}

// readRecord reads a record appendRecord wrote, or fails r: a record that
// is cut short or too long, that holds values no connection has (a
// negative size, a framer state no stream leads to, more bytes than a
// read buffer) is refused.
func readRecord(r *wireReader) *connRecord {
	c := &connRecord{}
	c.id = r.u64()
	c.reqID = r.str(maxRecordString, "request ID")
	c.place.backend = r.str(maxRecordString, "backend")
	if addr := r.blob8(); r.err == nil {
		if err := c.place.client.UnmarshalBinary(addr); err != nil || !c.place.client.IsValid() {
			r.fail("client address %x", addr)
		}
	}
	c.place.key = r.u64()
	flags := r.u8()
	if flags&^recBits != 0 {
		r.fail("record flags %#x", flags)
	}
	c.place.pinned = flags&recPinned != 0
	c.started = r.nonNegative("start")
	for _, f := range [2]*wsframe.Framer{&c.up, &c.down} {
		if snap := r.blob8(); r.err == nil {
			if err := f.UnmarshalBinary(snap); err != nil {
				r.fail("%v", err)
			}
		}
	}
	c.bytesUp, c.bytesDown = r.nonNegative("byte count"), r.nonNegative("byte count")
	c.lastPong, c.lastRead, c.lastData = r.nonNegative("time"), r.nonNegative("time"), r.nonNegative("time")
	c.msgTotal = [2]uint64{r.u64(), r.u64()}
	c.msgRate = [2]uint32{r.u32(), r.u32()}
	c.msgWindow = r.nonNegative("time")
	c.msgInWin = [2]uint32{r.u32(), r.u32()}

	st := &c.settings
	for _, d := range [5]*time.Duration{&st.pingInterval, &st.pongTimeout, &st.writeTimeout, &st.idleTimeout, &st.maxConnectionAge} {
		*d = time.Duration(r.nonNegative("duration"))
	}
	if st.maxConnectionAgeJitter = r.f64(); st.maxConnectionAgeJitter < 0 || st.maxConnectionAgeJitter >= 1 {
		r.fail("age jitter %v", st.maxConnectionAgeJitter)
	}
	for _, v := range [4]*int64{&st.maxMessageBytes, &st.clientMessagesPerSecond, &st.clientMessageBurst, &st.clientBytesPerSecond} {
		*v = r.nonNegative("limit")
	}
	if st.clientMessagesPerSecond > math.MaxInt32 || st.clientMessageBurst > math.MaxInt32 {
		r.fail("message rate")
	}
	st.rateLimitGrace = time.Duration(r.nonNegative("duration"))

	for i := range c.flows {
		f := &c.flows[i]
		if f.flags = r.u16(); f.flags&^flowBits != 0 {
			r.fail("flow flags %#x", f.flags)
		}
		f.stalledAt = r.nonNegative("time")
		f.out = r.blob32(maxFlowBytes, "output")
		f.input = r.blob32(evloop.BurstSize, "input")
		f.own = r.blob32(maxOwnBytes, "own frames")
	}
	c.nextPing, c.pingAt = r.nonNegative("time"), r.nonNegative("time")
	c.pingSeq = r.u32()
	if flags&recEnding != 0 {
		e := &endRecord{}
		e.cause = r.str(maxRecordString, "cause")
		e.rebalance = r.str(maxRecordString, "rebalance")
		e.clientCode = r.u16()
		e.clientReason = r.str(maxRecordString, "reason")
		e.backendCode = r.u16()
		e.backendReason = r.str(maxRecordString, "reason")
		e.peerClose, e.linger = r.boolean(), r.boolean()
		e.code = r.u16()
		e.err = r.str(maxRecordString, "error")
		c.lingerUntil = r.nonNegative("time")
		c.end = e
	}
	if flags&recLimits != 0 {
		l := &clientLimits{}
		for _, b := range [2]*bucket{&l.msgs, &l.bytes} {
			b.tokens, b.last, b.full = r.f64(), r.nonNegative("time"), r.boolean()
		}
		l.overSince, l.until = r.nonNegative("time"), r.nonNegative("time")
		c.limits = l
	}
	if r.err != nil {
		return nil
	}
	return c
}

// ending turns the record of a connection's end back into one.
func (e *endRecord) ending() *ending {
	out := &ending{cause: e.cause, rebalance: e.rebalance,
		clientCode: ws.StatusCode(e.clientCode), clientReason: e.clientReason,
		backendCode: ws.StatusCode(e.backendCode), backendReason: e.backendReason,
		peerClose: e.peerClose, linger: e.linger, code: ws.StatusCode(e.code)}
	if e.err != "" {
		out.err = errorString(e.err)
	}
	return out
}

// recordOfEnding is the record of how a connection ends.
func recordOfEnding(e *ending) *endRecord {
	out := &endRecord{cause: e.cause, rebalance: e.rebalance,
		clientCode: uint16(e.clientCode), clientReason: e.clientReason,
		backendCode: uint16(e.backendCode), backendReason: e.backendReason,
		peerClose: e.peerClose, linger: e.linger, code: uint16(e.code)}
	if e.err != nil {
		out.err = e.err.Error()
	}
	return out
}

// errorString is an error that crossed from another process: its text is
// all that is left of it.
type errorString string

func (e errorString) Error() string { return string(e) }

// flags of a flow's state, as a record keeps them.
func flowFlags(bits ...bool) uint16 {
	var f uint16
	for i, b := range bits {
		if b {
			f |= 1 << i
		}
	}
	return f
}

// has reports whether bit is set in f's flags.
func (f *flowRecord) has(bit uint16) bool { return f.flags&bit != 0 }
