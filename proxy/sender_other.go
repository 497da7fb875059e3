//go:build !linux

package proxy

import (
	"errors"
	"net"
	"sync"
	"time"

	"github.com/gobwas/ws"
)

// sender owns the writing side of one peer's connection. Relayed bytes and
// the proxy's own frames (pings, closes) share it; the proxy's frames wait
// for a frame boundary so they never land inside a relayed frame.
// It is safe for concurrent use.
type sender struct {
	conn    net.Conn
	timeout time.Duration // per write; a slower peer is a slow consumer
	masked  bool          // the proxy's own frames must be masked: this peer is the backend

	mu       sync.Mutex // held while writing; guards the fields below
	midFrame bool       // the relay has written part of a frame
	pending  []byte     // the proxy's own frames, waiting for a boundary
	closing  bool       // pending ends with a close frame
	closed   bool       // a close frame went out: nothing may follow it (RFC 6455 section 5.5.1)
}

func newSender(conn net.Conn, timeout time.Duration, masked bool) *sender {
	return &sender{conn: conn, timeout: timeout, masked: masked}
}

// relay writes bytes of the other peer's stream. atBoundary says whether
// they end on a frame boundary; isClose whether they end with a close frame.
// After a close frame the rest is dropped.
func (s *sender) relay(b []byte, atBoundary, isClose bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	if err := s.write(b); err != nil {
		return err
	}
	s.midFrame = !atBoundary
	if isClose {
		s.closed = true
		s.pending = s.pending[:0]
		return nil
	}
	if !s.midFrame && len(s.pending) > 0 {
		return s.flush()
	}
	return nil
}

// ping sends a ping of the proxy's own, now or at the next frame boundary.
func (s *sender) ping(payload []byte) error {
	return s.send(ws.NewPingFrame(payload), false)
}

// close sends a close frame of the proxy's own, now or at the next frame
// boundary, and nothing after it. timeout bounds this write, shorter than
// the relay's when the peer is already suspect.
func (s *sender) close(code ws.StatusCode, reason string, timeout time.Duration) error {
	return s.sendWithin(ws.NewCloseFrame(ws.NewCloseFrameBody(code, reason)), true, timeout)
}

func (s *sender) send(f ws.Frame, isClose bool) error {
	return s.sendWithin(f, isClose, s.timeout)
}

func (s *sender) sendWithin(f ws.Frame, isClose bool, timeout time.Duration) error {
	if s.masked {
		f = ws.MaskFrameInPlace(f)
	}
	b, err := ws.CompileFrame(f)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.closing {
		return nil
	}
	if isClose {
		// A queued ping is moot once the connection is closing.
		s.pending = s.pending[:0]
		s.closing = true
	}
	s.pending = append(s.pending, b...)
	if s.midFrame {
		return nil
	}
	return s.flushWithin(timeout)
}

func (s *sender) flush() error { return s.flushWithin(s.timeout) }

func (s *sender) flushWithin(timeout time.Duration) error {
	err := s.writeWithin(s.pending, timeout)
	s.pending = s.pending[:0]
	if s.closing {
		s.closed = true
	}
	return err
}

func (s *sender) write(b []byte) error { return s.writeWithin(b, s.timeout) }

func (s *sender) writeWithin(b []byte, timeout time.Duration) error {
	if err := s.conn.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	_, err := s.conn.Write(b)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errSlowPeer
	}
	return err
}
