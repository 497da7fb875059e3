package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// pageState is what the demo page keeps in window.demoState.
type pageState struct {
	Tab       string `json:"tab"`
	Backend   string `json:"backend"`
	Addr      string `json:"addr"`
	Connected bool   `json:"connected"`
	Connects  int    `json:"connects"`
	Moves     []struct {
		From, To string
	} `json:"moves"`
	Closes []struct {
		Code    int    `json:"code"`
		Backend string `json:"backend"`
	} `json:"closes"`
	Messages []struct {
		Text, From, Backend string
	} `json:"messages"`
	Members *struct {
		Count    int            `json:"count"`
		Backends map[string]int `json:"backends"`
	} `json:"members"`
}

func (tb *tab) state(t *testing.T) pageState {
	t.Helper()
	var s pageState
	if err := tb.eval(`JSON.parse(JSON.stringify(window.demoState || {}))`, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// has reports whether the tab's room shows text, in its state and on the
// page as a person sees it.
func (tb *tab) has(t *testing.T, text string) bool {
	t.Helper()
	var shown bool
	q, _ := json.Marshal(text)
	if err := tb.eval(`document.getElementById('log').textContent.includes(`+string(q)+`)`, &shown); err != nil {
		t.Fatal(err)
	}
	return shown
}

// send types text into the page's box and presses Send, as a person would.
func (tb *tab) send(t *testing.T, text string) {
	t.Helper()
	q, _ := json.Marshal(text)
	if err := tb.eval(`(() => { document.getElementById('text').value = `+string(q)+`;
		document.querySelector('#send button').click(); })()`, nil); err != nil {
		t.Fatal(err)
	}
}

// TestBrowserDemo opens the demo in several tabs of a headless Chromium:
// a message typed in one appears in all; "kill my backend" in a tab makes
// the proxy close that backend's tabs with 1012, they reconnect on their
// own to another backend, and the room carries on. Skipped without
// Chromium.
func TestBrowserDemo(t *testing.T) {
	path, err := chromium()
	if err != nil {
		t.Skipf("browser test skipped: %v", err)
	}
	d := startDemo(t)
	b := startBrowser(t, path)
	page := "http://" + d.listen + "/"

	// Open tabs until two backends hold some, as tabs spread by their own
	// sticky keys (at most 9: all on one backend has odds of 3^-8).
	var tabs []*tab
	on := map[string][]*tab{}
	for len(tabs) < 4 || len(on) < 2 {
		if len(tabs) == 9 {
			t.Fatalf("9 tabs all on one backend: %v", on)
		}
		tb := b.open(t, page)
		var s pageState
		waitFor(t, 15*time.Second, func() string {
			s = tb.state(t)
			if !s.Connected {
				return fmt.Sprintf("tab %d not connected: %+v", len(tabs), s)
			}
			return ""
		})
		tabs = append(tabs, tb)
		on[s.Backend] = append(on[s.Backend], tb)
	}
	t.Logf("%d tabs over %d backends", len(tabs), len(on))

	// Every tab sees the whole room in its member list.
	waitFor(t, 10*time.Second, func() string {
		for i, tb := range tabs {
			if s := tb.state(t); s.Members == nil || s.Members.Count != len(tabs) {
				return fmt.Sprintf("tab %d lists members %+v, want %d", i, s.Members, len(tabs))
			}
		}
		return ""
	})

	// Each tab is keyed by what it offers in Sec-WebSocket-Protocol, as
	// the demo's proxy says: /debug/ring names the backend it is on.
	for i, tb := range tabs {
		s := tb.state(t)
		u := "http://" + d.admin + "/debug/ring?key=" + url.QueryEscape("chat.v1, tab."+s.Tab)
		var ex struct{ Backend string }
		getJSON(t, u, &ex)
		if ex.Backend != s.Addr {
			t.Errorf("tab %d is on %s, the ring puts its key on %s", i, s.Addr, ex.Backend)
		}
	}

	tabs[0].send(t, "hello from the first tab")
	waitFor(t, 10*time.Second, func() string {
		for i, tb := range tabs {
			if !tb.has(t, "hello from the first tab") {
				return fmt.Sprintf("tab %d (%s) does not show the message", i, tb.state(t).Backend)
			}
		}
		return ""
	})

	// Kill the backend of a tab, from that tab's own button.
	var victim string
	for name := range on {
		victim = name
		break
	}
	if err := on[victim][0].eval(`document.getElementById('kill').click()`, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, func() string {
		for i, tb := range on[victim] {
			s := tb.state(t)
			if !s.Connected || s.Backend == victim {
				return fmt.Sprintf("tab %d of %s: connected %v to %s", i, victim, s.Connected, s.Backend)
			}
			if !slices.ContainsFunc(s.Closes, func(c struct {
				Code    int    `json:"code"`
				Backend string `json:"backend"`
			}) bool {
				return c.Code == 1012 && c.Backend == victim
			}) {
				return fmt.Sprintf("tab %d of %s saw closes %+v, want 1012", i, victim, s.Closes)
			}
			if len(s.Moves) == 0 || s.Moves[len(s.Moves)-1].From != victim {
				return fmt.Sprintf("tab %d of %s shows no move from it: %+v", i, victim, s.Moves)
			}
		}
		return ""
	})
	for name, ts := range on {
		if name == victim {
			continue
		}
		for _, tb := range ts {
			if s := tb.state(t); s.Connects != 1 || s.Backend != name {
				t.Errorf("a tab of %s, which was not killed, reconnected: %+v", name, s)
			}
		}
	}

	// The room carries on: a moved tab is heard by every tab.
	mover := on[victim][0]
	mover.send(t, "moved and still here")
	waitFor(t, 10*time.Second, func() string {
		for i, tb := range tabs {
			if !tb.has(t, "moved and still here") {
				return fmt.Sprintf("tab %d (%s) does not show the moved tab's message", i, tb.state(t).Backend)
			}
		}
		return ""
	})
	if shot := os.Getenv("WSEDGE_SCREENSHOT"); shot != "" {
		if err := mover.screenshot(shot); err != nil {
			t.Error(err)
		}
	}
	if ex := b.uncaught(); len(ex) > 0 {
		t.Errorf("uncaught exceptions in the page:\n%s", strings.Join(ex, "\n"))
	}
}
