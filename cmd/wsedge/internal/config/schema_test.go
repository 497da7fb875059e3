package config

import "testing"

func TestSuggest(t *testing.T) {
	root := schema(Default())
	ws, _ := lookup(root, "websocket")
	tests := []struct {
		fields []field
		give   string
		want   string
	}{
		{root, "websocekt", "websocket"},
		{root, "lisen", "listen"},
		{root, "ping_interval", "websocket.ping_interval"},
		{root, "zzz", ""},
		{ws.fields, "ping_intervall", "ping_interval"},
		{ws.fields, "pong_timout", "pong_timeout"},
		{ws.fields, "vnodes", "ring.vnodes"},
		{ws.fields, "key", ""}, // in two tables: no single answer, and not close to any websocket key
	}
	for _, tt := range tests {
		if got := suggest(root, tt.fields, tt.give); got != tt.want {
			t.Errorf("suggest(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}
