package wsframe

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/gobwas/ws"
)

// frameBytes builds one frame as a peer would send it.
func frameBytes(tb testing.TB, fin bool, rsv byte, op ws.OpCode, payload []byte, masked bool) []byte {
	tb.Helper()
	h := ws.Header{Fin: fin, Rsv: rsv >> 4, OpCode: op, Length: int64(len(payload)), Masked: masked}
	p := append([]byte(nil), payload...)
	if masked {
		h.Mask = ws.NewMask()
		ws.Cipher(p, h.Mask, 0)
	}
	var buf bytes.Buffer
	if err := ws.WriteHeader(&buf, h); err != nil {
		tb.Fatal(err)
	}
	buf.Write(p)
	return buf.Bytes()
}

// relayed feeds stream to a Framer in chunks of the given sizes (cycled) and
// returns what it would write, the control frames it handed out, and the
// violation if any.
func relayed(f *Framer, stream []byte, chunks []int) (out []byte, controls []ws.OpCode, v Violation) {
	for i := 0; len(stream) > 0; i++ {
		c := min(chunks[i%len(chunks)], len(stream))
		in := stream[:c]
		stream = stream[c:]
		for len(in) > 0 {
			n, o, ev := f.Step(in)
			in = in[n:]
			switch ev {
			case Forward:
				out = append(out, o...)
			case Control:
				controls = append(controls, ControlOp(o))
				out = append(out, o...)
			case Invalid:
				return out, controls, f.Violation()
			}
		}
	}
	return out, controls, noViolation
}

func TestFramerPassesRandomStreamsUnchanged(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 300; round++ {
		masked := round%2 == 0
		var stream []byte
		var wantControls []ws.OpCode
		for m := 0; m < 1+rng.IntN(8); m++ {
			// A message in 1..4 fragments, with control frames between them.
			frags := 1 + rng.IntN(4)
			for i := 0; i < frags; i++ {
				op := ws.OpContinuation
				if i == 0 {
					op = ws.OpText
					if rng.IntN(2) == 0 {
						op = ws.OpBinary
					}
				}
				size := rng.IntN(300)
				if rng.IntN(10) == 0 {
					size = 70000 // 64-bit length encoding
				}
				payload := make([]byte, size)
				for j := range payload {
					payload[j] = byte(rng.Uint32())
				}
				stream = append(stream, frameBytes(t, i == frags-1, 0, op, payload, masked)...)
				if rng.IntN(3) == 0 {
					cop := []ws.OpCode{ws.OpPing, ws.OpPong}[rng.IntN(2)]
					stream = append(stream, frameBytes(t, true, 0, cop, []byte("hb"), masked)...)
					wantControls = append(wantControls, cop)
				}
			}
		}
		stream = append(stream, frameBytes(t, true, 0, ws.OpClose, ws.NewCloseFrameBody(1000, "bye"), masked)...)
		wantControls = append(wantControls, ws.OpClose)

		chunks := []int{1 + rng.IntN(3), 1 + rng.IntN(64), 1 + rng.IntN(40000)}
		f := NewFramer(masked, false, 0)
		out, controls, v := relayed(&f, stream, chunks)
		if v != noViolation {
			t.Fatalf("round %d: violation %v on a valid stream", round, v)
		}
		if !bytes.Equal(out, stream) {
			t.Fatalf("round %d: relayed %d bytes differ from the %d sent", round, len(out), len(stream))
		}
		if len(controls) != len(wantControls) {
			t.Fatalf("round %d: control frames %v, want %v", round, controls, wantControls)
		}
		for i := range controls {
			if controls[i] != wantControls[i] {
				t.Fatalf("round %d: control frames %v, want %v", round, controls, wantControls)
			}
		}
		if !f.AtBoundary() {
			t.Fatalf("round %d: not at a frame boundary after whole frames", round)
		}
	}
}

