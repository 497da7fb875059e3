package proxy

import (
	"github.com/wsedge/wsedge/upstream"

	"bytes"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/wsedge/wsedge/proxy/wsframe"
)

// randomRecord is a connection record with every field set at random to a
// value a connection can have, its framers cut in the middle of a frame.
func randomRecord(rng *rand.Rand) *connRecord {
	bytesOf := func(max int) []byte {
		if rng.IntN(3) == 0 {
			return nil
		}
		p := make([]byte, 1+rng.IntN(max))
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		return p
	}
	r := &connRecord{
		id: rng.Uint64(), reqID: "req-" + string(rune('a'+rng.IntN(26))),
		place: placement{backend: "10.0.0.7:9001", client: netip.AddrFrom4([4]byte{192, 0, 2, byte(rng.IntN(256))}),
			key: rng.Uint64(), pinned: rng.IntN(2) == 0},
		started: rng.Int64N(1 << 62), bytesUp: rng.Int64N(1 << 40), bytesDown: rng.Int64N(1 << 40),
		lastPong: rng.Int64N(1 << 62), lastRead: rng.Int64N(1 << 62), lastData: rng.Int64N(1 << 62),
		msgTotal: [2]uint64{rng.Uint64(), rng.Uint64()}, msgRate: [2]uint32{rng.Uint32(), rng.Uint32()},
		msgWindow: rng.Int64N(1 << 62), msgInWin: [2]uint32{rng.Uint32(), rng.Uint32()},
		settings: connSettings{pingInterval: time.Duration(rng.IntN(100)) * time.Second, pongTimeout: 10 * time.Second,
			writeTimeout: 10 * time.Second, maxConnectionAgeJitter: rng.Float64() / 2, maxMessageBytes: 1 << 20,
			clientMessagesPerSecond: int64(rng.IntN(1000)), rateLimitGrace: 10 * time.Second},
		nextPing: rng.Int64N(1 << 62), pingAt: rng.Int64N(1 << 62), pingSeq: rng.Uint32(),
	}
	if rng.IntN(2) == 0 {
		r.place.client = netip.MustParseAddr("2001:db8::1%eth0")
	}
	stream := []byte{0x82, 0xfe, 0x01, 0x00, 1, 2, 3, 4} // a masked 256-byte frame's header
	r.up = wsframe.NewFramer(true, false, 1<<20)
	r.up.Step(stream[:rng.IntN(len(stream)+1)])
	r.down = wsframe.NewFramer(false, true, 1<<20)
	r.down.Step([]byte{0x01, 0x7e, 0x10, 0x00, 9}[:rng.IntN(6)])
	for i := range r.flows {
		r.flows[i] = flowRecord{out: bytesOf(300), input: bytesOf(300), own: bytesOf(40),
			stalledAt: rng.Int64N(1 << 62), flags: uint16(rng.IntN(flowBits + 1))}
	}
	if rng.IntN(2) == 0 {
		r.end = &endRecord{cause: causeClientClosed, clientCode: 1000, clientReason: "bye",
			peerClose: true, linger: rng.IntN(2) == 0, code: 1000, err: "read: connection reset"}
		r.lingerUntil = rng.Int64N(1 << 62)
	}
	if rng.IntN(2) == 0 {
		r.limits = &clientLimits{msgs: bucket{tokens: rng.Float64() * 100, last: rng.Int64N(1 << 62), full: true},
			bytes: bucket{tokens: -rng.Float64() * 1e6, last: 5}, overSince: 7, until: 9}
	}
	return r
}

func encodedRecord(r *connRecord) []byte {
	w := &wireWriter{}
	appendRecord(w, r)
	return w.b
}

// A record read back is the record written, field for field.
func TestConnRecordRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	for i := range 500 {
		want := randomRecord(rng)
		b := encodedRecord(want)
		rd := &wireReader{b: b}
		got := readRecord(rd)
		if err := rd.end(); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("record %d came back different:\n got %+v\nwant %+v", i, got, want)
		}
		if again := encodedRecord(got); !bytes.Equal(again, b) {
			t.Fatalf("record %d written back differently", i)
		}
	}
}

