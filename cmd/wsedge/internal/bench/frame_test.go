package bench

import (
	"bufio"
	"bytes"
	"errors"
	"testing"

	"github.com/gobwas/ws"
)

func TestAppendHeaderMatchesGobwas(t *testing.T) {
	tests := []ws.Header{
		{Fin: true, OpCode: ws.OpBinary, Length: 0},
		{Fin: true, OpCode: ws.OpText, Length: 125},
		{Fin: false, OpCode: ws.OpBinary, Rsv: 4, Length: 126},
		{Fin: true, OpCode: ws.OpContinuation, Length: 65535, Masked: true, Mask: [4]byte{1, 2, 3, 4}},
		{Fin: true, OpCode: ws.OpBinary, Length: 65536},
		{Fin: true, OpCode: ws.OpClose, Length: 2, Masked: true, Mask: [4]byte{9, 8, 7, 6}},
	}
	for _, h := range tests {
		var want bytes.Buffer
		if err := ws.WriteHeader(&want, h); err != nil {
			t.Fatal(err)
		}
		if got := appendHeader(nil, h); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("appendHeader(%+v) = %x, want %x", h, got, want.Bytes())
		}
	}
}

// serverFrames encodes frames as a server sends them (unmasked).
func serverFrames(t *testing.T, frames ...ws.Frame) *bufio.Reader {
	t.Helper()
	var b bytes.Buffer
	for _, f := range frames {
		if err := ws.WriteFrame(&b, f); err != nil {
			t.Fatal(err)
		}
	}
	return bufio.NewReaderSize(&b, 16)
}

func TestReadMessageReassemblesAndAnswersPings(t *testing.T) {
	r := serverFrames(t,
		ws.Frame{Header: ws.Header{OpCode: ws.OpBinary, Length: 3}, Payload: []byte("abc")},
		ws.NewPingFrame([]byte("hb-1")),
		ws.Frame{Header: ws.Header{OpCode: ws.OpContinuation, Length: 2}, Payload: []byte("de")},
		ws.NewPongFrame(nil),
		ws.Frame{Header: ws.Header{Fin: true, OpCode: ws.OpContinuation, Length: 1}, Payload: []byte("f")},
		ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusCode(1013), "busy")),
	)
	var sent bytes.Buffer
	fr := &frameReader{r: r, w: &sent, mask: [4]byte{1, 2, 3, 4}}
	got, err := fr.readMessage(make([]byte, 0, 2))
	if err != nil || string(got) != "abcdef" {
		t.Fatalf("readMessage = %q, %v; want \"abcdef\"", got, err)
	}
	pong, err := ws.ReadFrame(&sent)
	if err != nil {
		t.Fatal(err)
	}
	ws.Cipher(pong.Payload, pong.Header.Mask, 0)
	if pong.Header.OpCode != ws.OpPong || !pong.Header.Masked || string(pong.Payload) != "hb-1" {
		t.Errorf("answer to ping = %+v %q, want a masked pong with \"hb-1\"", pong.Header, pong.Payload)
	}
	_, err = fr.readMessage(nil)
	var pc *PeerCloseError
	if !errors.As(err, &pc) || pc.Code != ws.StatusCode(1013) || pc.Reason != "busy" {
		t.Errorf("err = %v, want a PeerCloseError 1013 busy", err)
	}
}

func TestClientFrameIsMasked(t *testing.T) {
	payload := []byte("hello, proxy")
	f, err := ws.ReadFrame(bytes.NewReader(clientFrame(ws.OpText, payload, [4]byte{0xa, 0xb, 0xc, 0xd})))
	if err != nil {
		t.Fatal(err)
	}
	if !f.Header.Masked || !f.Header.Fin || bytes.Equal(f.Payload, payload) {
		t.Fatalf("frame %+v %q: want final, masked, payload not in the clear", f.Header, f.Payload)
	}
	ws.Cipher(f.Payload, f.Header.Mask, 0)
	if !bytes.Equal(f.Payload, payload) {
		t.Errorf("unmasked payload = %q, want %q", f.Payload, payload)
	}
}
