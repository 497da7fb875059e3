package proxy

import (
	"fmt"

	"github.com/wsedge/wsedge/proxy/evloop"
	"github.com/wsedge/wsedge/upstream"
)

// The hand-over protocol, spoken over a Unix socket between a running
// proxy (the old process) and the binary it starts to replace it (the new
// one). Each message is a frame: its payload's length (4 bytes), its kind
// (1 byte) and how many descriptors ride with it (1 byte), then the
// payload; the descriptors go with the frame's first bytes by SCM_RIGHTS.
//
//	new → old  hello      versions it speaks, its pid and build
//	old → new  state      the version chosen, listening sockets by role (descriptors)
//	new → old  ready      its config is good and its listeners are built
//	old → new  conns      up to handoffBatch connections (two descriptors each)
//	old → new  commit     how many conns this round carried
//	new → old  committed  it owns them now
//	old → new  done       nothing more to hand over
//	either     fail       the reason it gives up; the old process keeps serving
//
// conns and commit repeat, a round for each sweep of the old process's
// connections: the first when the new process starts, more for those that
// finished their handshake in the old one meanwhile. A round is taken
// whole or refused whole. Every message but hello is read as the version
// the old process chose says; a new process that cannot speak any version
// the old one does is turned away before anything is handed over.
const (
	msgHello uint8 = 1 + iota
	msgState
	msgReady
	msgConns
	msgCommit
	msgCommitted
	msgFail
	msgDone
)

// HandoffVersion is the newest version of the hand-over protocol this
// binary speaks; handoffMinVersion the oldest.
const (
	HandoffVersion    = 1
	handoffMinVersion = 1
)

// handoffMagic opens a hello, so that an old process never takes a stray
// writer of its socket for a new proxy.
const handoffMagic = "wsedge-handoff"

// Bounds of a frame: what one record and one batch of them may take.
const (
	maxFrameFDs = 250 // under the kernel's SCM_MAX_FD of 253
	// handoffBatch is how many connections one conns message carries: two
	// descriptors each.
	handoffBatch = maxFrameFDs / 2
	// maxRecordBytes bounds one record: both flows' byte runs full, and
	// its strings at their longest.
	maxRecordBytes = 2*(maxFlowBytes+evloop.BurstSize+maxOwnBytes) + 16<<10
	// maxFramePayload bounds a frame: a batch of the longest records.
	maxFramePayload = handoffBatch*(4+maxRecordBytes) + 2
)

// HandoffHello is the new process's first message.
type HandoffHello struct {
	MinVersion, MaxVersion uint16 // the protocol versions it speaks
	PID                    int
	Build                  string // its version, for the log
}

// HandoffSockets are listening sockets lent to the new process, for one
// role the caller names ("client", "admin", "metrics", ...): the sockets
// the old process opened for Addr, as its config gave it. The new process
// takes them when its own config has the same address for the role, and
// closes them otherwise.
type HandoffSockets struct {
	Role string
	Addr string
	FDs  []int
}

// HandoffState is the old process's answer to a hello: the version both
// speak, the sockets it lends, and what its proxy carries on (see
// Server.HandoffState).
type HandoffState struct {
	Version uint16
	Sockets []HandoffSockets
	// Request IDs go on in the new process with the old one's prefix, from
	// a number past any the old one will reach.
	idPrefix string
	nextID   uint64
	// Members is what the old process knows of gossip: the node the new
	// one goes on as, and its members, so that its ring is whole at once.
	Members upstream.Inheritance
}

// maxInheritedPeers bounds the gossip nodes a state may carry.
const maxInheritedPeers = 1 << 16

// HandoffRefused is the reason the other process gave for giving up.
type HandoffRefused struct{ Reason string }

func (e *HandoffRefused) Error() string { return e.Reason }

func encodeHello(h HandoffHello) []byte {
	w := &wireWriter{}
	w.str(handoffMagic)
	w.u16(h.MinVersion)
	w.u16(h.MaxVersion)
	w.u32(uint32(h.PID))
	w.str(h.Build)
	return w.b
}

func decodeHello(p []byte) (HandoffHello, error) {
	r := &wireReader{b: p}
	var h HandoffHello
	if magic := r.str(len(handoffMagic), "magic"); r.err == nil && magic != handoffMagic {
		r.fail("not a hello")
	}
	h.MinVersion, h.MaxVersion = r.u16(), r.u16()
	h.PID = int(r.u32())
	h.Build = r.str(maxRecordString, "build")
	return h, r.end()
}

