package wsframe

import (
	"fmt"
	"testing"

	"github.com/gobwas/ws"
)

// readSize is what a relay reads at once: a loop's read buffer.
const readSize = 32 << 10

// benchStream is a 32 KiB read's worth of client frames of size bytes each.
func benchStream(b *testing.B, size int) []byte {
	var stream []byte
	for len(stream) < readSize-size-14 {
		stream = append(stream, frameBytes(b, true, 0, ws.OpBinary, make([]byte, size), true)...)
	}
	return stream
}

// BenchmarkFramer measures the relay's per-read framing work: walking the
// headers of a buffer of masked client frames that pass through as they are.
func BenchmarkFramer(b *testing.B) {
	for _, size := range []int{64, 4096} {
		b.Run(byteSize(size), func(b *testing.B) {
			stream := benchStream(b, size)
			f := NewFramer(true, false, 1<<20)
			b.SetBytes(int64(len(stream)))
			b.ReportAllocs()
			for b.Loop() {
				for in := stream; len(in) > 0; {
					n, _, ev := f.Step(in)
					if ev == Invalid {
						b.Fatal(f.Violation().Reason())
					}
					in = in[n:]
				}
			}
		})
	}
}

// BenchmarkRemask is the alternative the relay does not take: unmasking
// client frames and masking them again with a key of the proxy's own costs
// a pass over every payload byte, where passing them through costs none.
func BenchmarkRemask(b *testing.B) {
	for _, size := range []int{64, 4096} {
		b.Run(byteSize(size), func(b *testing.B) {
			stream := benchStream(b, size)
			f := NewFramer(true, false, 1<<20)
			mask := ws.NewMask()
			b.SetBytes(int64(len(stream)))
			b.ReportAllocs()
			for b.Loop() {
				for in := stream; len(in) > 0; {
					n, out, _ := f.Step(in)
					for len(out) > 0 {
						h, hlen, ok := parseHeader(out)
						if !ok {
							break
						}
						payload := out[hlen : hlen+int(h.Length)]
						var m [4]byte
						copy(m[:], out[hlen-4:hlen])
						ws.Cipher(payload, m, 0)
						ws.Cipher(payload, mask, 0)
						copy(out[hlen-4:hlen], mask[:])
						out = out[hlen+int(h.Length):]
					}
					in = in[n:]
				}
			}
		})
	}
}

func byteSize(n int) string { return fmt.Sprintf("%dB", n) }
