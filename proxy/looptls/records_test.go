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

// recordEnds reads a whole stream's record framing at once, as a reader
// with all of it in hand would: the offsets where its records end.
func recordEnds(stream []byte) map[int]bool {
	ends := map[int]bool{}
	for pos := 0; pos+recordHeaderLen <= len(stream); {
		pos += recordHeaderLen + int(binary.BigEndian.Uint16(stream[pos+3:pos+recordHeaderLen]))
		ends[pos] = true
	}
	return ends
}

// The cursor reads lengths a client chose. Whatever the bytes, and however
// they are cut into reads and into the reader's room, it never stalls
// (every step gives at least a byte), never gives a byte twice or drops
// one, and never lets a step run across a record end that a reading of
// the whole stream at once finds.
func FuzzRecordCursor(f *testing.F) {
	stream, _ := records(0, 1, 100, 16384, 3)
	f.Add(stream, []byte{7, 200, 1, 9})
	f.Add([]byte{23, 3, 3, 0xff, 0xff, 1, 2}, []byte{1, 1, 1})
	f.Add([]byte{23, 3}, []byte{})
	f.Fuzz(func(t *testing.T, stream, cuts []byte) {
		ends := recordEnds(stream)
		var r recordCursor
		var given []byte
		pos, c := 0, 0
		next := func() int { // the next cut's size, 1..256
			if len(cuts) == 0 {
				return 256
			}
			c++
			return int(cuts[c%len(cuts)]) + 1
		}
		for pos < len(stream) {
			chunk := stream[pos:min(len(stream), pos+next())] // one read from the socket
			for len(chunk) > 0 {
				give := chunk[:r.toEnd(chunk)]
				give = give[:min(len(give), next())] // the reader's room
				if len(give) == 0 {
					t.Fatalf("no progress at %d of %d", pos, len(stream))
				}
				for e := pos + 1; e < pos+len(give); e++ {
					if ends[e] {
						t.Fatalf("gave %d..%d, across the record end %d", pos, pos+len(give), e)
					}
				}
				r.advance(give)
				given = append(given, give...)
				pos += len(give)
				chunk = chunk[len(give):]
			}
		}
		if !bytes.Equal(given, stream) {
			t.Fatal("the bytes given are not the stream")
		}
	})
}
