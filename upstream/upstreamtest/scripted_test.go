package upstreamtest

import (
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
)

func TestScriptedSessions(t *testing.T) {
	tests := []struct {
		name    string
		session func(net.Conn)
		check   func(t *testing.T, c *websocket.Conn) // reads what the script sent
	}{
		{
			name: "frames written raw",
			session: func(conn net.Conn) {
				ws.WriteFrame(conn, ws.NewFrame(ws.OpText, false, []byte("half ")))
				ws.WriteFrame(conn, ws.NewFrame(ws.OpContinuation, true, []byte("and half")))
				io.Copy(io.Discard, conn)
			},
			check: func(t *testing.T, c *websocket.Conn) {
				if _, got, err := c.ReadMessage(); err != nil || string(got) != "half and half" {
					t.Errorf("read = %q, %v; want the two fragments as one message", got, err)
				}
			},
		},
		{
			name: "reset mid-message",
			session: func(conn net.Conn) {
				ws.WriteHeader(conn, ws.Header{Fin: true, OpCode: ws.OpBinary, Length: 1000})
				conn.Write(make([]byte, 10))
				Reset(conn)
			},
			check: func(t *testing.T, c *websocket.Conn) {
				_, _, err := c.ReadMessage()
				if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("read = %v, want the message cut off by a reset", err)
				}
			},
		},
		{
			name:    "nil session holds the connection",
			session: nil,
			check: func(t *testing.T, c *websocket.Conn) {
				c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				var ne net.Error
				if _, _, err := c.ReadMessage(); !errors.As(err, &ne) || !ne.Timeout() {
					t.Errorf("read = %v, want nothing until the deadline", err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := StartScripted(t, Script{Session: tt.session})
			d := websocket.Dialer{HandshakeTimeout: wait}
			c, _, err := d.Dial("ws://"+s.Addr+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(wait))
			tt.check(t, c)
			if s.Upgrades() != 1 {
				t.Errorf("Upgrades() = %d, want 1", s.Upgrades())
			}
		})
	}
}

func TestScriptedHandshakeReset(t *testing.T) {
	s := StartScripted(t, Script{Handshake: Reset})
	d := websocket.Dialer{HandshakeTimeout: wait}
	if _, _, err := d.Dial("ws://"+s.Addr+"/", nil); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("dial = %v, want a reset", err)
	}
	res, err := httpClient(t).Get(s.URL() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Errorf("health check = %d %q, want 200 \"ok\"", res.StatusCode, body)
	}
	if s.Upgrades() != 1 || s.Requests() != 1 {
		t.Errorf("Upgrades() = %d, Requests() = %d; want 1, 1", s.Upgrades(), s.Requests())
	}
}

func TestScriptedCloseEndsScripts(t *testing.T) {
	s := StartScripted(t, Script{}) // holds every connection
	d := websocket.Dialer{HandshakeTimeout: wait}
	c, _, err := d.Dial("ws://"+s.Addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	eventually(t, func() bool { return s.Conns() == 1 })
	start := time.Now()
	s.Close()
	if took := time.Since(start); took > time.Second {
		t.Errorf("Close took %v", took)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	if _, _, err := c.ReadMessage(); err == nil {
		t.Error("connection still open after Close")
	}
	if s.Conns() != 0 {
		t.Errorf("Conns() = %d after Close", s.Conns())
	}
	if _, err := net.DialTimeout("tcp", s.Addr, wait); err == nil {
		t.Error("still accepting after Close")
	}
}
