package http1

import (
	"errors"
	"strings"
	"testing"
)

// readAll reads the request head at the start of in as a proxy would: End
// first, then ReadRequest.
func readAll(h *Head, in string) error {
	n, err := End([]byte(in))
	if err != nil {
		return err
	}
	if n == 0 {
		return errIncomplete
	}
	return h.ReadRequest([]byte(in[:n]))
}

var errIncomplete = errors.New("incomplete head")

func TestReadRequestRefusals(t *testing.T) {
	const ok = "GET /chat HTTP/1.1\r\nHost: example.com\r\n"
	tests := []struct {
		name string
		give string
		want error
	}{
		{"bare LF inside a value smuggles a header", ok + "X-A: b\nX-Forwarded-For: 6.6.6.6\r\n\r\n", ErrBareLF},
		{"bare LF ends the head", "GET / HTTP/1.1\nHost: a\n\n", ErrBareLF},
		{"bare LF after the request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", ErrBareLF},
		{"bare CR inside a value", ok + "X-A: b\rX-Forwarded-For: 6.6.6.6\r\n\r\n", ErrBareCR},
		{"bare CR at the end of a value", ok + "X-A: b\r\r\n\r\n", ErrBareCR},
		{"bare CR in the request line", "GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", ErrBareCR},
		{"NUL in a value", ok + "X-A: b\x00c\r\n\r\n", ErrFieldValue},
		{"DEL in a value", ok + "X-A: b\x7fc\r\n\r\n", ErrFieldValue},
		{"escape in a value", ok + "X-A: \x1b[31m\r\n\r\n", ErrFieldValue},
		{"obs-fold", ok + "X-A: b\r\n c\r\n\r\n", ErrObsFold},
		{"obs-fold with a tab", ok + "X-A: b\r\n\tX-Forwarded-For: 6.6.6.6\r\n\r\n", ErrObsFold},
		{"space before the colon", ok + "X-Forwarded-For : 6.6.6.6\r\n\r\n", ErrFieldName},
		{"tab before the colon", ok + "X-Forwarded-For\t: 6.6.6.6\r\n\r\n", ErrFieldName},
		{"name with a parenthesis", ok + "X(A): b\r\n\r\n", ErrFieldName},
		{"empty name", ok + ": b\r\n\r\n", ErrFieldName},
		{"no colon", ok + "X-A\r\n\r\n", ErrFieldName},
		{"non-ASCII name", ok + "X-\xc3\xa9: b\r\n\r\n", ErrFieldName},
		{"two spaces in the request line", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", ErrRequestLine},
		{"space after the version", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", ErrRequestLine},
		{"no version", "GET /\r\nHost: a\r\n\r\n", ErrRequestLine},
		{"lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n", ErrRequestLine},
		{"method not a token", "G@T / HTTP/1.1\r\nHost: a\r\n\r\n", ErrRequestLine},
		{"empty line first", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", ErrRequestLine},
		{"control byte in the target", "GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", ErrTarget},
		{"bad escape in the target", "GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", ErrTarget},
		{"relative target", "GET chat HTTP/1.1\r\nHost: a\r\n\r\n", ErrTarget},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", ErrPreface},
		{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", ErrVersion},
		{"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", ErrConnect},
		{"two Host headers", ok + "Host: evil.example\r\n\r\n", ErrHost},
		{"no Host in HTTP/1.1", "GET / HTTP/1.1\r\n\r\n", ErrHost},
		{"malformed Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", ErrHost},
		{"Content-Length not a number", ok + "Content-Length: 1x\r\n\r\n", ErrContentLength},
		{"Content-Length list", ok + "Content-Length: 1, 1\r\n\r\n", ErrContentLength},
		{"Content-Length with a sign", ok + "Content-Length: +1\r\n\r\n", ErrContentLength},
		{"empty Content-Length", ok + "Content-Length:\r\n\r\n", ErrContentLength},
		{"Content-Length too big", ok + "Content-Length: 9223372036854775808\r\n\r\n", ErrContentLength},
		{"two different Content-Lengths", ok + "Content-Length: 1\r\nContent-Length: 2\r\n\r\n", ErrContentLength},
		{"two equal Content-Lengths", ok + "Content-Length: 1\r\nContent-Length: 1\r\n\r\n", ErrRepeatedLength},
		{"Content-Length and chunked", ok + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", ErrLengthAndChunked},
		{"chunked and Content-Length", ok + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", ErrLengthAndChunked},
		{"gzip, chunked", ok + "Transfer-Encoding: gzip, chunked\r\n\r\n", ErrTransferEncoding},
		{"chunked twice", ok + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", ErrTransferEncoding},
		{"chunked in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", ErrEncodingHTTP10},
		{"unknown expectation", ok + "Expect: teapot\r\n\r\n", ErrExpect},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Head
			if err := readAll(&h, tt.give); err != tt.want {
				t.Errorf("ReadRequest(%q) = %v, want %v", tt.give, err, tt.want)
			}
		})
	}
}

func TestReadRequestAccepts(t *testing.T) {
	var h Head
	in := "GET /chat?room=1 HTTP/1.1\r\nHost: example.com:8080\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n" +
		"X-Empty:\r\nX-Spaces: \t a  b \t\r\nX-Obs-Text: caf\xc3\xa9\r\nExpect: 100-continue\r\nContent-Length: 007\r\n\r\n"
	if err := readAll(&h, in); err != nil {
		t.Fatal(err)
	}
	if got := string(h.Method()) + " " + string(h.Target()) + " " + string(h.Proto()); got != "GET /chat?room=1 HTTP/1.1" {
		t.Errorf("request line = %q", got)
	}
	checks := map[string]string{
		"host": "example.com:8080", "X-EMPTY": "", "x-spaces": "a  b", "X-Obs-Text": "caf\xc3\xa9", "Nope": "",
	}
	for name, want := range checks {
		if got := h.Get(name); got != want {
			t.Errorf("Get(%q) = %q, want %q", name, got, want)
		}
	}
	if !h.IsWebSocketUpgrade() || h.HasToken("Connection", "close") {
		t.Error("Connection and Upgrade tokens misread")
	}
	if h.ContentLength != 7 || h.Chunked {
		t.Errorf("framing = %d, %v; want 7, false", h.ContentLength, h.Chunked)
	}
	if h.Len() != 8 || string(h.Line(3)) != "X-Empty:" {
		t.Errorf("%d fields, line 3 %q", h.Len(), h.Line(3))
	}
	for _, ok := range []string{
		"GET / HTTP/1.0\r\n\r\n",                               // HTTP/1.0 needs no Host
		"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",                // asterisk form
		"GET http://example.com/x HTTP/1.1\r\nHost: a\r\n\r\n", // absolute form
		"GET /a%20b HTTP/1.1\r\nHost: a\r\n\r\n",               // escapes
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nExpect: x, 100-continue\r\n\r\n",
	} {
		if err := readAll(&h, ok); err != nil {
			t.Errorf("ReadRequest(%q) = %v", ok, err)
		}
	}
}

func TestReadRequestManyFields(t *testing.T) {
	var b strings.Builder
	b.WriteString("GET / HTTP/1.1\r\nHost: a\r\n")
	for i := range 200 {
		b.WriteString("X-F: ")
		b.WriteString(strings.Repeat("v", i%7))
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	var h Head
	if err := readAll(&h, b.String()); err != nil {
		t.Fatal(err)
	}
	if h.Len() != 201 || h.Count("x-f") != 200 || len(h.Values("X-F")) != 200 {
		t.Errorf("fields = %d, X-F = %d", h.Len(), h.Count("X-F"))
	}
}

func TestReadRequestAllocatesNothing(t *testing.T) {
	in := []byte("GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nCookie: a=b\r\n\r\n")
	var h Head
	allocs := testing.AllocsPerRun(100, func() {
		if err := h.ReadRequest(in); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per head", allocs)
	}
}

func TestReadResponse(t *testing.T) {
	var h Head
	for in, want := range map[string]int{
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n": 101,
		"HTTP/1.1 101\r\nUpgrade: websocket\r\n\r\n":                     101,
		"HTTP/1.0 403 \r\n\r\n":                                          403,
	} {
		if err := h.ReadResponse([]byte(in)); err != nil || h.Status() != want {
			t.Errorf("ReadResponse(%q) = %d, %v; want %d", in, h.Status(), err, want)
		}
	}
	for in, want := range map[string]error{
		"HTTP/1.1 10\r\n\r\n":                         ErrStatusLine,
		"HTTP/2.0 101 OK\r\n\r\n":                     ErrStatusLine,
		"HTTP/1.1 101 OK\x00\r\n\r\n":                 ErrStatusLine,
		"HTTP/1.1 101 OK\r\nSet-Cookie: a\rb\r\n\r\n": ErrBareCR,
		"HTTP/1.1 101 OK\r\nX: a\nY: b\r\n\r\n":       ErrBareLF,
	} {
		if err := h.ReadResponse([]byte(in)); err != want {
			t.Errorf("ReadResponse(%q) = %v, want %v", in, err, want)
		}
	}
}