// encodeState writes st; its descriptors go beside the frame, in order.
func encodeState(st HandoffState) ([]byte, []int) {
	w := &wireWriter{}
	w.u16(st.Version)
	w.str(st.idPrefix)
	w.u64(st.nextID)
	w.u16(uint16(len(st.Sockets)))
	var fds []int
	for _, s := range st.Sockets {
		w.str(s.Role)
		w.str(s.Addr)
		w.u16(uint16(len(s.FDs)))
		fds = append(fds, s.FDs...)
	}
	m := st.Members
	w.str(m.Node)
	w.str(m.Bind)
	w.u32(uint32(len(m.Join)))
	for _, a := range m.Join {
		w.str(a)
	}
	w.u32(uint32(len(m.Peers)))
	for _, p := range m.Peers {
		w.str(p.Name)
		w.str(string(p.Meta))
		w.boolean(p.Dead)
		w.boolean(p.Up)
	}
	return w.b, fds
}

// decodeMembers reads what encodeState wrote of st.Members.
func decodeMembers(r *wireReader) upstream.Inheritance {
	var m upstream.Inheritance
	m.Node = r.str(maxRecordString, "gossip node")
	m.Bind = r.str(maxRecordString, "gossip address")
	n := r.u32()
	if n > maxInheritedPeers {
		r.fail("%d gossip members", n)
		return m
	}
	for range n {
		a := r.str(maxRecordString, "gossip member address")
		if r.err != nil {
			break
		}
		m.Join = append(m.Join, a)
	}
	n = r.u32()
	if n > maxInheritedPeers {
		r.fail("%d gossip nodes", n)
		return m
	}
	for range n {
		p := upstream.InheritedPeer{Name: r.str(maxRecordString, "gossip node"), Meta: []byte(r.str(maxRecordString, "gossip metadata"))}
		p.Dead, p.Up = r.boolean(), r.boolean()
		if r.err != nil {
			break
		}
		m.Peers = append(m.Peers, p)
	}
	return m
}

func decodeState(p []byte, fds []int) (HandoffState, error) {
	r := &wireReader{b: p}
	var st HandoffState
	st.Version = r.u16()
	st.idPrefix = r.str(64, "request ID prefix")
	st.nextID = r.u64()
	n := int(r.u16())
	used := 0
	for range n {
		s := HandoffSockets{Role: r.str(64, "role"), Addr: r.str(maxRecordString, "address")}
		k := int(r.u16())
		if r.err != nil {
			break
		}
		if used+k > len(fds) {
			r.fail("%d sockets named, %d sent", used+k, len(fds))
			break
		}
		s.FDs = fds[used : used+k : used+k]
		used += k
		st.Sockets = append(st.Sockets, s)
	}
	if r.err == nil && used != len(fds) {
		r.fail("%d sockets sent, %d named", len(fds), used)
	}
	st.Members = decodeMembers(r)
	return st, r.end()
}

func encodeCount(n int) []byte {
	w := &wireWriter{}
	w.u32(uint32(n))
	return w.b
}

func decodeCount(p []byte) (int, error) {
	r := &wireReader{b: p}
	n := r.u32()
	return int(n), r.end()
}

func encodeFail(reason string) []byte {
	w := &wireWriter{}
	w.str(reason)
	return w.b
}

func decodeFail(p []byte) string {
	r := &wireReader{b: p}
	s := r.str(1<<16-1, "reason")
	if r.end() != nil {
		return "gave up (unreadable reason)"
	}
	return s
}

// encodeConns writes a batch of encoded records.
func encodeConns(records [][]byte) []byte {
	w := &wireWriter{}
	w.u16(uint16(len(records)))
	for _, rec := range records {
		w.blob32(rec)
	}
	return w.b
}

// decodeConns reads a batch: every record whole and valid, and two
// descriptors for each, or an error for the whole batch.
func decodeConns(p []byte, nfds int) ([]*connRecord, error) {
	r := &wireReader{b: p}
	n := int(r.u16())
	if r.err == nil && (n == 0 || n > handoffBatch || nfds != 2*n) {
		r.fail("%d connections with %d descriptors", n, nfds)
	}
	var out []*connRecord
	for i := 0; i < n && r.err == nil; i++ {
		rec := r.blob32(maxRecordBytes, "record")
		if r.err != nil {
			break
		}
		one := &wireReader{b: rec}
		c := readRecord(one)
		if err := one.end(); err != nil {
			return nil, fmt.Errorf("connection %d of the batch: %w", i, err)
		}
		out = append(out, c)
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	return out, nil
}
