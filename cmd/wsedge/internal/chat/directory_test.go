package chat

import (
	"testing"
	"time"
)

func TestDirectory(t *testing.T) {
	now := time.Unix(1000, 0)
	ttl := time.Second
	a := presence{Backend: "a", Count: 2, Members: []Member{{ID: "x", Backend: "a", Since: 1}, {ID: "y", Backend: "a", Since: 2}}}
	b := presence{Backend: "b", Count: 1, Members: []Member{{ID: "z", Backend: "b", Since: 3}}}
	// x moved from a to b: b lists it too, joined later.
	bMoved := presence{Backend: "b", Count: 2, Members: []Member{{ID: "z", Backend: "b", Since: 3}, {ID: "x", Backend: "b", Since: 5}}}
	tests := []struct {
		name        string
		give        []presence
		expireAt    time.Duration // after now; 0: no expiry
		wantCount   int
		wantWhere   map[string]string // member -> backend listed
		wantChanged bool              // from the last update or the expiry
	}{
		{"one server", []presence{a}, 0, 2, map[string]string{"x": "a", "y": "a"}, true},
		{"two servers", []presence{a, b}, 0, 3, map[string]string{"x": "a", "y": "a", "z": "b"}, true},
		{"same presence again", []presence{a, a}, 0, 2, map[string]string{"x": "a", "y": "a"}, false},
		{"a moved client counts once, on its newer server", []presence{a, bMoved}, 0, 3,
			map[string]string{"x": "b", "y": "a", "z": "b"}, true},
		{"a server not heard from expires", []presence{a, b}, 2 * time.Second, 0, map[string]string{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d directory
			changed := false
			for i, p := range tt.give {
				// Later presences are heard later, so that b outlives
				// a by a little.
				changed = d.update(p, now.Add(time.Duration(i)*time.Millisecond), ttl)
			}
			if tt.expireAt > 0 {
				changed = d.expire(now.Add(tt.expireAt))
			}
			if changed != tt.wantChanged {
				t.Errorf("changed = %v, want %v", changed, tt.wantChanged)
			}
			m := d.snapshot()
			if m.Count != tt.wantCount {
				t.Errorf("count = %d, want %d", m.Count, tt.wantCount)
			}
			got := map[string]string{}
			for _, mb := range m.Members {
				got[mb.ID] = mb.Backend
			}
			if len(got) != len(tt.wantWhere) {
				t.Errorf("members %v, want %v", got, tt.wantWhere)
			}
			for id, be := range tt.wantWhere {
				if got[id] != be {
					t.Errorf("%s listed on %q, want %q", id, got[id], be)
				}
			}
		})
	}
}

func TestIncoming(t *testing.T) {
	tests := []struct{ give, want string }{
		{`{"text":"hi"}`, "hi"},
		{`hi`, "hi"},
		{`{"nottext":1}`, `{"nottext":1}`},
		{`{"text":""}`, ""},
		{`{broken`, `{broken`},
	}
	for _, tt := range tests {
		if got := incoming([]byte(tt.give)); got != tt.want {
			t.Errorf("incoming(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

func TestCleanNames(t *testing.T) {
	tests := []struct {
		give           string
		wantID, wantNk string
	}{
		{"tab-1.x_Y", "tab-1.x_Y", "tab-1.x_Y"},
		{"", "", ""},
		{"a b", "", "a b"},
		{"x\x00", "", ""},
		{"é", "", "é"},
		{"0123456789012345678901234567890123456789X", "", ""},
	}
	for _, tt := range tests {
		if got := cleanID(tt.give); got != tt.wantID {
			t.Errorf("cleanID(%q) = %q, want %q", tt.give, got, tt.wantID)
		}
		if got := cleanName(tt.give, 24); got != tt.wantNk {
			t.Errorf("cleanName(%q) = %q, want %q", tt.give, got, tt.wantNk)
		}
	}
}