func TestFramerCoalescesWholeDataFrames(t *testing.T) {
	var stream []byte
	for i := 0; i < 50; i++ {
		stream = append(stream, frameBytes(t, true, 0, ws.OpText, []byte("hello"), true)...)
	}
	f := NewFramer(true, false, 0)
	n, out, ev := f.Step(stream)
	if ev != Forward || n != len(stream) || len(out) != len(stream) {
		t.Fatalf("step = %d bytes, event %d; want all %d bytes in one forward", n, ev, len(stream))
	}
}

func TestFramerControlPayloadUnmasked(t *testing.T) {
	for _, masked := range []bool{true, false} {
		f := NewFramer(masked, false, 0)
		frame := frameBytes(t, true, 0, ws.OpPong, []byte("wsedge:1"), masked)
		_, out, ev := f.Step(frame)
		if ev != Control || !bytes.Equal(out, frame) {
			t.Fatalf("masked=%v: event %d, out %x; want the whole pong frame", masked, ev, out)
		}
		var buf [125]byte
		if got := ControlPayload(out, buf[:]); string(got) != "wsedge:1" {
			t.Fatalf("masked=%v: payload %q, want %q", masked, got, "wsedge:1")
		}
	}
}

func TestFramerViolations(t *testing.T) {
	big := make([]byte, 200)
	tests := []struct {
		name     string
		masked   bool
		ext      bool
		max      int64
		give     [][]byte
		wantCode ws.StatusCode
	}{
		{name: "unmasked client frame", masked: true,
			give: [][]byte{frameBytes(t, true, 0, ws.OpText, []byte("x"), false)}, wantCode: ws.StatusProtocolError},
		{name: "masked server frame", masked: false,
			give: [][]byte{frameBytes(t, true, 0, ws.OpText, []byte("x"), true)}, wantCode: ws.StatusProtocolError},
		{name: "reserved data opcode", masked: true,
			give: [][]byte{frameBytes(t, true, 0, 0x3, []byte("x"), true)}, wantCode: ws.StatusProtocolError},
		{name: "reserved control opcode", masked: true,
			give: [][]byte{frameBytes(t, true, 0, 0xb, nil, true)}, wantCode: ws.StatusProtocolError},
		{name: "fragmented ping", masked: true,
			give: [][]byte{frameBytes(t, false, 0, ws.OpPing, nil, true)}, wantCode: ws.StatusProtocolError},
		{name: "oversized ping", masked: true,
			give: [][]byte{frameBytes(t, true, 0, ws.OpPing, big[:126], true)}, wantCode: ws.StatusProtocolError},
		{name: "rsv1 without extension", masked: true,
			give: [][]byte{frameBytes(t, true, 0x40, ws.OpText, []byte("x"), true)}, wantCode: ws.StatusProtocolError},
		{name: "rsv1 on a ping with extension", masked: true, ext: true,
			give: [][]byte{frameBytes(t, true, 0x40, ws.OpPing, nil, true)}, wantCode: ws.StatusProtocolError},
		{name: "continuation first", masked: true,
			give: [][]byte{frameBytes(t, true, 0, ws.OpContinuation, []byte("x"), true)}, wantCode: ws.StatusProtocolError},
		{name: "text inside fragmented message", masked: true,
			give: [][]byte{
				frameBytes(t, false, 0, ws.OpText, []byte("a"), true),
				frameBytes(t, true, 0, ws.OpText, []byte("b"), true),
			}, wantCode: ws.StatusProtocolError},
		{name: "one-byte close body", masked: true,
			give: [][]byte{frameBytes(t, true, 0, ws.OpClose, []byte{3}, true)}, wantCode: ws.StatusProtocolError},
		{name: "close code 1005 on the wire", masked: true,
			give: [][]byte{frameBytes(t, true, 0, ws.OpClose, ws.NewCloseFrameBody(1005, ""), true)}, wantCode: ws.StatusProtocolError},
		{name: "frame over the limit", masked: true, max: 100,
			give: [][]byte{frameBytes(t, true, 0, ws.OpBinary, big, true)}, wantCode: ws.StatusMessageTooBig},
		{name: "fragments over the limit together", masked: true, max: 300,
			give: [][]byte{
				frameBytes(t, false, 0, ws.OpBinary, big, true),
				frameBytes(t, true, 0, ws.OpContinuation, big, true),
			}, wantCode: ws.StatusMessageTooBig},
		{name: "2 GiB declared length", masked: true, max: 1 << 20,
			give: [][]byte{{0x82, 0xff, 0, 0, 0, 0, 0x80, 0, 0, 0, 1, 2, 3, 4}}, wantCode: ws.StatusMessageTooBig},
		{name: "length with the top bit set", masked: true,
			give: [][]byte{{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}}, wantCode: ws.StatusProtocolError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream := bytes.Join(tt.give, nil)
			for _, chunk := range []int{1, 7, len(stream)} {
				f := NewFramer(tt.masked, tt.ext, tt.max)
				_, _, v := relayed(&f, stream, []int{chunk})
				if v.Code() != tt.wantCode {
					t.Fatalf("chunks of %d: close code %d (%q), want %d", chunk, v.Code(), v.Reason(), tt.wantCode)
				}
			}
		})
	}
}

