package http1

import (
	"bufio"
	"bytes"
	"encoding/gob"
	"io"
	"log"
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// seedHeads are the attacks and near misses both fuzz targets start from.
var seedHeads = []string{
	"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rX-Forwarded-For: 6.6.6.6\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For : 6.6.6.6\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 6.6.6.6\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\nHost: a\n\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\nx",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 36\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
	"GET http://x/y HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
	"GET / HTTP/1.0\r\n\r\n",
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
}

// observed is what Go's server made of a request, as its handler saw it.
type observed struct {
	Method, Target, Proto, Host string
	Header                      http.Header
	ContentLength               int64
	Chunked                     bool
}

// reference is Go's net/http server on loopback, the reader every head is
// held against.
type reference struct {
	addr string
}

var (
	refOnce sync.Once
	ref     reference
)

func startReference(t testing.TB) reference {
	refOnce.Do(func() {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				gob.NewEncoder(w).Encode(observed{
					Method: r.Method, Target: r.RequestURI, Proto: r.Proto, Host: r.Host, Header: r.Header,
					ContentLength: r.ContentLength, Chunked: slices.Equal(r.TransferEncoding, []string{"chunked"}),
				})
			}),
			ErrorLog: log.New(io.Discard, "", 0),
		}
		go srv.Serve(ln) // lives as long as the test binary
		ref = reference{addr: ln.Addr().String()}
	})
	return ref
}

// serve sends in to Go's server and reports whether it accepted a request
// and what its handler saw of it: nothing for "OPTIONS *", which the
// server answers itself.
func (r reference) serve(t testing.TB, in []byte) (bool, *observed) {
	c, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	go func() {
		c.Write(in)
		c.(*net.TCPConn).CloseWrite()
	}()
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return false, nil // closed without an answer: no whole request
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return false, nil
	}
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading the reference's answer: %v", err)
	}
	if len(body) == 0 {
		return true, nil
	}
	var o observed
	if err := gob.NewDecoder(bytes.NewReader(body)).Decode(&o); err != nil {
		t.Fatalf("reading the reference's answer: %v", err)
	}
	return true, &o
}

// FuzzRequestHead holds the head reader against Go's net/http server: for
// any bytes, when one accepts a request head the other does too, and both
// see the same request line, header fields and framing. The one
// exception is a refusal marked BeyondGo, and then the input must show
// the very thing the rule is about.
func FuzzRequestHead(f *testing.F) {
	for _, s := range seedHeads {
		f.Add([]byte(s))
	}
	r := startReference(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 8<<10 {
			return
		}
		var h Head
		n, err := End(in)
		if err == nil && n > 0 {
			err = h.ReadRequest(in[:n])
		}
		accepted := err == nil && n > 0
		theyAccepted, theirs := r.serve(t, in)
		switch {
		case accepted && !theyAccepted:
			t.Fatalf("accepted what Go's server refused:\n%q", in)
		case !accepted && theyAccepted:
			var e *Error
			if !errorsAs(err, &e) || !e.BeyondGo {
				t.Fatalf("refused (%v) what Go's server accepted:\n%q", err, in)
			}
			if !shows(e, in) {
				t.Fatalf("refused with %q, but the input does not show it:\n%q", e.Reason, in)
			}
		case accepted && theirs != nil:
			if diff := compare(&h, theirs); diff != "" {
				t.Fatalf("read differently from Go's server: %s\n%q", diff, in)
			}
		}
	})
}

func errorsAs(err error, e **Error) bool {
	v, ok := err.(*Error)
	*e = v
	return ok
}

// shows reports whether in has the feature a BeyondGo refusal is about,
// judged by plain string tests rather than the reader itself.
func shows(e *Error, in []byte) bool {
	lower := bytes.ToLower(in)
	switch e {
	case ErrBareLF:
		return bytes.IndexByte(in, '\n') == 0 || bytes.Count(in, []byte("\n")) != bytes.Count(in, []byte("\r\n"))
	case ErrObsFold:
		return bytes.Contains(in, []byte("\r\n ")) || bytes.Contains(in, []byte("\r\n\t"))
	case ErrConnect:
		return bytes.HasPrefix(in, []byte("CONNECT "))
	case ErrPreface:
		return bytes.HasPrefix(in, []byte("PRI * HTTP/2.0\r\n"))
	case ErrRepeatedLength:
		return bytes.Count(lower, []byte("\ncontent-length:")) > 1
	case ErrLengthAndChunked:
		return bytes.Contains(lower, []byte("\ncontent-length:")) && bytes.Contains(lower, []byte("\ntransfer-encoding:"))
	case ErrEncodingHTTP10:
		return bytes.Contains(in, []byte(" HTTP/1.0\r\n")) && bytes.Contains(lower, []byte("\ntransfer-encoding:"))
	}
	return false
}

