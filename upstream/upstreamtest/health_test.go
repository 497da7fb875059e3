package upstreamtest

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// An unhealthy backend fails only its health check: its live WebSocket
// and its other paths go on as before.
func TestSetHealthy(t *testing.T) {
	b := Start(t, WithName("b1"))
	c, _ := dial(t, b, "/", websocket.Dialer{})
	client := httpClient(t)
	get := func(path string) int {
		t.Helper()
		resp, err := client.Get(b.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	tests := []struct {
		name        string
		giveHealthy bool
		wantHealth  int
	}{
		{"failing", false, http.StatusServiceUnavailable},
		{"recovered", true, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b.SetHealthy(tt.giveHealthy)
			if got := get("/healthz"); got != tt.wantHealth {
				t.Errorf("/healthz answered %d, want %d", got, tt.wantHealth)
			}
			if got := get("/other"); got != http.StatusOK {
				t.Errorf("/other answered %d, want 200", got)
			}
			_ = c.SetReadDeadline(time.Now().Add(wait))
			if err := c.WriteMessage(websocket.TextMessage, []byte(whoami)); err != nil {
				t.Fatal(err)
			}
			if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "b1" {
				t.Fatalf("live WebSocket answered %q, %v; want b1", msg, err)
			}
		})
	}
}
