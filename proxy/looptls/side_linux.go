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
// reads again while the read filled p or Waiting says so.
func (s *Side) Read(p []byte) (int, error) {
	// What an earlier read found of the socket is stale: an edge may have
	// come since, and been taken, for bytes only a read will see.
	s.tr.drained = false
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

// Waiting reports whether, after the last Read, records read from the
// socket wait to be decrypted or the socket may hold more: false only
// when that Read found the socket drained and decrypted all it brought.
// A read that filled p may have left more of its record decrypted,
// whatever Waiting says.
func (s *Side) Waiting() bool { return s.tr.waiting() }

// Seal encrypts p for the socket without writing it: the records wait in
// Sealed until the caller writes them to the socket itself (in a batch
// of the loop's, say) and tells Sent how that went. An error is the
// connection's end.
func (s *Side) Seal(p []byte) error {
	s.tr.corked = true
	_, err := s.conn.Write(p)
	s.tr.corked = false
	if err == nil && s.tr.pending != nil {
		s.tr.batched = len(*s.tr.pending)
	}
	return err
}

// Sealed returns the encrypted bytes that wait for the socket.
func (s *Side) Sealed() []byte {
	if s.tr.pending == nil {
		return nil
	}
	return *s.tr.pending
}

// Sent takes the result of the caller's write of Sealed to the socket:
// n bytes taken, or the write's error (unix.EAGAIN: none taken for now).
// What was not taken is Held; an error other than EAGAIN is the
// connection's end, and Sent returns it. Between Seal and Sent, records
// that crypto/tls writes on its own (an alert or a key update answered
// while reading) queue behind the sealed ones; if the socket took all of
// those, Sent writes the newcomers too, so that Held means the socket is
// full and its next edge will say when it has room.
func (s *Side) Sent(n int, err error) error {
	t := s.tr
	tookAll := err == nil && n == t.batched
	t.batched = 0
	if _, err := t.sent(n, err); err != nil {
		return err
	}
	if tookAll && t.pending != nil {
		_, err := t.flush()
		return err
	}
	return nil
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
	s.tr.dropIn()
}

// HandOff gives the connection to a reader that blocks, such as an HTTP
// server: from now on the records go through nc, a net.Conn of Go's on the
// same socket, and what the loop held goes out first. It returns the TLS
// connection to read and write; the loop is done with the Side.
func (s *Side) HandOff(nc net.Conn) net.Conn {
	s.tr.nc = nc
	return s.conn
}