// compare says how Go's reading of a request differs from h's, or "".
func compare(h *Head, o *observed) string {
	if got := string(h.Method()) + " " + string(h.Target()) + " " + string(h.Proto()); got != o.Method+" "+o.Target+" "+o.Proto {
		return "request line " + got + " against " + o.Method + " " + o.Target + " " + o.Proto
	}
	ours := http.Header{}
	for i := range h.Len() {
		name := textproto.CanonicalMIMEHeaderKey(string(h.Name(i)))
		if name == "Host" || name == "Transfer-Encoding" {
			continue
		}
		ours[name] = append(ours[name], string(h.Value(i)))
	}
	// Go's server adds Cache-Control: no-cache for an HTTP/1.0 cache's
	// Pragma (fixPragmaCacheControl); it is not a reading difference.
	if len(ours["Pragma"]) > 0 && ours["Pragma"][0] == "no-cache" && ours["Cache-Control"] == nil {
		ours["Cache-Control"] = []string{"no-cache"}
	}
	if len(ours) != len(o.Header) {
		return "header sets differ"
	}
	for k, vs := range ours {
		if !slices.Equal(vs, o.Header[k]) {
			return "header " + k + ": " + strings.Join(vs, "|") + " against " + strings.Join(o.Header[k], "|")
		}
	}
	if !strings.Contains(string(h.Target()), "://") && h.Get("Host") != o.Host {
		return "Host " + h.Get("Host") + " against " + o.Host
	}
	length := max(h.ContentLength, 0)
	if h.Chunked {
		length = -1
	}
	if length != o.ContentLength || h.Chunked != o.Chunked {
		return "framing differs"
	}
	return ""
}

// FuzzStream holds the framing of a stream of requests against Go's:
// Stream must end each message exactly where http.ReadRequest and its
// body reader do, so that no bytes a front end took for a body are read
// as a request here, and none read as a request here hide in a body for
// the backend. Where Stream stops early the reason must be a refusal (a
// server's check or a BeyondGo rule); it never reads on past Go.
func FuzzStream(f *testing.F) {
	for _, s := range seedHeads {
		f.Add([]byte(s))
	}
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhiGET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0;a=\x01\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 16<<10 {
			return
		}
		theirs := goBoundaries(in)
		ours, err := streamBoundaries(in)
		k := 0
		for ; k < len(ours) && k < len(theirs); k++ {
			if ours[k] != theirs[k] {
				t.Fatalf("message %d ends at %d here and at %d for Go:\n%q", k, ours[k], theirs[k], in)
			}
		}
		if len(ours) > len(theirs) {
			t.Fatalf("read %d messages where Go read %d:\n%q", len(ours), len(theirs), in)
		}
		if len(ours) < len(theirs) && err == nil {
			t.Fatalf("stopped after %d messages without a refusal where Go read %d:\n%q", len(ours), len(theirs), in)
		}
	})
}

// streamBoundaries runs a Stream over in and returns the offset where
// each whole message ended, and the refusal that stopped it, if any. A
// stream held after an upgrade request ends the list.
func streamBoundaries(in []byte) ([]int, error) {
	var s Stream
	var ends []int
	off := 0
	for off < len(in) {
		n, err := s.Next(in[off:])
		if err != nil {
			return ends, err
		}
		if n == 0 {
			return ends, nil
		}
		off += n
		if s.state == inHead {
			ends = append(ends, off)
		}
		if s.state == held {
			return ends, errHeld
		}
	}
	return ends, nil
}

var errHeld = &Error{Reason: "held after an upgrade request"}

// goBoundaries reads in as a sequence of requests with http.ReadRequest,
// each body to its end, and returns where each whole message ended.
func goBoundaries(in []byte) []int {
	br := bufio.NewReaderSize(bytes.NewReader(in), 64<<10)
	var ends []int
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return ends
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return ends
		}
		ends = append(ends, len(in)-br.Buffered())
	}
}
