//go:build linux

package proxy

import (
	"errors"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// ioOp is a relay read or write a flow asked its loop for. The loop does
// the ones asked for during a turn together, in one io_uring system call
// where it can, and hands each flow its result.
type ioOp struct {
	c    *econn
	d    *flow
	kind opKind
	p    []byte  // read into, or written
	buf  *[]byte // a read's borrowed buffer
	n    int
	err  error
	done bool // n and err are its result
	// held: a write through TLS left records its socket did not take
	held bool
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

// queue asks for op in the loop's next batch.
func (l *loop) queue(op ioOp) {
	op.d.busy = true
	l.ops = append(l.ops, op)
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
			l.guard(op.c, now, func() { op.c.completed(op, now) })
		}
		clear(ops)
		l.spare = ops[:0]
	}
}

// skip reports whether op is no longer to be done.
func (op *ioOp) skip() bool {
	if op.c.gone {
		return true
	}
	return op.kind != opRead && (op.d.closed || op.d.dstDead)
}

// fd is the socket op reads or writes.
func (op *ioOp) fd() int {
	src, dst := op.c.ends(op.d)
	if op.kind == opRead {
		return src
	}
	return dst
}

// perform does ops and sets their results. Where there is only one to do,
// a plain system call is cheaper than the ring's.
func (l *loop) perform(ops []ioOp) {
	live := 0
	for i := range ops {
		op := &ops[i]
		switch side := op.c.tlsOf(op.d, op.kind); {
		case op.skip():
			op.done, op.err = true, errSkipped
		case side != nil:
			// Records go through crypto/tls, one call at a time.
			if op.kind == opRead {
				op.n, op.err = side.read(op.p)
			} else {
				op.n, op.err = side.write(op.p)
				op.held = side.tr.held()
			}
			op.done = true
		default:
			live++
		}
	}
	for start := 0; l.ring != nil && live > 1 && start < len(ops); {
		start = l.performRing(ops, start)
	}
	for i := range ops {
		op := &ops[i]
		if op.done && op.err != unix.EINTR {
			continue
		}
		if op.kind == opRead {
			op.n, op.err = readFD(op.fd(), op.p)
		} else {
			op.n, op.err = writeFD(op.fd(), op.p)
		}
		op.done = true
	}
}

// performRing hands the ring as many of ops from start on as it holds, in
// one system call, and returns where the next call starts. A ring that
// fails is closed and set aside: what it did not take is left undone.
func (l *loop) performRing(ops []ioOp, start int) int {
	r := l.ring
	end, pushed := start, 0
	for ; end < len(ops) && r.room() > 0; end++ {
		op := &ops[end]
		if op.done {
			continue
		}
		if op.kind == opRead {
			r.push(ioOpRecv, op.fd(), op.p, ioRecvFlags, uint64(end))
		} else {
			r.push(ioOpSend, op.fd(), op.p, ioSendFlags, uint64(end))
		}
		pushed++
	}
	took, err := r.submit(pushed)
	l.batches++
	if err == nil && took != pushed {
		err = errRingSubmission
	}
	got := l.reapInto(ops)
	if got < took {
		// Cannot happen with non-blocking operations, but a buffer must not
		// be reused while the kernel may still write into it.
		if werr := r.wait(took - got); werr == nil {
			got += l.reapInto(ops)
		}
	}
	if err == nil && got == took {
		return end
	}
	if err == nil {
		err = errRingNotUsable
	}
	l.srv.log.Error("io_uring failed; relaying with a system call per read and write",
		zap.Error(err), zap.Int("submitted", took), zap.Int("completed", got))
	// The first took of the pushed ops went in: one of those without a
	// result may yet be done by the kernel, so it is failed rather than
	// done twice. The others are left for plain system calls.
	for i, k := start, 0; i < end; i++ {
		op := &ops[i]
		if op.err == errSkipped {
			continue // never pushed
		}
		if k < took && !op.done {
			op.done, op.err = true, errRingNotUsable
		}
		k++
	}
	r.close()
	l.ring = nil
	return len(ops)
}

// reapInto takes the ring's completions into their ops and counts them.
func (l *loop) reapInto(ops []ioOp) int {
	got := 0
	for {
		c, ok := l.ring.reap()
		if !ok {
			return got
		}
		got++
		op := &ops[c.userData]
		op.done = true
		if c.res >= 0 {
			op.n, op.err = int(c.res), nil
		} else {
			op.n, op.err = 0, unix.Errno(-c.res)
		}
	}
}
