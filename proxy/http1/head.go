package http1

import (
	"bytes"
	"math"
	"net/url"
	"strconv"

	"golang.org/x/net/http/httpguts"
)

// MaxHeadSize is the longest head a Head can hold: field positions are
// kept as 16-bit offsets, so that a head of 64 fields costs well under a
// kilobyte.
const MaxHeadSize = 0xffff

// inlineFields is how many fields a Head holds without allocating.
const inlineFields = 64

// Head is an HTTP/1.1 request or response head read in place: every part
// is a slice of the bytes it was read from, nothing is copied, and the
// Head is valid as long as those bytes are. The zero value is ready for
// ReadRequest or ReadResponse. A Head is not safe for concurrent use.
type Head struct {
	raw    []byte // the head, through its blank line
	first  [3][]byte
	status int
	fields []field // fields of raw, in order; backed by inline up to 64
	inline [inlineFields]field

	// ContentLength is the request's Content-Length, or -1 when it has
	// none. Chunked reports Transfer-Encoding: chunked. At most one of the
	// two is set on a request ReadRequest accepted.
	ContentLength int64
	Chunked       bool
}

// field is one header line as offsets into Head.raw.
type field struct {
	start, colon, vstart, vend, end uint16
}

// Len returns the number of header fields.
func (h *Head) Len() int { return len(h.fields) }

// Line returns field i's line as it came, without its CRLF.
func (h *Head) Line(i int) []byte { f := h.fields[i]; return h.raw[f.start:f.end] }

// Name returns field i's name.
func (h *Head) Name(i int) []byte { f := h.fields[i]; return h.raw[f.start:f.colon] }

// Value returns field i's value without surrounding white space.
func (h *Head) Value(i int) []byte { f := h.fields[i]; return h.raw[f.vstart:f.vend] }

// Raw returns the whole head, through its blank line.
func (h *Head) Raw() []byte { return h.raw }

// RequestLine returns the request line, or the status line of a
// response, with its CRLF.
func (h *Head) RequestLine() []byte { return h.raw[:bytes.IndexByte(h.raw, '\n')+1] }

// Method returns a request's method.
func (h *Head) Method() []byte { return h.first[0] }

// Target returns a request's target: its path and query, as sent.
func (h *Head) Target() []byte { return h.first[1] }

// Proto returns the HTTP version, "HTTP/1.1" or "HTTP/1.0".
func (h *Head) Proto() []byte { return h.first[2] }

// Status returns a response's status code.
func (h *Head) Status() int { return h.status }

// End returns the length of the head at the start of b, through its blank
// line, or 0 when b does not hold all of it yet. A line ended by LF alone
// is refused as soon as it is seen, whole head or not.
func End(b []byte) (int, error) {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return 0, nil
		}
		i += j
		if i == 0 || b[i-1] != '\r' {
			return 0, ErrBareLF
		}
		if i >= 3 && b[i-2] == '\n' && b[i-3] == '\r' {
			return i + 1, nil
		}
		i++
	}
}

// ReadRequest reads the request head b, exactly as long as End said, and
// checks it. On error the Head holds nothing usable.
func (h *Head) ReadRequest(b []byte) error {
	rest, err := h.start(b)
	if err != nil {
		return err
	}
	line := b[:len(b)-len(rest)-2]
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 < 0 {
		return ErrRequestLine
	}
	sp2 := bytes.IndexByte(line[sp1+1:], ' ')
	if sp2 < 0 {
		return ErrRequestLine
	}
	h.first = [3][]byte{line[:sp1], line[sp1+1 : sp1+1+sp2], line[sp1+2+sp2:]}
	if err := h.checkRequestLine(); err != nil {
		return err
	}
	if err := h.readFields(rest); err != nil {
		return err
	}
	return h.checkRequest()
}

// ReadResponse reads the response head b, exactly as long as End said.
// The status line must be "HTTP/1.x DDD", a reason phrase optional.
func (h *Head) ReadResponse(b []byte) error {
	rest, err := h.start(b)
	if err != nil {
		return err
	}
	line := b[:len(b)-len(rest)-2]
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || !isDigit(line[7]) || line[8] != ' ' ||
		len(line) > 12 && line[12] != ' ' {
		return ErrStatusLine
	}
	code, err := strconv.Atoi(string(line[9:12]))
	if err != nil || code < 100 {
		return ErrStatusLine
	}
	for _, c := range line[min(len(line), 13):] {
		if !isValueByte(c) {
			return ErrStatusLine
		}
	}
	h.first = [3][]byte{line[:8], line[9:12], line[min(len(line), 13):]}
	h.status = code
	return h.readFields(rest)
}

// start resets h for the head b and returns what follows the first line.
func (h *Head) start(b []byte) ([]byte, error) {
	*h = Head{raw: b, ContentLength: -1}
	h.fields = h.inline[:0]
	if len(b) > MaxHeadSize {
		return nil, ErrTooLarge
	}
	i := bytes.IndexByte(b, '\n')
	if i < 1 || b[i-1] != '\r' {
		return nil, ErrBareLF
	}
	if bytes.IndexByte(b[:i-1], '\r') >= 0 {
		return nil, ErrBareCR
	}
	return b[i+1:], nil
}

