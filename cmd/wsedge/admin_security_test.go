package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

// adminPost sends a POST to url with header h and body, on a connection of
// its own, and returns the status and the answer's body. A non-empty host
// replaces the Host header, as a browser fooled by DNS rebinding sends it.
func adminPost(t *testing.T, url, host string, h http.Header, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h
	if host != "" {
		req.Host = host
	}
	req.Close = true
	c := http.Client{Timeout: 5 * time.Second}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	return res.StatusCode, string(b)
}

// writeToken writes token to path, as an operator rotating it would.
func writeToken(t *testing.T, path, token string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func bearer(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }

// A web page the operator visits can send a form POST, or a fetch in
// no-cors mode, to the admin listener on 127.0.0.1. Neither drains
// anything: the backend stays in the ring and its WebSocket stays open.
// The operator's own request, with the header, still drains it.
func TestAdminCrossSiteDrainRefused(t *testing.T) {
	b := upstreamtest.Start(t)
	p := startWsedge(t, upstreams(b))
	live, _ := wsDial(t, p, "/", nil)
	askName(t, live)
	drain := "http://" + p.admin + "/debug/drain?backend=" + b.Addr + "&rate=1000"
	_, port, _ := net.SplitHostPort(p.admin)

	attacks := []struct {
		name string
		host string
		give http.Header
		body string
	}{
		{name: "form POST", body: "x=1", give: http.Header{
			"Content-Type": {"application/x-www-form-urlencoded"}, "Origin": {"http://evil.example"},
			"Sec-Fetch-Site": {"cross-site"}, "Sec-Fetch-Mode": {"navigate"},
		}},
		{name: "no-cors fetch", body: "{}", give: http.Header{
			"Content-Type": {"text/plain;charset=UTF-8"}, "Origin": {"http://evil.example"},
			"Sec-Fetch-Site": {"cross-site"}, "Sec-Fetch-Mode": {"no-cors"},
		}},
		{name: "header from a foreign origin", give: http.Header{"X-Wsedge-Admin": {"1"}, "Origin": {"http://evil.example"}}},
		{name: "DNS rebinding", host: "evil.example:" + port, give: http.Header{
			"X-Wsedge-Admin": {"1"}, "Origin": {"http://evil.example:" + port}, "Sec-Fetch-Site": {"same-origin"},
		}},
	}
	for _, tt := range attacks {
		if code, body := adminPost(t, drain, tt.host, tt.give, tt.body); code != http.StatusForbidden {
			t.Errorf("%s: %d %q, want 403", tt.name, code, body)
		}
	}
	if _, body := adminPost(t, drain, "", attacks[0].give, "x=1"); !strings.Contains(body, "X-Wsedge-Admin") {
		t.Errorf("refusal %q does not say which header is needed", body)
	}

	if got := ringOf(t, p); len(got) != 1 || got[0] != b.Addr {
		t.Fatalf("ring after cross-site POSTs: %v, want %s still in it", got, b.Addr)
	}
	time.Sleep(300 * time.Millisecond) // a drain at 1000/s would have closed it by now
	if askName(t, live) != b.Name {
		t.Fatal("the live WebSocket stopped relaying")
	}

	code, body := adminPost(t, drain, "", http.Header{"X-Wsedge-Admin": {"1"}}, "")
	if code != http.StatusOK {
		t.Fatalf("the operator's drain: %d %q", code, body)
	}
	if got := closeCodeOf(t, live, 5*time.Second); got != 1012 {
		t.Fatalf("drained connection closed with %d, want 1012", got)
	}
}

// With admin_token_file, everything on the admin listener but /healthz and
// /readyz wants the token. SIGHUP reads the file again: the new token works
// and the old one no longer does; a file too short fails the reload and
// keeps the token in force. serve and check refuse such a file at once.
func TestAdminToken(t *testing.T) {
	b := upstreamtest.Start(t)
	dir := t.TempDir()
	tokenPath := filepath.Join(dir, "admin.token")
	const first, second = "first-token-0123456789", "second-token-0123456789"
	writeToken(t, tokenPath, first)
	cfg := fmt.Sprintf("admin_token_file = %q\n%s", tokenPath, upstreams(b))
	p := startWsedge(t, cfg)
	admin := "http://" + p.admin

	guarded := []string{"/debug/ring", "/debug/connections", "/metrics", "/debug/pprof/"}
	expect := func(token string, want int) {
		t.Helper()
		var h http.Header
		if token != "" {
			h = bearer(token)
		}
		for _, path := range guarded {
			res := httpDo(t, admin+path, h)
			res.Body.Close()
			if res.StatusCode != want {
				t.Errorf("GET %s with token %q: %d, want %d", path, token, res.StatusCode, want)
			}
			if res.StatusCode == http.StatusUnauthorized && !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("GET %s: 401 without WWW-Authenticate: Bearer", path)
			}
		}
	}
	expect("", http.StatusUnauthorized)
	expect("wrong-token-0123456789", http.StatusUnauthorized)
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := adminGet(t, p, path); code != http.StatusOK {
			t.Errorf("GET %s without token: %d %q, want 200", path, code, body)
		}
	}
	expect(first, http.StatusOK)
	drain := admin + "/debug/drain?backend=" + b.Addr
	if code, _ := adminPost(t, drain, "", http.Header{"X-Wsedge-Admin": {"1"}}, ""); code != http.StatusUnauthorized {
		t.Errorf("POST /debug/drain with the header but no token: %d, want 401", code)
	}

	writeToken(t, tokenPath, second)
	p.signal(t, syscall.SIGHUP)
	p.logs.wait(t, "config reloaded", 5*time.Second)
	expect(first, http.StatusUnauthorized)
	expect(second, http.StatusOK)

	// wsedge route asks the running proxy with the token its config names.
	routeCfg := filepath.Join(dir, "route.toml")
	if err := os.WriteFile(routeCfg, []byte(fmt.Sprintf("listen = %q\nadmin_listen = %q\nadmin_token_file = %q\n%s",
		p.listen, p.admin, tokenPath, upstreams(b))), 0o644); err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer rcancel()
	if out, err := exec.CommandContext(rctx, binary, "route", "--config", routeCfg, "127.0.0.1").CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "from the running proxy at "+p.admin) {
		t.Errorf("wsedge route with the token file: %v, %q; want the running proxy's answer", err, out)
	}

	writeToken(t, tokenPath, "short")
	p.signal(t, syscall.SIGHUP)
	p.logs.wait(t, "config reload failed", 5*time.Second, tokenPath, "at least 16")
	expect(second, http.StatusOK)
	expect("short", http.StatusUnauthorized)

	// The same short file stops serve before it listens, and fails check.
	bad := filepath.Join(dir, "bad.toml")
	writeConfig(t, bad, cfg)
	sp := runWsedge(t, "serve", "--config", bad)
	t.Cleanup(func() { sp.stop(t) })
	if code := sp.waitExit(t, 10*time.Second); code == 0 || sp.logs.count(tokenPath, "at least 16") == 0 {
		t.Errorf("serve with a short token file: exit %d, log:\n%s", code, strings.Join(sp.logs.all(), "\n"))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "check", "--config", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), tokenPath) {
		t.Errorf("check with a short token file: %v, %q; want a failure naming %s", err, out, tokenPath)
	}
	writeToken(t, tokenPath, second)
	if out, err := exec.CommandContext(ctx, binary, "check", "--config", bad).CombinedOutput(); err != nil {
		t.Errorf("check with a good token file: %v, %q", err, out)
	}
}

