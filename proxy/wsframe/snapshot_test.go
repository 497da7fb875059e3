package wsframe

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/gobwas/ws"
)

// steps feeds in to f in chunks of chunk bytes and records every step's
// consumed count, event and output, so that two Framers can be compared
// step for step.
func steps(f *Framer, in []byte, chunk int) []byte {
	var log []byte
	for len(in) > 0 {
		c := min(chunk, len(in))
		part := in[:c]
		in = in[c:]
		for len(part) > 0 {
			n, out, ev := f.Step(part)
			part = part[n:]
			log = append(log, byte(ev), byte(n), byte(n>>8))
			log = append(log, out...)
			if ev == Invalid {
				return append(log, byte(f.Violation()))
			}
		}
	}
	return log
}

// randomStream is a valid stream of fragmented messages with control
// frames between fragments, masked or not.
func randomStream(tb testing.TB, rng *rand.Rand, masked bool) []byte {
	var stream []byte
	for range 1 + rng.IntN(6) {
		frags := 1 + rng.IntN(4)
		for i := range frags {
			op := ws.OpContinuation
			if i == 0 {
				op = ws.OpBinary
			}
			payload := make([]byte, rng.IntN(300))
			for j := range payload {
				payload[j] = byte(rng.Uint32())
			}
			stream = append(stream, frameBytes(tb, i == frags-1, 0, op, payload, masked)...)
			if rng.IntN(3) == 0 {
				stream = append(stream, frameBytes(tb, true, 0, ws.OpPing, []byte("ping-payload"), masked)...)
			}
		}
	}
	return stream
}

// TestFramerSnapshotResumesAnywhere cuts random streams at every offset,
// moves the Framer through MarshalBinary and UnmarshalBinary there, and
// checks that the copy goes on exactly as the original does.
func TestFramerSnapshotResumesAnywhere(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for round := range 40 {
		masked := round%2 == 0
		stream := randomStream(t, rng, masked)
		chunk := 1 + rng.IntN(40)
		for cut := 0; cut <= len(stream); cut += 1 + rng.IntN(7) {
			orig := NewFramer(masked, round%3 == 0, 1<<20)
			steps(&orig, stream[:cut], chunk)
			snap, err := orig.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			var moved Framer
			if err := moved.UnmarshalBinary(snap); err != nil {
				t.Fatalf("round %d, cut %d: %v", round, cut, err)
			}
			again, _ := moved.MarshalBinary()
			if !bytes.Equal(again, snap) {
				t.Fatalf("round %d, cut %d: snapshot of the copy differs:\n%x\n%x", round, cut, snap, again)
			}
			want := steps(&orig, stream[cut:], chunk)
			got := steps(&moved, stream[cut:], chunk)
			if !bytes.Equal(got, want) {
				t.Fatalf("round %d, cut %d: the copy relays differently", round, cut)
			}
		}
	}
}

