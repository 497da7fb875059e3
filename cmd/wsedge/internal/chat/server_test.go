package chat

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestStop: Close says 1001 to clients; Kill cuts them with no close
// frame (1006 to the client), as a dead process would, so that a proxy in
// front tells them 1012.
func TestStop(t *testing.T) {
	tests := []struct {
		name     string
		stop     func(*Server)
		wantCode int
	}{
		{"close", func(s *Server) { s.Close(time.Second) }, websocket.CloseGoingAway},
		{"kill", (*Server).Kill, websocket.CloseAbnormalClosure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServers(t, 1, func(int) Broker { return &Memory{} }, nil)[0]
			c := join(t, s, "c")
			tt.stop(s)
			if got := c.ended(5 * time.Second); got != tt.wantCode {
				t.Errorf("close code %d, want %d", got, tt.wantCode)
			}
			if _, err := http.Get("http://" + s.Addr() + "/healthz"); err == nil {
				t.Error("still serving after stop")
			}
		})
	}
}

// TestFleet: kill and revive through the fleet's HTTP controls; a revived
// server serves on its old address.
func TestFleet(t *testing.T) {
	var f Fleet
	broker := &Memory{}
	if err := f.Start([]Config{{Name: "a", Broker: broker}, {Name: "b", Broker: broker}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	addr := f.Status()[1].Addr
	tests := []struct {
		method, path string
		header       string // Sec-Fetch-Site
		wantStatus   int
		wantRunning  bool // b's state afterwards
	}{
		{"GET", "/demo/kill?backend=b", "", http.StatusMethodNotAllowed, true},
		{"POST", "/demo/kill?backend=b", "cross-site", http.StatusForbidden, true},
		{"POST", "/demo/kill?backend=nope", "", http.StatusConflict, true},
		{"POST", "/demo/revive?backend=b", "", http.StatusConflict, true},
		{"POST", "/demo/kill?backend=b", "same-origin", http.StatusNoContent, false},
		{"POST", "/demo/kill?backend=b", "", http.StatusConflict, false},
		{"POST", "/demo/revive?backend=b", "", http.StatusNoContent, true},
		{"GET", "/demo/backends", "", http.StatusOK, true},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(tt.method, tt.path, nil)
		if tt.header != "" {
			req.Header.Set("Sec-Fetch-Site", tt.header)
		}
		rec := httptest.NewRecorder()
		f.ServeHTTP(rec, req)
		if rec.Code != tt.wantStatus {
			t.Errorf("%s %s: %d, want %d (%s)", tt.method, tt.path, rec.Code, tt.wantStatus, rec.Body)
		}
		if st := f.Status()[1]; st.Running != tt.wantRunning || st.Addr != addr {
			t.Errorf("after %s %s: b running %v at %s, want %v at %s", tt.method, tt.path, st.Running, st.Addr, tt.wantRunning, addr)
		}
	}
	res, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("revived b does not serve on %s: %v", addr, err)
	}
	res.Body.Close()
}
