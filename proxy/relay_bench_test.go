package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/gobwas/ws"

	"github.com/wsedge/wsedge/upstream"
)

// rawEchoBackend answers a WebSocket upgrade and echoes every frame back
// unmasked, reusing its buffers, so that it allocates nothing per message
// and a benchmark's allocation count is the proxy's.
func rawEchoBackend(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		defer conn.Close()
		br := bufio.NewReaderSize(conn, 4096)
		payload := make([]byte, 1<<16)
		out := make([]byte, 0, 2+len(payload))
		hbuf := make([]byte, ws.MaxHeaderSize)
		for {
			h, err := ws.ReadHeaderBuffer(br, hbuf)
			if err != nil || h.Length > int64(len(payload)) {
				return
			}
			p := payload[:h.Length]
			if _, err := io.ReadFull(br, p); err != nil {
				return
			}
			if h.OpCode == ws.OpClose {
				return
			}
			ws.Cipher(p, h.Mask, 0)
			out = append(append(out[:0], 0x80|byte(h.OpCode), byte(len(p))), p...)
			if _, err := conn.Write(out); err != nil {
				return
			}
		}
	})}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// BenchmarkRelayEcho sends 64-byte messages through the proxy, one at a
// time, to an echo backend, and reads each echo: one op is a message each
// way through the event loop. Allocations per op are the relay's in steady
// state, which should be none.
func BenchmarkRelayEcho(b *testing.B) {
	backend := rawEchoBackend(b)
	p := startProxyOn(b, Config{}, []upstream.Backend{{Addr: backend}})
	conn, _, _, err := ws.Dial(context.Background(), p.url("/"))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	msg := frameBytes(b, true, 0, ws.OpBinary, make([]byte, 64), true)
	echo := make([]byte, 2+64)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := conn.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(conn, echo); err != nil {
			b.Fatal(err)
		}
	}
}
