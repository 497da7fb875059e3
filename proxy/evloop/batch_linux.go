//go:build linux

package evloop

import (
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// IO is a read or write of a non-blocking socket that a loop's owner
// collects during a turn and has the loop do, with the others of the
// turn, by Do. Of is the owner's own record of what the operation is for,
// handed back with the result; a concrete type, so that a batch costs no
// allocation and no interface call.
type IO[T any] struct {
	FD    int
	Write bool   // else a read
	P     []byte // read into, or written
	N     int
	Err   error
	Done  bool // N and Err are its result
	Of    T
	// inRing: pushed to the ring in the current submission
	inRing bool
}

// Do does every operation of ops that is not Done yet and sets its
// result, as ReadFD or WriteFD report them. Where the loop has a ring and
// more than one is to be done, the ring takes them in one system call per
// ioRingBatch; otherwise each is a system call of its own, which for one
// operation is cheaper. A ring that fails is set aside for good: what it
// did not do is done with plain system calls.
func Do[T any](l *Loop, ops []IO[T]) {
	live := 0
	for i := range ops {
		if !ops[i].Done {
			live++
		}
	}
	for start := 0; l.ring != nil && live > 1 && start < len(ops); {
		start = doRing(l, ops, start)
	}
	for i := range ops {
		op := &ops[i]
		if op.Done && op.Err != unix.EINTR {
			continue
		}
		if op.Write {
			op.N, op.Err = WriteFD(op.FD, op.P)
		} else {
			op.N, op.Err = ReadFD(op.FD, op.P)
		}
		op.Done = true
	}
}

// doRing hands the ring as many of ops from start on as it holds, in one
// system call, and returns where the next call starts. A ring that fails
// is closed and set aside: what it did not take is left undone.
func doRing[T any](l *Loop, ops []IO[T], start int) int {
	r := l.ring
	end, pushed := start, 0
	for ; end < len(ops) && r.room() > 0; end++ {
		op := &ops[end]
		op.inRing = !op.Done
		if op.Done {
			continue
		}
		if op.Write {
			r.push(ioOpSend, op.FD, op.P, ioSendFlags, uint64(end))
		} else {
			r.push(ioOpRecv, op.FD, op.P, ioRecvFlags, uint64(end))
		}
		pushed++
	}
	took, err := r.submit(pushed)
	l.ringCalls++
	if err == nil && took != pushed {
		err = errRingSubmission
	}
	got := reapInto(r, ops)
	if got < took {
		// Cannot happen with non-blocking operations, but a buffer must not
		// be reused while the kernel may still write into it.
		if werr := r.wait(took - got); werr == nil {
			got += reapInto(r, ops)
		}
	}
	if err == nil && got == took {
		return end
	}
	if err == nil {
		err = errRingNotUsable
	}
	l.log.Error("io_uring failed; relaying with a system call per read and write",
		zap.Error(err), zap.Int("submitted", took), zap.Int("completed", got))
	// The first took of the pushed ops went in: one of those without a
	// result may yet be done by the kernel, so it is failed rather than
	// done twice. The others are left for plain system calls.
	for i, k := start, 0; i < end; i++ {
		op := &ops[i]
		if !op.inRing {
			continue
		}
		if k < took && !op.Done {
			op.Done, op.Err = true, errRingNotUsable
		}
		k++
	}
	r.close()
	l.ring = nil
	return len(ops)
}

// reapInto takes the ring's completions into their ops and counts them.
func reapInto[T any](r *ioRing, ops []IO[T]) int {
	got := 0
	for {
		c, ok := r.reap()
		if !ok {
			return got
		}
		got++
		op := &ops[c.userData]
		op.Done = true
		if c.res >= 0 {
			op.N, op.Err = int(c.res), nil
		} else {
			op.N, op.Err = 0, unix.Errno(-c.res)
		}
	}
}
