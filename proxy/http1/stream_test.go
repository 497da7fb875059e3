package http1

import (
	"slices"
	"testing"
)

func TestStreamFraming(t *testing.T) {
	const (
		chunked = "POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-Sum: 1\r\n\r\n"
		length  = "POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
		plain   = "GET /c HTTP/1.1\r\nHost: a\r\n\r\n"
	)
	in := chunked + length + plain
	want := []int{len(chunked), len(chunked + length), len(in)}
	ends, err := streamBoundaries([]byte(in))
	if err != nil || !slices.Equal(ends, want) {
		t.Fatalf("ends = %v, %v; want %v", ends, err, want)
	}
	if got := goBoundaries([]byte(in)); !slices.Equal(got, want) {
		t.Fatalf("Go's reader ends them at %v, this test at %v", got, want)
	}
	// Byte by byte, as a slow client sends them, the same.
	var s Stream
	var pending []byte
	var passed []byte
	for i := range len(in) {
		pending = append(pending, in[i])
		for {
			n, err := s.Next(pending)
			if err != nil {
				t.Fatalf("at byte %d: %v", i, err)
			}
			if n == 0 {
				break
			}
			passed = append(passed, pending[:n]...)
			pending = pending[n:]
		}
	}
	if string(passed) != in || s.Requests != 3 {
		t.Errorf("passed %d of %d bytes in %d requests", len(passed), len(in), s.Requests)
	}
}

func TestStreamRefusesSmuggling(t *testing.T) {
	tests := []struct {
		name string
		give string
		want error
		ends []int // messages passed before the refusal
	}{
		{
			// A front end that goes by Content-Length takes the second
			// request for body bytes; Go's server would read it as a
			// request of its own.
			name: "Content-Length and chunked",
			give: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 36\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
			want: ErrLengthAndChunked,
		},
		{
			name: "chunked in HTTP/1.0",
			give: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
			want: ErrEncodingHTTP10,
		},
		{
			name: "bare LF after a chunk size",
			give: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
			want: ErrChunk,
		},
		{
			name: "data longer than its chunk",
			give: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n",
			want: ErrChunk,
		},
		{
			name: "control byte in a chunk extension",
			give: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;a=\x00\r\nabc\r\n0\r\n\r\n",
			want: ErrChunkExtension,
		},
		{
			name: "bare LF in a trailer",
			give: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\nY: 2\r\n\r\n",
			want: ErrBareLF,
		},
		{
			name: "bad second request",
			give: "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nX-A: b\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
			want: ErrBareLF,
			ends: []int{27},
		},
		{
			name: "head too large",
			give: "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + string(make([]byte, 17<<10)),
			want: ErrTooLarge,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ends, err := streamBoundaries([]byte(tt.give))
			if err != tt.want || !slices.Equal(ends, tt.ends) {
				t.Errorf("got %v after %v, want %v after %v", err, ends, tt.want, tt.ends)
			}
		})
	}
}

func TestStreamHoldsAfterUpgrade(t *testing.T) {
	head := "GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
	frames := "\x81\x85\x00\x00\x00\x00hello"
	var s Stream
	n, err := s.Next([]byte(head + frames))
	if err != nil || n != len(head) {
		t.Fatalf("Next = %d, %v; want the head, %d bytes", n, err, len(head))
	}
	if n, err := s.Next([]byte(frames)); n != 0 || err != nil || !s.Held() {
		t.Fatalf("after an upgrade request: %d, %v, held %v; want nothing passed until Tunnel", n, err, s.Held())
	}
	s.Tunnel()
	if n, err := s.Next([]byte(frames)); n != len(frames) || err != nil {
		t.Fatalf("tunnel passed %d, %v", n, err)
	}
}
