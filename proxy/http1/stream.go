package http1

import "bytes"

// maxChunkLine bounds a chunk-size line, extensions included, as Go's
// chunked reader does.
const maxChunkLine = 4096

// streamState is where a Stream stands in the client's byte stream.
type streamState uint8

const (
	inHead      streamState = iota // before or inside a request head
	inBody                         // inside a body with Content-Length
	inChunkSize                    // before or inside a chunk-size line
	inChunkData                    // inside a chunk's data
	inChunkEnd                     // at the CRLF after a chunk's data
	inTrailer                      // after the last chunk: trailer fields and the blank line
	held                           // after a WebSocket upgrade request: nothing more until Tunnel
	tunnel                         // the connection switched protocols: bytes are not HTTP any more
)

// Stream follows the requests a client sends on one connection, head by
// head and body by body, so that whatever reads the connection after it
// (Go's net/http server) sees only what was read here first by this
// package's rules. Its zero value expects a request head. It does no I/O
// and is not safe for concurrent use.
type Stream struct {
	// MaxHead is the longest head accepted, at most MaxHeadSize; zero
	// means 16 KiB.
	MaxHead int
	// Head is the last request head read, valid as long as the bytes
	// Next read it from.
	Head Head
	// Requests counts the heads accepted so far.
	Requests int

	state streamState
	left  uint64 // bytes left of the body or of the chunk's data
}

// Next looks at buf, the bytes the client sent that have not been passed
// on yet, and says how many of them may be now: a whole request head once
// it is read and found well formed, or body bytes as they come. It
// returns 0 and no error when it needs more bytes, or while the stream
// is held after a WebSocket upgrade request. Call it again with what is
// left after each step. An *Error ends the stream: nothing more may pass.
func (s *Stream) Next(buf []byte) (int, error) {
	if len(buf) == 0 {
		return 0, nil
	}
	switch s.state {
	case inHead:
		return s.head(buf)
	case inBody, inChunkData:
		n := int(min(s.left, uint64(len(buf))))
		if s.left -= uint64(n); s.left == 0 {
			if s.state == inBody {
				s.state = inHead
			} else {
				s.state = inChunkEnd
			}
		}
		return n, nil
	case inChunkSize:
		return s.chunkSize(buf)
	case inChunkEnd:
		if buf[0] != '\r' || len(buf) > 1 && buf[1] != '\n' {
			return 0, ErrChunk
		}
		if len(buf) < 2 {
			return 0, nil
		}
		s.state = inChunkSize
		return 2, nil
	case inTrailer:
		return s.trailer(buf)
	case tunnel:
		return len(buf), nil
	}
	return 0, nil // held
}

// Held reports whether the stream waits after a WebSocket upgrade request
// for Tunnel: the bytes that follow belong to the upgraded connection, or
// to nobody if the upgrade is refused and the connection closed.
func (s *Stream) Held() bool { return s.state == held }

// Tunnel lets everything through from now on: the connection switched
// protocols.
func (s *Stream) Tunnel() { s.state = tunnel }

// maxHead is the head size limit in force.
func (s *Stream) maxHead() int {
	if s.MaxHead <= 0 {
		return 16 << 10
	}
	return min(s.MaxHead, MaxHeadSize)
}

func (s *Stream) head(buf []byte) (int, error) {
	end, err := End(buf)
	switch {
	case err != nil:
		return 0, err
	case end == 0 && len(buf) > s.maxHead(), end > s.maxHead():
		return 0, ErrTooLarge
	case end == 0:
		return 0, nil
	}
	if err := s.Head.ReadRequest(buf[:end]); err != nil {
		return 0, err
	}
	s.Requests++
	switch {
	case s.Head.Chunked:
		s.state = inChunkSize
	case s.Head.ContentLength > 0:
		s.state, s.left = inBody, uint64(s.Head.ContentLength)
	case s.Head.IsWebSocketUpgrade():
		s.state = held
	}
	return end, nil
}

// chunkSize reads a chunk-size line (RFC 9112 section 7.1): hexadecimal
// digits, then extensions or trailing white space, then CRLF.
func (s *Stream) chunkSize(buf []byte) (int, error) {
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		if len(buf) >= maxChunkLine {
			return 0, ErrChunk
		}
		return 0, nil
	}
	if i == 0 || buf[i-1] != '\r' || i-1 >= maxChunkLine {
		return 0, ErrChunk
	}
	line := buf[:i-1]
	digits := 0
	var size uint64
	for ; digits < len(line) && hexValue(line[digits]) >= 0; digits++ {
		size = size<<4 | uint64(hexValue(line[digits]))
	}
	if digits == 0 || digits > 16 {
		return 0, ErrChunk
	}
	switch ext := line[digits:]; {
	case len(ext) > 0 && ext[0] == ';':
		for _, c := range ext {
			if !isValueByte(c) {
				return 0, ErrChunkExtension
			}
		}
	case len(bytes.Trim(ext, " \t")) > 0:
		return 0, ErrChunk
	}
	if size == 0 {
		s.state = inTrailer
	} else {
		s.state, s.left = inChunkData, size
	}
	return i + 1, nil
}

// trailer reads the fields after the last chunk and the blank line that
// ends the message, by the rules of header fields.
func (s *Stream) trailer(buf []byte) (int, error) {
	if buf[0] == '\r' && (len(buf) < 2 || buf[1] == '\n') {
		if len(buf) < 2 {
			return 0, nil
		}
		s.state = inHead
		return 2, nil
	}
	end, err := End(buf)
	switch {
	case err != nil:
		return 0, err
	case end == 0 && len(buf) > s.maxHead(), end > s.maxHead():
		return 0, ErrTooLarge
	case end == 0:
		return 0, nil
	}
	var h Head
	h.raw, h.fields = buf[:end], h.inline[:0]
	if err := h.readFields(buf[:end]); err != nil {
		return 0, err
	}
	s.state = inHead
	return end, nil
}

func hexValue(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
