package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// chromium finds a Chromium to drive: $WSEDGE_CHROMIUM, or chromium on
// the PATH (Debian's package; .ci/run installs it).
func chromium() (string, error) {
	if p := os.Getenv("WSEDGE_CHROMIUM"); p != "" {
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no chromium on the PATH (apt-get install chromium)")
}

// browser is a headless Chromium driven over the DevTools protocol, on a
// WebSocket of its own: a few commands in flat session mode, enough to
// open tabs, run script in them and read what they show.
type browser struct {
	cmd  *exec.Cmd
	conn *websocket.Conn
	done chan struct{} // closed when the reader ends

	wmu sync.Mutex // serializes writes to conn

	mu         sync.Mutex // guards next, pending and exceptions
	next       int64
	pending    map[int64]chan cdpReply
	exceptions []string // uncaught exceptions in any page
}

type cdpReply struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error"`
}

// startBrowser runs Chromium headless with a fresh profile and connects to
// it; it is stopped at cleanup.
func startBrowser(t *testing.T, path string) *browser {
	t.Helper()
	cmd := exec.Command(path, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--disable-extensions", "--mute-audio",
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
		"--user-data-dir="+t.TempDir(), "about:blank")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b := &browser{cmd: cmd, done: make(chan struct{}), pending: make(map[int64]chan cdpReply)}
	devtoolsLine := regexp.MustCompile(`DevTools listening on (ws://\S+)`)
	urls := make(chan string, 1)
	var logMu sync.Mutex
	var log strings.Builder
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logMu.Lock()
			log.WriteString(sc.Text() + "\n")
			logMu.Unlock()
			if m := devtoolsLine.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case urls <- m[1]:
				default:
				}
			}
		}
	}()
	stop := func() {
		_ = cmd.Process.Kill()
		<-scanned
		_ = cmd.Wait()
	}
	var url string
	select {
	case url = <-urls:
	case <-time.After(30 * time.Second):
		stop()
		logMu.Lock()
		defer logMu.Unlock()
		t.Fatalf("chromium gave no DevTools address in 30s; its log:\n%s", log.String())
	}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	conn, _, err := d.Dial(url, nil)
	if err != nil {
		stop()
		t.Fatalf("devtools: %v", err)
	}
	b.conn = conn
	go b.read()
	t.Cleanup(func() {
		_ = b.call(context.Background(), "", "Browser.close", nil, nil)
		_ = conn.Close()
		<-b.done
		exited := make(chan struct{})
		go func() { <-scanned; _ = cmd.Wait(); close(exited) }()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	return b
}

// read takes replies to their callers and notes uncaught exceptions,
// until the connection ends; then it fails every pending call.
func (b *browser) read() {
	defer close(b.done)
	for {
		_, p, err := b.conn.ReadMessage()
		if err != nil {
			b.mu.Lock()
			for id, ch := range b.pending {
				ch <- cdpReply{Error: &struct {
					Message string `json:"message"`
				}{Message: "devtools connection ended"}}
				delete(b.pending, id)
			}
			b.mu.Unlock()
			return
		}
		var m struct {
			ID     int64           `json:"id"`
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
			cdpReply
		}
		if json.Unmarshal(p, &m) != nil {
			continue
		}
		if m.ID != 0 {
			b.mu.Lock()
			ch := b.pending[m.ID]
			delete(b.pending, m.ID)
			b.mu.Unlock()
			if ch != nil {
				ch <- m.cdpReply
			}
			continue
		}
		if m.Method == "Runtime.exceptionThrown" {
			b.mu.Lock()
			b.exceptions = append(b.exceptions, string(m.Params))
			b.mu.Unlock()
		}
	}
}

// call sends one command, to the browser (session "") or to a tab's
// session, and decodes its result into result (when not nil).
func (b *browser) call(ctx context.Context, session, method string, params, result any) error {
	b.mu.Lock()
	b.next++
	id := b.next
	ch := make(chan cdpReply, 1)
	b.pending[id] = ch
	b.mu.Unlock()
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if session != "" {
		msg["sessionId"] = session
	}
	b.wmu.Lock()
	_ = b.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	err := b.conn.WriteJSON(msg)
	b.wmu.Unlock()
	if err != nil {
		b.mu.Lock()
		delete(b.pending, id)
		b.mu.Unlock()
		return fmt.Errorf("%s: %w", method, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	select {
	case r := <-ch:
		if r.Error != nil {
			return fmt.Errorf("%s: %s", method, r.Error.Message)
		}
		if result != nil {
			return json.Unmarshal(r.Result, result)
		}
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		delete(b.pending, id)
		b.mu.Unlock()
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// tab is one page of the browser, attached in flat mode.
type tab struct {
	b       *browser
	target  string
	session string
}

// open opens url in a new tab.
func (b *browser) open(t *testing.T, url string) *tab {
	t.Helper()
	ctx := context.Background()
	var created struct{ TargetID string }
	if err := b.call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank"}, &created); err != nil {
		t.Fatal(err)
	}
	var attached struct{ SessionID string }
	if err := b.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": created.TargetID, "flatten": true}, &attached); err != nil {
		t.Fatal(err)
	}
	tb := &tab{b: b, target: created.TargetID, session: attached.SessionID}
	if err := b.call(ctx, tb.session, "Runtime.enable", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.call(ctx, tb.session, "Page.navigate", map[string]any{"url": url}, nil); err != nil {
		t.Fatal(err)
	}
	return tb
}

// eval runs expr in the tab (awaiting a promise) and decodes its value,
// which must be JSON-serializable, into out.
func (tb *tab) eval(expr string, out any) error {
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	err := tb.b.call(context.Background(), tb.session, "Runtime.evaluate",
		map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &r)
	if err != nil {
		return err
	}
	if e := r.ExceptionDetails; e != nil {
		return fmt.Errorf("%s: %s %s", expr, e.Text, e.Exception.Description)
	}
	if out == nil || len(r.Result.Value) == 0 {
		return nil
	}
	return json.Unmarshal(r.Result.Value, out)
}

// screenshot writes a PNG of the tab to path.
func (tb *tab) screenshot(path string) error {
	var r struct{ Data []byte }
	if err := tb.b.call(context.Background(), tb.session, "Page.captureScreenshot", map[string]any{"format": "png"}, &r); err != nil {
		return err
	}
	return os.WriteFile(path, r.Data, 0o644)
}

// uncaught returns the uncaught exceptions seen in any tab so far.
func (b *browser) uncaught() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.exceptions...)
}