// metricsAddr is the metrics address p logged when it started.
func metricsAddr(t *testing.T, p *proc) string {
	t.Helper()
	var fields struct{ Metrics string }
	if err := json.Unmarshal([]byte(p.logs.wait(t, `"msg":"listening"`, time.Second)), &fields); err != nil {
		t.Fatal(err)
	}
	if fields.Metrics == "" {
		t.Fatal("no metrics address in the listening line")
	}
	return fields.Metrics
}

// metrics_listen serves /metrics, without the admin token, and nothing
// else: not drain, not the profiler. A reload moves it or turns it off.
func TestMetricsListen(t *testing.T) {
	b := upstreamtest.Start(t)
	tokenPath := filepath.Join(t.TempDir(), "admin.token")
	writeToken(t, tokenPath, "the-admin-token-0123456789")
	cfg := fmt.Sprintf("admin_token_file = %q\n%s", tokenPath, upstreams(b))
	p := startWsedge(t, "metrics_listen = \"127.0.0.1:0\"\n"+cfg)
	addr := metricsAddr(t, p)

	serves := func(addr string) {
		t.Helper()
		code, body := httpGet(t, "http://"+addr+"/metrics", nil)
		if code != http.StatusOK || !strings.Contains(body, "wsedge_handshakes_total") {
			t.Fatalf("GET %s/metrics: %d %.80q, want the proxy's metrics", addr, code, body)
		}
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/ring", "/healthz"} {
			if code, _ := httpGet(t, "http://"+addr+path, bearer("the-admin-token-0123456789")); code != http.StatusNotFound {
				t.Errorf("GET %s%s: %d, want 404", addr, path, code)
			}
		}
		hdr := http.Header{"X-Wsedge-Admin": {"1"}, "Authorization": {"Bearer the-admin-token-0123456789"}}
		if code, _ := adminPost(t, "http://"+addr+"/debug/drain?backend="+b.Addr, "", hdr, ""); code != http.StatusNotFound {
			t.Errorf("POST %s/debug/drain: %d, want 404", addr, code)
		}
	}
	serves(addr)

	moved := freePort(t)
	writeConfig(t, p.cfgPath, fmt.Sprintf("metrics_listen = %q\n%s", moved, cfg))
	p.signal(t, syscall.SIGHUP)
	p.logs.wait(t, "config reloaded", 5*time.Second)
	serves(moved)
	refuses := func(addr string) {
		t.Helper()
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections", addr)
		}
	}
	refuses(addr)

	writeConfig(t, p.cfgPath, cfg)
	p.signal(t, syscall.SIGHUP)
	p.logs.wait(t, "metrics listener closed", 5*time.Second, moved)
	refuses(moved)
}
