//go:build linux

package looptls

import (
	"crypto/tls"
	"errors"
	"io"
	"net"

	"golang.org/x/sys/unix"
)

// Side is one end of a loop-driven connection that speaks TLS, once its
// handshake is done (Pool.Server, Pool.Client): the loop reads and writes
// its records through crypto/tls, never waiting for the socket. It holds
// no buffer while idle beyond what crypto/tls's own state keeps. Its
// methods run on the socket's loop; it is not safe for concurrent use.
type Side struct {
	conn *tls.Conn
	tr   *transport
}

// Read decrypts what the socket has into p: as evloop.ReadFD reports it,
// (0, nil) at the end of the stream and unix.EAGAIN when nothing more is
// there. A read returns one record at most, and more may wait decrypted
// or in the transport's buffer, where no edge announces them: the caller
// reads until EAGAIN whatever the size.
func (s *Side) Read(p []byte) (int, error) {
	n, err := s.conn.Read(p)
	if s.tr.held() {
		s.tr.flush() // an alert or a key update answered while reading
	}
	switch {
	case n > 0:
		return n, nil // an error with it comes again on the next read
	case err == errWouldBlock:
		return 0, unix.EAGAIN
	case errors.Is(err, io.EOF):
		return 0, nil
	}
	return 0, err
}

// Write encrypts p and sends it: all of it, or what the socket did not
// take waits in the transport (Held), and the caller waits for EPOLLOUT
// and Flush before writing more.
func (s *Side) Write(p []byte) (int, error) {
	s.tr.corked = true
	n, err := s.conn.Write(p)
	if err != nil {
		return n, err
	}
	if _, err := s.tr.flush(); err != nil {
		return n, err
	}
	return n, nil
}

// Held reports whether encrypted bytes wait for the socket to take them.
func (s *Side) Held() bool { return s.tr.held() }

// Flush writes what is held. It reports whether nothing is left; when
// something is, the socket's next EPOLLOUT calls for another Flush.
func (s *Side) Flush() (bool, error) { return s.tr.flush() }

// CloseWrite sends close_notify, without waiting for the socket, as the
// connection's last write before the loop closes it: what the socket does
// not take now is dropped, and its buffer goes back to the pool.
func (s *Side) CloseWrite() {
	s.tr.corked = true
	s.conn.CloseWrite()
	s.tr.flush()
	s.tr.drop()
}

// HandOff gives the connection to a reader that blocks, such as an HTTP
// server: from now on the records go through nc, a net.Conn of Go's on the
// same socket, and what the loop held goes out first. It returns the TLS
// connection to read and write; the loop is done with the Side.
func (s *Side) HandOff(nc net.Conn) net.Conn {
	s.tr.nc = nc
	return s.conn
}
