package looptls

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// records makes a stream of TLS records with bodies of the given lengths.
func records(lens ...int) (stream []byte, ends []int) {
	for i, n := range lens {
		var h [recordHeaderLen]byte
		h[0] = 23
		h[1], h[2] = 3, 3
		binary.BigEndian.PutUint16(h[3:], uint16(n))
		stream = append(stream, h[:]...)
		stream = append(stream, bytes.Repeat([]byte{byte(i)}, n)...)
		ends = append(ends, len(stream))
	}
	return stream, ends
}

// However the stream is cut into reads, and however small the reader's
// buffer, what toEnd lets through never runs across a record's end, so
// crypto/tls is given one record at a time.
func TestRecordCursorStopsAtEveryRecordEnd(t *testing.T) {
	stream, ends := records(0, 1, 100, 16384, 3, 0, 17000, 5)
	isEnd := map[int]bool{}
	for _, e := range ends {
		isEnd[e] = true
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 200 {
		var r recordCursor
		pos := 0
		seen := map[int]bool{}
		for pos < len(stream) {
			chunk := stream[pos:min(len(stream), pos+1+rng.IntN(40000))] // one read from the socket
			for len(chunk) > 0 {
				give := chunk[:r.toEnd(chunk)]
				give = give[:min(len(give), 1+rng.IntN(20000))] // the reader's room
				if len(give) == 0 {
					t.Fatalf("trial %d: toEnd gave nothing at %d", trial, pos)
				}
				for _, e := range ends {
					if pos < e && e < pos+len(give) {
						t.Fatalf("trial %d: gave %d..%d, across the record end %d", trial, pos, pos+len(give), e)
					}
				}
				r.advance(give)
				pos += len(give)
				chunk = chunk[len(give):]
				seen[pos] = isEnd[pos]
			}
		}
		for _, e := range ends {
			if !seen[e] {
				t.Fatalf("trial %d: no stop at the record end %d", trial, e)
			}
		}
		if r.hdrN != 0 || r.left != 0 {
			t.Fatalf("trial %d: the cursor ends mid-record (%d header bytes, %d left)", trial, r.hdrN, r.left)
		}
	}
}