func TestFramerSnapshotRefuses(t *testing.T) {
	good := NewFramer(true, false, 1<<20)
	steps(&good, frameBytes(t, false, 0, ws.OpText, []byte("hello"), true)[:4], 4) // a header cut short
	snap, _ := good.MarshalBinary()
	ctrl := NewFramer(true, false, 0)
	steps(&ctrl, frameBytes(t, true, 0, ws.OpPing, []byte("0123456789"), true)[:9], 9) // a ping being gathered
	csnap, _ := ctrl.MarshalBinary()
	if ctrl.control != true {
		t.Fatal("the ping is not being gathered")
	}
	mutate := func(b []byte, f func([]byte) []byte) []byte { return f(bytes.Clone(b)) }
	tests := []struct {
		name string
		give []byte
	}{
		{"empty", nil},
		{"short", snap[:snapshotFixed-1]},
		{"other version", mutate(snap, func(b []byte) []byte { b[0] = 2; return b })},
		{"unknown flag", mutate(snap, func(b []byte) []byte { b[1] |= 0x80; return b })},
		{"bad RSV mask", mutate(snap, func(b []byte) []byte { b[2] = 0x10; return b })},
		{"unknown violation", mutate(snap, func(b []byte) []byte { b[3] = 200; return b })},
		{"negative remaining", mutate(snap, func(b []byte) []byte { b[12] = 0x80; return b })},
		{"trailing byte", append(bytes.Clone(snap), 0)},
		{"cut header", snap[:len(snap)-2]},
		{"whole header held as partial", mutate(snap, func(b []byte) []byte {
			// 2 bytes of a 7-byte-payload unmasked frame are a whole header.
			b[32], b[33], b[34] = 2, 0x81, 0x07
			return append(b[:35], 0)
		})},
		{"header inside a frame", mutate(snap, func(b []byte) []byte { b[19] = 1; b[27] = 9; return b })},
		{"message over its limit", mutate(snap, func(b []byte) []byte { clear(b[4:12]); b[11] = 5; b[27] = 9; return b })},
		{"control gathered too long", mutate(csnap, func(b []byte) []byte { b[19] = 9; return b })},
		{"control bytes outside a control frame", mutate(csnap, func(b []byte) []byte { b[1] &^= snapControl; return b })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewFramer(false, false, 7)
			before := f
			if err := f.UnmarshalBinary(tt.give); err == nil {
				t.Fatalf("accepted %x", tt.give)
			}
			if f != before {
				t.Fatal("a refused snapshot changed the Framer")
			}
		})
	}
}

// FuzzFramerSnapshot holds the decoder to "restore exactly or refuse":
// whatever it accepts it writes back byte for byte, and the Framer it
// restores can be stepped without panicking.
func FuzzFramerSnapshot(f *testing.F) {
	for i, stream := range [][]byte{
		{0x81, 0x85, 1, 2, 3, 4, 'h' ^ 1, 'e' ^ 2},
		{0x89, 0x8a, 1, 2, 3, 4, 5},
		{0x01, 0x7e, 0x01},
		{0x02, 0x05, 1, 2, 3, 0x80, 0x01},
	} {
		fr := NewFramer(i%2 == 0, i == 3, 1<<16)
		fr.Step(stream)
		snap, _ := fr.MarshalBinary()
		f.Add(snap, []byte{0x80, 0x80, 0, 0, 0, 0, 0x88, 0x80, 0, 0, 0, 0})
	}
	f.Fuzz(func(t *testing.T, data, more []byte) {
		var fr Framer
		if err := fr.UnmarshalBinary(data); err != nil {
			return
		}
		back, err := fr.MarshalBinary()
		if err != nil || !bytes.Equal(back, data) {
			t.Fatalf("restored %x, wrote back %x (%v)", data, back, err)
		}
		steps(&fr, more, 5)
	})
}

// FuzzFramerSnapshotResume moves a Framer at a fuzzed point of a fuzzed
// stream and holds the copy to relaying the rest as the original does.
func FuzzFramerSnapshotResume(f *testing.F) {
	f.Add([]byte{0x81, 0x85, 1, 2, 3, 4, 'h' ^ 1, 'e' ^ 2, 'l' ^ 3, 'l' ^ 4, 'o' ^ 1}, true, uint8(3), uint16(5))
	f.Add([]byte{0x02, 0x7e, 0x00, 0x03, 1, 2, 3, 0x89, 0x01, 9, 0x80, 0x00}, false, uint8(1), uint16(8))
	f.Fuzz(func(t *testing.T, stream []byte, masked bool, chunk uint8, cut uint16) {
		at := int(cut) % (len(stream) + 1)
		orig := NewFramer(masked, chunk%2 == 0, 1<<16)
		steps(&orig, stream[:at], int(chunk)+1)
		snap, err := orig.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var moved Framer
		if err := moved.UnmarshalBinary(snap); err != nil {
			t.Fatalf("a Framer's own snapshot refused: %v (%x)", err, snap)
		}
		want := steps(&orig, stream[at:], int(chunk)+1)
		if got := steps(&moved, stream[at:], int(chunk)+1); !bytes.Equal(got, want) {
			t.Fatal("the copy relays differently")
		}
	})
}