func TestFramerAllowsRSVWithExtensions(t *testing.T) {
	stream := append(frameBytes(t, false, 0x40, ws.OpText, []byte("compressed"), true),
		frameBytes(t, true, 0, ws.OpContinuation, []byte("more"), true)...)
	f := NewFramer(true, true, 0)
	out, _, v := relayed(&f, stream, []int{5})
	if v != noViolation || !bytes.Equal(out, stream) {
		t.Fatalf("violation %v; want RSV1 passed through with a negotiated extension", v)
	}
}

func TestFramerForwardsGoodPrefixBeforeViolation(t *testing.T) {
	good := frameBytes(t, true, 0, ws.OpText, []byte("fine"), true)
	bad := frameBytes(t, true, 0, ws.OpText, []byte("x"), false)
	f := NewFramer(true, false, 0)
	out, _, v := relayed(&f, append(good, bad...), []int{1 << 20})
	if !bytes.Equal(out, good) || v.Code() != ws.StatusProtocolError {
		t.Fatalf("out %x, violation %v; want the good frame then a protocol error", out, v)
	}
}

func TestFramerBoundary(t *testing.T) {
	frame := frameBytes(t, true, 0, ws.OpBinary, make([]byte, 1000), false)
	f := NewFramer(false, false, 0)
	f.Step(frame[:500])
	if f.AtBoundary() {
		t.Fatal("at a boundary in the middle of a payload")
	}
	f.Step(frame[500:])
	if !f.AtBoundary() {
		t.Fatal("not at a boundary after the whole frame")
	}
	f.Step(frame[:1])
	if f.AtBoundary() {
		t.Fatal("at a boundary with half a header")
	}
}

func FuzzFramer(f *testing.F) {
	f.Add([]byte{0x81, 0x85, 1, 2, 3, 4, 'h' ^ 1, 'e' ^ 2, 'l' ^ 3, 'l' ^ 4, 'o' ^ 1}, true, uint8(3))
	f.Add([]byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o', 0x88, 0x02, 0x03, 0xe8}, false, uint8(1))
	f.Add([]byte{0x02, 0x7e, 0x00, 0x03, 1, 2, 3, 0x89, 0x00, 0x80, 0x01, 9}, false, uint8(2))
	f.Fuzz(func(t *testing.T, stream []byte, masked bool, chunk uint8) {
		fr := NewFramer(masked, chunk%2 == 0, 1<<16)
		out, _, v := relayed(&fr, stream, []int{int(chunk) + 1})
		if len(out) > len(stream) {
			t.Fatalf("relayed %d bytes out of %d in", len(out), len(stream))
		}
		if !bytes.Equal(out, stream[:len(out)]) {
			t.Fatal("relayed bytes are not a prefix of the input")
		}
		if c := v.Code(); c != 0 && c != ws.StatusProtocolError && c != ws.StatusMessageTooBig {
			t.Fatalf("violation with close code %d", v.Code())
		}
	})
}
