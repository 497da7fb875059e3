package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"go.uber.org/zap"

	"github.com/wsedge/wsedge/proxy"
)

// A binary upgrade replaces the running proxy with a new binary without
// closing a WebSocket: the running process (the old one) starts the new
// binary with its own arguments, lends it its listening sockets, and hands
// it every connection it can move, over a Unix socket (upgrade_linux.go).
// `wsedge upgrade` and SIGUSR2 ask for one; the old process does it in
// its serve loop, one at a time, and exits once the new one has taken
// over and what could not move has ended.

// upgradeTimeout bounds how long `wsedge upgrade` waits for the answer:
// a new process's start, and the hand-over of every connection.
const upgradeTimeout = 2 * time.Minute

// upgradeRequest asks the serve loop for an upgrade.
type upgradeRequest struct {
	binary string             // the new binary; "" for this process's own path
	reply  chan upgradeAnswer // one slot; nil when nobody waits (SIGUSR2)
}

// upgradeAnswer is how an upgrade went. The requester closes written once
// the answer is out, so that the old process does not exit under it.
type upgradeAnswer struct {
	result  upgradeResult
	err     error
	written chan struct{}
}

// upgradeResult is what `wsedge upgrade` prints, as the admin endpoint
// answers it.
type upgradeResult struct {
	Result string `json:"result"`          // "ok" or "failed"
	Error  string `json:"error,omitempty"` // why it failed; the old process serves on
	Binary string `json:"binary,omitempty"`
	PID    int    `json:"pid,omitempty"` // the new process's
	// Moved connections are the new process's now; Stayed ones (TLS)
	// end in the old process within upgrade_linger.
	Moved  int    `json:"moved"`
	Stayed int    `json:"stayed"`
	Took   string `json:"took,omitempty"` // from the first connection stopped to the last restored
}

// withUpgrade adds POST /debug/upgrade to the admin endpoints next
// serves, behind the same guard: it needs the header X-Wsedge-Admin and,
// when one is set, the admin token.
func (d *daemon) withUpgrade(next http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /debug/upgrade", d.guard.Wrap(http.HandlerFunc(d.serveUpgrade)))
	mux.Handle("/", next)
	return mux
}

// serveUpgrade asks the serve loop for an upgrade and answers how it went:
// 200 when the new process took over, 409 when an upgrade is under way
// already, 500 with the reason when the old process keeps serving.
func (d *daemon) serveUpgrade(w http.ResponseWriter, r *http.Request) {
	req := upgradeRequest{binary: r.URL.Query().Get("binary"), reply: make(chan upgradeAnswer, 1)}
	if d.upgrading.Load() {
		writeUpgradeJSON(w, http.StatusConflict, upgradeResult{Result: "failed", Error: "an upgrade is under way already"})
		return
	}
	select {
	case d.upgradeReqs <- req:
	case <-r.Context().Done():
		return
	case <-time.After(10 * time.Second): // a reload is being applied, say
		writeUpgradeJSON(w, http.StatusServiceUnavailable, upgradeResult{Result: "failed", Error: "the proxy is busy; try again"})
		return
	}
	select {
	case a := <-req.reply:
		status := http.StatusOK
		if a.err != nil {
			status = http.StatusInternalServerError
		}
		writeUpgradeJSON(w, status, a.result)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		close(a.written)
	case <-r.Context().Done():
	}
}

func writeUpgradeJSON(w http.ResponseWriter, status int, res upgradeResult) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(res)
}

// answer tells req's requester how the upgrade went and, when it went
// through, waits a little for the answer to be out.
func (req upgradeRequest) answer(res upgradeResult, err error) {
	if req.reply == nil {
		return
	}
	a := upgradeAnswer{result: res, err: err, written: make(chan struct{})}
	req.reply <- a
	if err == nil {
		select {
		case <-a.written:
		case <-time.After(5 * time.Second):
		}
	}
}

// logUpgrade logs how an upgrade went.
func (d *daemon) logUpgrade(res upgradeResult, err error) {
	if err != nil {
		d.log.Error("upgrade failed; the old process keeps serving", zap.String("binary", res.Binary), zap.Error(err))
		return
	}
	d.log.Info("upgraded: the new process took over", zap.String("binary", res.Binary), zap.Int("new_pid", res.PID),
		zap.Int("moved", res.Moved), zap.Int("stayed", res.Stayed), zap.String("took", res.Took))
}

// upgradeCmd asks the running proxy, through its admin listener, to
// replace itself with a new binary, and prints how it went.
func upgradeCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("upgrade", stderr)
	path := fs.String("config", defaultConfigPath, "config file of the running proxy: its admin_listen and admin_token_file are used")
	binary := fs.String("binary", "", "the new binary (default: the running proxy's own path, where a new build was put)")
	admin := fs.String("admin", "", "the running proxy's admin listener, host:port (default: admin_listen of the config)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("upgrade: unexpected argument %q", fs.Arg(0))
	}
	f, _, err := loadConfig(*path)
	if err != nil {
		return err
	}
	if *admin == "" {
		*admin = f.AdminListen
	}
	if *admin == "" {
		return errors.New("upgrade: no admin_listen configured; send SIGUSR2 to the running proxy instead")
	}
	token := ""
	if f.AdminTokenFile != "" {
		if token, err = readAdminToken(f.AdminTokenFile); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), upgradeTimeout)
	defer cancel()
	u := "http://" + *admin + "/debug/upgrade"
	if *binary != "" {
		u += "?binary=" + url.QueryEscape(*binary)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set(proxy.AdminHeader, "1")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("upgrade: asking the running proxy at %s: %w", *admin, err)
	}
	defer res.Body.Close()
	var out upgradeResult
	body, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if err := json.Unmarshal(body, &out); err != nil {
		return fmt.Errorf("upgrade: %s: %s", res.Status, body)
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("upgrade failed; the running proxy keeps serving: %s", out.Error)
	}
	fmt.Fprintf(stdout, "upgraded: new process %d took %d connections in %s", out.PID, out.Moved, out.Took)
	if out.Stayed > 0 {
		fmt.Fprintf(stdout, "; %d (TLS) stay with the old process until upgrade_linger, then close with 1012", out.Stayed)
	}
	fmt.Fprintln(stdout)
	return nil
}