// Every way of damaging a record is caught or harmless: each byte changed,
// each prefix, a byte too many. Harmless means the record read is written
// back byte for byte, so what was restored is exactly what was sent.
func TestConnRecordDamage(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	b := encodedRecord(randomRecord(rng))
	check := func(what string, p []byte) {
		rd := &wireReader{b: p}
		got := readRecord(rd)
		if rd.end() != nil {
			return
		}
		if again := encodedRecord(got); !bytes.Equal(again, p) {
			t.Fatalf("%s: accepted, and written back differently", what)
		}
	}
	for i := range len(b) {
		check("prefix", b[:i])
		for _, v := range []byte{0, 1, 0x7f, 0x80, 0xff, b[i] ^ 0x01} {
			p := bytes.Clone(b)
			p[i] = v
			check("byte changed", p)
		}
	}
	if rd := (&wireReader{b: append(bytes.Clone(b), 0)}); readRecord(rd) != nil && rd.end() == nil {
		t.Fatal("a record with a byte too many was accepted")
	}
}

// FuzzHandoffConns holds the decoder of a batch of connections to
// "restore exactly or refuse": whatever it accepts, it writes back byte
// for byte.
func FuzzHandoffConns(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 1))
	for n := 1; n <= 3; n++ {
		var recs [][]byte
		for range n {
			recs = append(recs, encodedRecord(randomRecord(rng)))
		}
		f.Add(encodeConns(recs), uint8(2*n))
	}
	f.Fuzz(func(t *testing.T, p []byte, nfds uint8) {
		recs, err := decodeConns(p, int(nfds))
		if err != nil {
			return
		}
		var again [][]byte
		for _, r := range recs {
			again = append(again, encodedRecord(r))
		}
		if back := encodeConns(again); !bytes.Equal(back, p) {
			t.Fatalf("accepted %x, wrote back %x", p, back)
		}
		if len(recs)*2 != int(nfds) {
			t.Fatalf("%d connections accepted with %d descriptors", len(recs), nfds)
		}
	})
}

// sampleState is a state with something in every field.
func sampleState() HandoffState {
	return HandoffState{Version: 1, idPrefix: "0a1b2c3d", nextID: 9,
		Sockets: []HandoffSockets{{Role: "client", Addr: ":8080", FDs: []int{5, 6}}, {Role: "admin", Addr: "127.0.0.1:9090", FDs: []int{7}}},
		Members: upstream.Inheritance{Node: "edge-1:7946", Bind: "10.0.0.1:7946", Join: []string{"10.0.0.2:7946"},
			Peers: []upstream.InheritedPeer{
				{Name: "app-1", Meta: []byte(`{"v":1,"role":"backend","addr":"10.0.1.1:8080","weight":1,"state":"alive"}`), Up: true},
				{Name: "app-2", Meta: []byte(`{"v":1,"role":"backend","addr":"10.0.1.2:8080","weight":1,"state":"alive"}`), Dead: true},
			}}}
}

// The state, with the gossip members the new process inherits, reads back
// as it was written.
func TestHandoffStateRoundTrip(t *testing.T) {
	want := sampleState()
	p, fds := encodeState(want)
	got, err := decodeState(p, fds)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("state read back as %+v, want %+v", got, want)
	}
	if _, err := decodeState(p[:len(p)-1], fds); err == nil {
		t.Error("a state cut short was read")
	}
}

// The other messages of the protocol, likewise.
func FuzzHandoffMessages(f *testing.F) {
	f.Add(uint8(msgHello), encodeHello(HandoffHello{MinVersion: 1, MaxVersion: 1, PID: 42, Build: "wsedge 0.1.0"}), uint8(0))
	st, fds := encodeState(sampleState())
	f.Add(uint8(msgState), st, uint8(len(fds)))
	f.Add(uint8(msgCommit), encodeCount(7), uint8(0))
	f.Fuzz(func(t *testing.T, kind uint8, p []byte, nfds uint8) {
		switch kind % 3 {
		case 0:
			h, err := decodeHello(p)
			if err == nil && !bytes.Equal(encodeHello(h), p) {
				t.Fatalf("hello %x written back differently", p)
			}
		case 1:
			fds := make([]int, nfds)
			for i := range fds {
				fds[i] = 100 + i
			}
			st, err := decodeState(p, fds)
			if err != nil {
				return
			}
			back, bfds := encodeState(st)
			if !bytes.Equal(back, p) || !reflect.DeepEqual(bfds, fds) && len(fds) > 0 {
				t.Fatalf("state %x written back as %x, %v", p, back, bfds)
			}
		case 2:
			n, err := decodeCount(p)
			if err == nil && !bytes.Equal(encodeCount(n), p) {
				t.Fatalf("count %x written back differently", p)
			}
		}
	})
}
