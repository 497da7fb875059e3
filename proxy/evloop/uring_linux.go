//go:build linux

package evloop

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioRing is the small part of io_uring an event loop needs: it hands the
// kernel a whole turn's socket reads and writes in one system call instead
// of one call each. Every operation carries MSG_DONTWAIT, so the kernel
// does each at once, as a read or write on a non-blocking socket would,
// and its result is there when the call returns: nothing is left in flight
// between calls, and a buffer is never the kernel's for longer than one
// call. Not safe for concurrent use: one loop owns it.
type ioRing struct {
	fd      int
	sqTail  *uint32 // the kernel's copy of the submission tail
	sqMask  uint32
	sqArray []uint32
	sqes    []ioSQE
	cqHead  *uint32
	cqTail  *uint32
	cqMask  uint32
	cqes    []ioCQE
	tail    uint32 // our submission tail, published by submit
	mem     [][]byte
	probe   [1]byte // selfTest's buffer: on the heap with the ring
}

// ioSQE is a submission queue entry (struct io_uring_sqe).
type ioSQE struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	msgFlags    uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	spliceFdIn  int32
	addr3       uint64
	_           uint64
}

// ioCQE is a completion queue entry (struct io_uring_cqe).
type ioCQE struct {
	userData uint64
	res      int32
	flags    uint32
}

// ioParams is struct io_uring_params.
type ioParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	_                                                                      [3]uint32
	sqOff                                                                  struct {
		head, tail, ringMask, ringEntries, flags, dropped, array, _ uint32
		_                                                           uint64
	}
	cqOff struct {
		head, tail, ringMask, ringEntries, overflow, cqes, flags, _ uint32
		_                                                           uint64
	}
}

const (
	ioOpSend = 26 // IORING_OP_SEND
	ioOpRecv = 27 // IORING_OP_RECV

	ioSetupSubmitAll = 1 << 7 // IORING_SETUP_SUBMIT_ALL: an entry that fails does not stop the ones after it
	ioFeatSingleMmap = 1 << 0 // IORING_FEAT_SINGLE_MMAP
	ioEnterGetEvents = 1 << 0 // IORING_ENTER_GETEVENTS
	ioOffSQEs        = 0x10000000
	ioRingBatch      = 256 // entries per system call
	ioSendFlags      = unix.MSG_DONTWAIT | unix.MSG_NOSIGNAL
	ioRecvFlags      = unix.MSG_DONTWAIT
)

var (
	errRingNotUsable  = errors.New("io_uring does not complete non-blocking socket operations at once here")
	errRingSubmission = errors.New("io_uring took fewer operations than it was given")
)

// newIORing sets up a ring for batches of up to ioRingBatch operations and
// checks that the kernel completes a non-blocking receive at once: a
// kernel that would wait for data instead (and write into the buffer
// later) cannot be used, and the caller falls back to plain system calls.
func newIORing() (*ioRing, error) {
	p := ioParams{flags: ioSetupSubmitAll}
	fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, ioRingBatch, uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", e)
	}
	r := &ioRing{fd: int(fd)}
	if err := r.mmap(&p); err != nil {
		r.close()
		return nil, err
	}
	if err := r.selfTest(); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *ioRing) mmap(p *ioParams) error {
	if p.features&ioFeatSingleMmap == 0 {
		return errors.New("io_uring: kernel too old (no single mmap)")
	}
	size := max(p.sqOff.array+p.sqEntries*4, p.cqOff.cqes+p.cqEntries*uint32(unsafe.Sizeof(ioCQE{})))
	rings, err := unix.Mmap(r.fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("io_uring mmap: %w", err)
	}
	r.mem = append(r.mem, rings)
	sqes, err := unix.Mmap(r.fd, ioOffSQEs, int(p.sqEntries)*int(unsafe.Sizeof(ioSQE{})),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("io_uring mmap: %w", err)
	}
	r.mem = append(r.mem, sqes)
	base := unsafe.Pointer(&rings[0])
	r.sqTail = (*uint32)(unsafe.Add(base, p.sqOff.tail))
	r.sqMask = *(*uint32)(unsafe.Add(base, p.sqOff.ringMask))
	r.sqArray = unsafe.Slice((*uint32)(unsafe.Add(base, p.sqOff.array)), p.sqEntries)
	r.sqes = unsafe.Slice((*ioSQE)(unsafe.Pointer(&sqes[0])), p.sqEntries)
	r.cqHead = (*uint32)(unsafe.Add(base, p.cqOff.head))
	r.cqTail = (*uint32)(unsafe.Add(base, p.cqOff.tail))
	r.cqMask = *(*uint32)(unsafe.Add(base, p.cqOff.ringMask))
	r.cqes = unsafe.Slice((*ioCQE)(unsafe.Add(base, p.cqOff.cqes)), p.cqEntries)
	r.tail = *r.sqTail
	return nil
}

// selfTest receives, with MSG_DONTWAIT, from a socket that has nothing to
// read: the answer must be EAGAIN, at once.
func (r *ioRing) selfTest() error {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	r.push(ioOpRecv, fds[0], r.probe[:], ioRecvFlags, 0)
	if n, err := r.submit(1); err != nil || n != 1 {
		return errRingNotUsable
	}
	res, ok := r.reap()
	if !ok || res.res != -int32(unix.EAGAIN) {
		// If it is waiting for data, closing the sockets and the ring
		// ends it.
		return errRingNotUsable
	}
	return nil
}

// room is how many operations may be pushed before a submit.
func (r *ioRing) room() int { return len(r.sqes) - int(r.tail-*r.sqTail) }

// push queues one operation on fd with p as its buffer. p must stay alive
// and untouched until the submit that carries it returns.
func (r *ioRing) push(op uint8, fd int, p []byte, flags uint32, userData uint64) {
	i := r.tail & r.sqMask
	r.sqes[i] = ioSQE{opcode: op, fd: int32(fd), addr: uint64(uintptr(unsafe.Pointer(unsafe.SliceData(p)))),
		len: uint32(len(p)), msgFlags: flags, userData: userData}
	r.sqArray[i] = i
	r.tail++
}

// submit hands the kernel the n operations pushed since the last submit
// and returns how many it took. It never waits.
func (r *ioRing) submit(n int) (int, error) {
	atomic.StoreUint32(r.sqTail, r.tail)
	for {
		got, _, e := unix.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(n), 0, 0, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, fmt.Errorf("io_uring_enter: %w", e)
		}
		return int(got), nil
	}
}

// wait blocks until at least n completions are there.
func (r *ioRing) wait(n int) error {
	for {
		_, _, e := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), 0, uintptr(n), ioEnterGetEvents, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return fmt.Errorf("io_uring_enter: %w", e)
		}
		return nil
	}
}

// reap takes the next completion, if there is one.
func (r *ioRing) reap() (ioCQE, bool) {
	head := *r.cqHead
	if head == atomic.LoadUint32(r.cqTail) {
		return ioCQE{}, false
	}
	c := r.cqes[head&r.cqMask]
	atomic.StoreUint32(r.cqHead, head+1)
	return c, true
}

func (r *ioRing) close() {
	for _, m := range r.mem {
		unix.Munmap(m)
	}
	r.mem = nil
	unix.Close(r.fd)
}
