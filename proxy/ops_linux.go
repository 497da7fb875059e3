//go:build linux

package proxy

import (
	"errors"

	"github.com/wsedge/wsedge/proxy/evloop"
	"github.com/wsedge/wsedge/proxy/looptls"
)

// ioOp is a relay read or write a flow asked its loop for. The loop does
// the ones asked for during a turn together, in one io_uring system call
// where it can (evloop.Do), and hands each flow its result.
type ioOp = evloop.IO[relayOp]

// relayOp is what a relay read or write is for.
type relayOp struct {
	c    *econn
	d    *flow
	kind opKind
	buf  *[]byte // a read's borrowed buffer
	// held: a write through TLS left records its socket did not take
	held bool
	// sealedBy: the TLS peer whose records, sealed from plain (what the
	// write was asked to carry), the batch writes; nil for other writes.
	sealedBy *looptls.Side
	plain    []byte
}

type opKind uint8

const (
	opRead     opKind = iota // from d's source into p
	opWriteOut               // d's relayed bytes to its destination
	opWriteOwn               // the proxy's own frames to d's destination
)

// errSkipped is the result of an operation not done: its connection ended,
// or its write was dropped, while it waited.
var errSkipped = errors.New("operation skipped")

// ioRoundsPerTurn bounds how many times one turn does the operations that
// the results of the last ones asked for. Relaying a burst takes a read
// round and a write round, so a connection with a lot to send gets about
// four buffers a turn before the loop looks for other events.
const ioRoundsPerTurn = 8

// queue asks for a read into p (buf is its borrowed buffer) or a write of
// p, as kind says, in the loop's next batch.
func (l *loop) queue(c *econn, d *flow, kind opKind, p []byte, buf *[]byte) {
	d.busy = true
	src, dst := c.ends(d)
	fd := dst
	if kind == opRead {
		fd = src
	}
	l.ops = append(l.ops, ioOp{FD: fd, Write: kind != opRead, P: p, Of: relayOp{c: c, d: d, kind: kind, buf: buf}})
}

// flushIO does the operations asked for and hands out their results,
// which may ask for more, for up to ioRoundsPerTurn rounds; the rest waits
// for the next turn, which then does not block.
func (l *loop) flushIO(now int64) {
	for round := 0; round < ioRoundsPerTurn && len(l.ops) > 0; round++ {
		ops := l.ops
		l.ops = l.spare[:0]
		l.perform(ops)
		for i := range ops {
			op := &ops[i]
			c := op.Of.c
			l.Guard(c, now, func() { c.completed(op, now) })
		}
		clear(ops)
		l.spare = ops[:0]
	}
}

// skip reports whether op is no longer to be done.
func (op *relayOp) skip() bool {
	if op.c.gone {
		return true
	}
	return op.kind != opRead && (op.d.closed || op.d.dstDead)
}

// perform does ops and sets their results: those no longer to be done are
// skipped; the loop does the others in a batch, where a write to a peer
// that speaks TLS is encrypted first and its records are what the batch
// writes. Reads from such a peer go through crypto/tls one call at a
// time.
func (l *loop) perform(ops []ioOp) {
	for i := range ops {
		op := &ops[i]
		switch side := op.Of.c.tlsOf(op.Of.d, op.Of.kind); {
		case op.Of.skip():
			op.Done, op.Err = true, errSkipped
		case side != nil && op.Write:
			seal(op, side)
		case side != nil:
			op.N, op.Err = side.Read(op.P)
			op.Done = true
		}
	}
	evloop.Do(l.Loop, ops)
	for i := range ops {
		if op := &ops[i]; op.Of.sealedBy != nil {
			side := op.Of.sealedBy
			op.Err = side.Sent(op.N, op.Err)
			op.P, op.N, op.Of.held = op.Of.plain, len(op.Of.plain), side.Held()
			if op.Err != nil {
				op.N = 0
			}
		}
	}
}

// seal encrypts a write to a TLS peer and makes op the write of its
// records, which the batch does; all of it is done at once when there is
// nothing to write.
func seal(op *ioOp, side *looptls.Side) {
	if err := side.Seal(op.P); err != nil {
		op.N, op.Err, op.Done = 0, err, true
		return
	}
	records := side.Sealed()
	if len(records) == 0 {
		op.N, op.Done = len(op.P), true
		return
	}
	op.Of.sealedBy, op.Of.plain = side, op.P
	op.P = records
}
