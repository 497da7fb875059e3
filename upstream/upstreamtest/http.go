package upstreamtest

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	// sseInterval is the time between two /sse events.
	sseInterval = 50 * time.Millisecond
	// sseCount is how many events /sse sends without ?count=.
	sseCount = 5
	// slowDelay is how long /slow waits without ?delay=.
	slowDelay = time.Second
	// echoChunk is the most /echo reads before writing it back and flushing.
	echoChunk = 32 << 10
)

// seenHeaders copies the forwarding headers of r into h under X-Seen-
// names, so a test can check what the proxy told the backend about the
// client.
func seenHeaders(h http.Header, r *http.Request) {
	seen := [...]struct{ request, response string }{
		{"X-Forwarded-For", "X-Seen-Forwarded-For"},
		{"X-Real-IP", "X-Seen-Real-IP"},
		{"X-Forwarded-Proto", "X-Seen-Forwarded-Proto"},
		{"Forwarded", "X-Seen-Forwarded"},
	}
	for _, s := range seen {
		if vs := r.Header.Values(s.request); len(vs) > 0 {
			h[http.CanonicalHeaderKey(s.response)] = append([]string(nil), vs...)
		}
	}
}

// addHeaders adds the backend's own headers to h.
func (b *Backend) addHeaders(h http.Header) {
	for k, vs := range b.opts.header {
		h[k] = append(h[k], vs...)
	}
	h.Set("X-Backend", b.Name)
}

// serveHTTP answers a plain HTTP request. Every response carries X-Backend
// and the X-Seen- headers; the paths below behave specially, any other path
// and method gets 200 with the backend's name as body.
//
//	/echo            the request body streamed back as it arrives
//	/sse?count=N     N server-sent events "data: 1" ... "data: N" (default
//	                 5), the first at once and then one every 50ms
//	/status/CODE     status CODE (200-599)
//	/slow?delay=D    the default answer after D (default 1s)
//	/healthz         503 after SetHealthy(false), else the default answer
func (b *Backend) serveHTTP(w http.ResponseWriter, r *http.Request) {
	b.recordRequest(r)
	b.addHeaders(w.Header())
	seenHeaders(w.Header(), r)
	switch path := r.URL.Path; {
	case path == "/echo":
		serveEcho(w, r)
	case path == "/sse":
		serveEvents(w, r)
	case strings.HasPrefix(path, "/status/"):
		serveStatus(w, strings.TrimPrefix(path, "/status/"))
	case path == "/slow":
		b.serveSlow(w, r)
	case path == healthPath && b.unhealthy.Load():
		serveStatus(w, strconv.Itoa(http.StatusServiceUnavailable))
	default:
		b.serveName(w)
	}
}

func (b *Backend) serveName(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, b.Name)
}

// serveEcho writes the request body back as it arrives, flushing after each
// read, so a client can read the start of its echo before it has sent the
// rest, as a long-polling transport would.
func serveEcho(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	// HTTP/1 servers otherwise stop reading a request body once the
	// response has begun.
	if err := rc.EnableFullDuplex(); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(http.StatusOK)
	if rc.Flush() != nil {
		return
	}
	buf := make([]byte, echoChunk)
	for {
		n, err := r.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		}
		if err != nil { // io.EOF at the end of the body
			return
		}
	}
}

// serveEvents sends numbered server-sent events, flushing each one.
func serveEvents(w http.ResponseWriter, r *http.Request) {
	count := sseCount
	if s := r.URL.Query().Get("count"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			http.Error(w, "count must be a number >= 0", http.StatusBadRequest)
			return
		}
		count = n
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	if rc.Flush() != nil {
		return
	}
	tick := time.NewTicker(sseInterval)
	defer tick.Stop()
	for i := 1; i <= count; i++ {
		if i > 1 {
			select {
			case <-tick.C:
			case <-r.Context().Done():
				return
			}
		}
		if _, err := fmt.Fprintf(w, "data: %d\n\n", i); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
	}
}

func serveStatus(w http.ResponseWriter, s string) {
	code, err := strconv.Atoi(s)
	if err != nil || code < 200 || code > 599 {
		http.Error(w, "status must be 200-599", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, http.StatusText(code)) // refused for 204 and 304, as it should be
}

// serveSlow answers as the default path does, after ?delay.
func (b *Backend) serveSlow(w http.ResponseWriter, r *http.Request) {
	d := slowDelay
	if s := r.URL.Query().Get("delay"); s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d < 0 {
			http.Error(w, "delay must be a duration >= 0", http.StatusBadRequest)
			return
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		return
	}
	b.serveName(w)
}
