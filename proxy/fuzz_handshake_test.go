package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/wsedge/wsedge/affinity"
)

// handshakeStatuses are the answers a request head may get: for heads that
// do not parse or come too slowly (400, 408, 413, 417, 431, 501, 505),
// from the proxy's checks (400, 403, 405, 426, 429, 503), from the backend
// or for it (502, 504), and the backend's own (100 Continue, 101, 200).
var handshakeStatuses = map[int]bool{
	100: true, 101: true, 200: true,
	400: true, 403: true, 405: true, 408: true, 413: true, 417: true, 426: true, 429: true, 431: true,
	501: true, 502: true, 503: true, 504: true, 505: true,
}

// FuzzHandshake sends arbitrary request heads to the proxy in each
// affinity mode (mode%3), through the event loops' own handshake or, with
// mode%6 >= 3, through the HTTP server's: each gets a status line with a
// status from a known set, or, when it does not even parse as HTTP,
// possibly a closed connection; never a hang or a panic. An upgrade that
// is answered 101 is relayed and logged once when the client hangs up.
func FuzzHandshake(f *testing.F) {
	upgrade := "GET /chat?room=1 HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + fuzzKey + "\r\n"
	for _, seed := range []struct {
		head string
		mode uint8
	}{
		{upgrade + "\r\n", 0},
		{upgrade + "X-Forwarded-For: 203.0.113.7, 198.51.100.1\r\n\r\n", 0},
		{upgrade + "Forwarded: for=\"[2001:db8::1]:4711\";proto=https, for=192.0.2.60\r\n\r\n", 0},
		{upgrade + "Cookie: wsedge_route=v1.0123456789abcdef; other=1\r\n\r\n", 1},
		{upgrade + "X-Session-ID: user-42\r\n\r\n", 2},
		{"GET /socket.io/?EIO=4&transport=polling&sid=abc HTTP/1.1\r\nHost: app.test\r\n\r\n", 1},
		{"POST /submit HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhello", 0},
		{strings.Replace(upgrade, "Version: 13", "Version: 8", 1) + "\r\n", 0},
		{strings.Replace(upgrade, "GET", "PUT", 1) + "\r\n", 0},
		{strings.Replace(upgrade, "HTTP/1.1", "HTTP/1.0", 1) + "\r\n", 0},
		{upgrade + "Sec-WebSocket-Key: " + fuzzKey + "\r\n\r\n", 0},
		{upgrade + "Origin: https://evil.test\r\n\r\n", 0},
		{"GET http://app.test/abs HTTP/1.1\r\nHost: other.test\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + fuzzKey + "\r\n\r\n", 2},
		{"OPTIONS * HTTP/1.1\r\nHost: app.test\r\n\r\n", 0},
		{"GET / HTTP/1.1\r\nHost: app.test\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc", 0},
		{"GET / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: gzip\r\n\r\n", 0},
		{"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 0},
	} {
		f.Add([]byte(seed.head), seed.mode)
	}

	hb := startHandshakeBackend(f)
	var servers []*fuzzServer
	for _, ring := range []bool{true, false} {
		for _, cfg := range []Config{
			{Key: KeyIP, Trusted: affinity.NewTrustedProxies([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}),
				AllowedOrigins: []string{"https://app.test"}, MaxConnectionsPerIP: 1000},
			{Key: KeyCookie},
			{Key: KeyHeader, Header: "X-Session-ID"},
		} {
			cfg.HandshakeTimeout = 2 * time.Second
			servers = append(servers, startFuzzServer(f, cfg, []string{hb.addr}, ring))
		}
	}
	f.Fuzz(func(t *testing.T, head []byte, mode uint8) {
		fs := servers[int(mode)%len(servers)]
		if !bytes.Contains(head, []byte("\r\n\r\n")) {
			head = append(bytes.Clone(head), "\r\n\r\n"...)
		}
		_, parseErr := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		status, err := statusOf(fs.addr, head)
		fs.settle(t, upgrades(status))
		switch {
		case errors.Is(err, errNoAnswer) && parseErr != nil:
			// Not HTTP at all: dropping the connection is a clear answer.
		case err != nil:
			t.Fatalf("head %q: %v", clip(head), err)
		case !handshakeStatuses[status]:
			t.Fatalf("head %q: status %d, not one the proxy gives", head, status)
		}
	})
}
