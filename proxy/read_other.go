//go:build !linux

package proxy

import (
	"io"
	"net"
	"syscall"

	"github.com/wsedge/wsedge/proxy/evloop"
)

// burstReader reads from a connection into buffers borrowed only once data
// is there. For a socket it waits for readability through the runtime's
// poller without a buffer; other connections (TLS) read the usual way.
type burstReader struct {
	conn    net.Conn
	raw     syscall.RawConn // nil when conn is not a plain socket
	pool    *evloop.BufPool
	pending []byte // bytes read before the relay started (handshake leftovers)
}

func newBurstReader(conn net.Conn, pool *evloop.BufPool, pending []byte) *burstReader {
	r := &burstReader{conn: conn, pool: pool, pending: pending}
	if sc, ok := conn.(syscall.Conn); ok && rawReads {
		if raw, err := sc.SyscallConn(); err == nil {
			r.raw = raw
		}
	}
	return r
}

// read returns the next burst of bytes in a borrowed buffer, which the
// caller gives back with pool.put once done with p. io.EOF when the peer
// closed its side.
func (r *burstReader) read() (buf *[]byte, p []byte, err error) {
	buf = r.pool.Get()
	if len(r.pending) > 0 {
		n := copy(*buf, r.pending)
		r.pending = r.pending[n:]
		return buf, (*buf)[:n], nil
	}
	if r.raw == nil {
		n, err := r.conn.Read(*buf)
		return r.result(buf, n, err)
	}
	r.pool.Put(buf)
	buf = nil
	var n int
	var rerr error
	err = r.raw.Read(func(fd uintptr) bool {
		if buf == nil {
			buf = r.pool.Get()
		}
		for {
			n, rerr = sysRead(fd, *buf)
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			// Nothing yet: give the buffer back while we wait.
			r.pool.Put(buf)
			buf = nil
			return false
		}
		return true
	})
	if err == nil {
		err = rerr
	}
	return r.result(buf, n, err)
}

func (r *burstReader) result(buf *[]byte, n int, err error) (*[]byte, []byte, error) {
	if n > 0 {
		return buf, (*buf)[:n], nil
	}
	if buf != nil {
		r.pool.Put(buf)
	}
	if err == nil {
		err = io.EOF // a read of 0 bytes without an error: the peer closed
	}
	return nil, nil, err
}
