package proxy

import (
	"bytes"
	"errors"
	"strconv"
)

// maxHeadLines bounds the header lines of a head the event loop parses; a
// request with more goes to the HTTP server, which answers it properly.
const maxHeadLines = 64

var (
	errHeadMalformed = errors.New("malformed HTTP head")
	errHeadTooMany   = errors.New("too many header lines")
)

// head is an HTTP/1.1 request or response head parsed in place: every
// field is a slice of the bytes it was parsed from, nothing is copied. It
// lets the event loop take a WebSocket handshake through without building
// an http.Request.
type head struct {
	raw   []byte // the head, through its blank line
	first [3][]byte
	lines [maxHeadLines]headLine
	n     int
}

// headLine is one header line as offsets into head.raw, so that a head of
// 64 lines costs well under a kilobyte.
type headLine struct {
	start, colon, vstart, vend, end uint16
}

func (h *head) line(i int) []byte  { l := h.lines[i]; return h.raw[l.start:l.end] }
func (h *head) name(i int) []byte  { l := h.lines[i]; return h.raw[l.start:l.colon] }
func (h *head) value(i int) []byte { l := h.lines[i]; return h.raw[l.vstart:l.vend] }

// headEnd returns the length of the head at the start of b (through the
// blank line), or 0 when b does not hold all of it yet.
func headEnd(b []byte) int {
	i := bytes.Index(b, []byte("\r\n\r\n"))
	if i < 0 {
		return 0
	}
	return i + 4
}

// parse reads the head in b[:n], n from headEnd. Heads are at most 64 KiB.
func (h *head) parse(b []byte) error {
	if len(b) > 0xffff {
		return errHeadTooMany
	}
	h.raw, h.n = b, 0
	lines := b[:len(b)-4] // without the final blank line
	i := bytes.Index(lines, []byte("\r\n"))
	first := lines
	rest := []byte(nil)
	if i >= 0 {
		first, rest = lines[:i], lines[i+2:]
	}
	sp1 := bytes.IndexByte(first, ' ')
	if sp1 <= 0 {
		return errHeadMalformed
	}
	sp2 := bytes.IndexByte(first[sp1+1:], ' ')
	if sp2 < 0 {
		// "HTTP/1.1 101" with no reason phrase is allowed in a response.
		h.first = [3][]byte{first[:sp1], first[sp1+1:], nil}
	} else {
		h.first = [3][]byte{first[:sp1], first[sp1+1 : sp1+1+sp2], first[sp1+2+sp2:]}
	}
	off := len(first) + 2 // where rest starts in b
	for len(rest) > 0 {
		line := rest
		if j := bytes.Index(rest, []byte("\r\n")); j >= 0 {
			line, rest = rest[:j], rest[j+2:]
		} else {
			rest = nil
		}
		if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
			return errHeadMalformed // obsolete line folding (RFC 9112 section 5.2)
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || bytes.ContainsAny(line[:colon], " \t") {
			return errHeadMalformed
		}
		if h.n == maxHeadLines {
			return errHeadTooMany
		}
		vstart, vend := colon+1, len(line)
		for vstart < vend && (line[vstart] == ' ' || line[vstart] == '\t') {
			vstart++
		}
		for vend > vstart && (line[vend-1] == ' ' || line[vend-1] == '\t') {
			vend--
		}
		h.lines[h.n] = headLine{start: uint16(off), colon: uint16(off + colon),
			vstart: uint16(off + vstart), vend: uint16(off + vend), end: uint16(off + len(line))}
		h.n++
		off += len(line) + 2
	}
	return nil
}

// get returns the first value of the named header, or nil.
func (h *head) get(name string) []byte {
	for i := range h.n {
		if equalFold(h.name(i), name) {
			return h.value(i)
		}
	}
	return nil
}

// count returns how many lines carry the named header.
func (h *head) count(name string) int {
	n := 0
	for i := range h.n {
		if equalFold(h.name(i), name) {
			n++
		}
	}
	return n
}

// hasToken reports whether the comma-separated lists of the named header
// hold token, case-insensitively.
func (h *head) hasToken(name, token string) bool {
	for i := range h.n {
		if !equalFold(h.name(i), name) {
			continue
		}
		for v := range bytes.SplitSeq(h.value(i), []byte(",")) {
			if equalFold(bytes.TrimSpace(v), token) {
				return true
			}
		}
	}
	return false
}

// Values returns the values of the named header's lines, as
// http.Header.Values does; nil when there are none, which costs nothing.
func (h *head) Values(name string) []string {
	var out []string
	for i := range h.n {
		if equalFold(h.name(i), name) {
			out = append(out, string(h.value(i)))
		}
	}
	return out
}

// Get returns the first value of the named header, or "".
func (h *head) Get(name string) string { return string(h.get(name)) }

// status returns a response head's status code, or 0 when it has none.
func (h *head) status() int {
	if !bytes.HasPrefix(h.first[0], []byte("HTTP/1.")) {
		return 0
	}
	code, err := strconv.Atoi(string(h.first[1]))
	if err != nil || code < 100 || code > 999 {
		return 0
	}
	return code
}

// equalFold reports whether b equals s, ignoring ASCII case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