// checkRequestLine applies RFC 9112 section 3 as Go's server reads it: a
// token for the method, a target its URL parser takes, and HTTP/1.x.
func (h *Head) checkRequestLine() error {
	method, target, proto := h.first[0], h.first[1], h.first[2]
	if len(method) == 0 || !isToken(method) || len(target) == 0 {
		return ErrRequestLine
	}
	if len(proto) != 8 || !bytes.HasPrefix(proto, []byte("HTTP/")) || !isDigit(proto[5]) || proto[6] != '.' || !isDigit(proto[7]) {
		return ErrRequestLine
	}
	for _, c := range target {
		if c <= ' ' || c == 0x7f {
			return ErrTarget
		}
	}
	if proto[5] != '1' {
		if string(method) == "PRI" && string(target) == "*" && string(proto) == "HTTP/2.0" {
			return ErrPreface
		}
		return ErrVersion
	}
	if string(method) == "CONNECT" {
		return ErrConnect
	}
	if !simplePath(target) {
		if _, err := url.ParseRequestURI(string(target)); err != nil {
			return ErrTarget
		}
	}
	return nil
}

// simplePath reports whether target is a path (and query) that Go's URL
// parser takes for sure: it starts with a slash and escapes nothing. It
// spares the parser's allocations for the requests nearly every client
// sends.
func simplePath(target []byte) bool {
	if target[0] != '/' {
		return false
	}
	if q := bytes.IndexByte(target, '?'); q >= 0 {
		target = target[:q]
	}
	return bytes.IndexByte(target, '%') < 0
}

// readFields reads the header lines of b up to the blank line that ends it.
func (h *Head) readFields(b []byte) error {
	off := len(h.raw) - len(b)
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 1 || b[i-1] != '\r' {
			return ErrBareLF
		}
		line := b[:i-1]
		if len(line) == 0 {
			return nil // the blank line: End put it last
		}
		if bytes.IndexByte(line, '\r') >= 0 {
			return ErrBareCR
		}
		if line[0] == ' ' || line[0] == '\t' {
			return ErrObsFold
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) {
			return ErrFieldName
		}
		vstart, vend := colon+1, len(line)
		for vstart < vend && (line[vstart] == ' ' || line[vstart] == '\t') {
			vstart++
		}
		for vend > vstart && (line[vend-1] == ' ' || line[vend-1] == '\t') {
			vend--
		}
		for _, c := range line[vstart:vend] {
			if !isValueByte(c) {
				return ErrFieldValue
			}
		}
		h.fields = append(h.fields, field{start: uint16(off), colon: uint16(off + colon),
			vstart: uint16(off + vstart), vend: uint16(off + vend), end: uint16(off + len(line))})
		off += i + 1
		b = b[i+1:]
	}
}

// checkRequest applies the rules that concern fields together: Host,
// the body's framing and Expect.
func (h *Head) checkRequest() error {
	http10 := h.first[2][7] == '0'
	hosts, lengths, encodings := 0, 0, 0
	var host, length, encoding, expect []byte
	for i := range h.fields {
		name := h.Name(i)
		switch {
		case equalFold(name, "Host"):
			hosts++
			host = h.Value(i)
		case equalFold(name, "Content-Length"):
			if lengths > 0 && !bytes.Equal(length, h.Value(i)) {
				return ErrContentLength
			}
			lengths++
			length = h.Value(i)
		case equalFold(name, "Transfer-Encoding"):
			encodings++
			encoding = h.Value(i)
		case equalFold(name, "Expect") && expect == nil:
			expect = h.Value(i)
		}
	}
	switch {
	case hosts > 1, hosts == 0 && !http10, hosts == 1 && !httpguts.ValidHostHeader(string(host)):
		return ErrHost
	}
	if lengths > 0 {
		n, ok := parseLength(length)
		if !ok {
			return ErrContentLength
		}
		if lengths > 1 {
			return ErrRepeatedLength
		}
		h.ContentLength = n
	}
	if encodings > 0 {
		switch {
		case http10:
			return ErrEncodingHTTP10
		case encodings > 1 || !equalFold(encoding, "chunked"):
			return ErrTransferEncoding
		case lengths > 0:
			return ErrLengthAndChunked
		}
		h.Chunked = true
	}
	if len(expect) > 0 && !hasToken(expect, "100-continue") {
		return ErrExpect
	}
	return nil
}

// parseLength reads a Content-Length as Go does: decimal digits, leading
// zeros allowed, at most 2^63-1.
func parseLength(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// Field returns the value of the first field named name, or nil.
func (h *Head) Field(name string) []byte {
	for i := range h.fields {
		if equalFold(h.Name(i), name) {
			return h.Value(i)
		}
	}
	return nil
}

// Count returns how many fields are named name.
func (h *Head) Count(name string) int {
	n := 0
	for i := range h.fields {
		if equalFold(h.Name(i), name) {
			n++
		}
	}
	return n
}

// HasToken reports whether the comma-separated lists of the fields named
// name hold token, case-insensitively (as in Connection: keep-alive, Upgrade).
func (h *Head) HasToken(name, token string) bool {
	for i := range h.fields {
		if !equalFold(h.Name(i), name) {
			continue
		}
		for v := range bytes.SplitSeq(h.Value(i), []byte(",")) {
			if equalFold(bytes.TrimSpace(v), token) {
				return true
			}
		}
	}
	return false
}

// Values returns the values of the fields named name, as http.Header's
// Values does; nil, at no cost, when there are none.
func (h *Head) Values(name string) []string {
	var out []string
	for i := range h.fields {
		if equalFold(h.Name(i), name) {
			out = append(out, string(h.Value(i)))
		}
	}
	return out
}

// Get returns the value of the first field named name, or "", as
// http.Header's Get does.
func (h *Head) Get(name string) string { return string(h.Field(name)) }

// IsWebSocketUpgrade reports whether a request head asks to switch to
// WebSocket (RFC 6455 section 4.1): Connection lists upgrade and Upgrade
// lists websocket.
func (h *Head) IsWebSocketUpgrade() bool {
	return h.HasToken("Connection", "upgrade") && h.HasToken("Upgrade", "websocket")
}
