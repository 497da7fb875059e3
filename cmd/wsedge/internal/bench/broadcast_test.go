package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/wsedge/wsedge/cmd/wsedge/internal/chat"
)

// startRoom starts chat servers, the ones given the same broker being one
// room, and returns a target for each.
func startRoom(t *testing.T, brokers ...chat.Broker) Targets {
	t.Helper()
	var targets Targets
	for i, b := range brokers {
		s, err := chat.Start(chat.Config{Name: fmt.Sprintf("s%d", i), Broker: b})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close(time.Second) })
		targets = append(targets, mustTarget(t, "ws://"+s.Addr()+"/ws"))
	}
	return targets
}

// TestBroadcast: every client of a room gets every message of the window
// and each delivery is timed; clients of a server cut off from the room
// are counted missing.
func TestBroadcast(t *testing.T) {
	shared := &chat.Memory{}
	tests := []struct {
		name    string
		brokers []chat.Broker
		// wantMissingShare is the share of deliveries that cannot come:
		// clients alternate over the servers, and the publisher is on
		// the first.
		wantMissingShare float64
	}{
		{"one room on two servers", []chat.Broker{shared, shared}, 0},
		{"second server in a room of its own", []chat.Broker{&chat.Memory{}, &chat.Memory{}}, 0.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			targets := startRoom(t, tt.brokers...)
			res, err := Broadcast(context.Background(), BroadcastConfig{
				Targets: targets, Conns: 20, Interval: 20 * time.Millisecond, Size: 100,
				Duration: 500 * time.Millisecond, Warmup: 100 * time.Millisecond, Grace: 3 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Opened != 20 || res.Lost != 0 || res.Published < 5 {
				t.Fatalf("opened %d, lost %d, published %d: %s", res.Opened, res.Lost, res.Published, res.FirstError)
			}
			want := res.Published * int64(res.Opened)
			wantMissing := int64(tt.wantMissingShare * float64(want))
			if res.Missing != wantMissing || res.Deliveries != want-wantMissing {
				t.Errorf("deliveries %d, missing %d of %d; want %d missing", res.Deliveries, res.Missing, want, wantMissing)
			}
			if res.Latency.Count != res.Deliveries || res.Latency.Max <= 0 || res.Latency.Max > 5*time.Second {
				t.Errorf("latency %+v for %d deliveries", res.Latency, res.Deliveries)
			}
		})
	}
}

func TestSeqOf(t *testing.T) {
	r := &broadcastRun{marker: []byte("bench 0000abcd ")}
	tests := []struct {
		give   string
		want   int
		wantOK bool
	}{
		{`{"type":"chat","text":"bench 0000abcd 42 xxxx"}`, 42, true},
		{`bench 0000abcd 7`, 7, true},
		{`{"type":"chat","text":"bench 0000ffff 42 xxxx"}`, 0, false}, // another run's
		{`{"type":"chat","text":"bench 0000abcd x"}`, 0, false},
		{`{"type":"hello"}`, 0, false},
		{`bench 0000abcd 12345678901`, 0, false}, // no run has that many
	}
	for _, tt := range tests {
		got, ok := r.seqOf([]byte(tt.give))
		if got != tt.want && tt.wantOK || ok != tt.wantOK {
			t.Errorf("seqOf(%q) = %d, %v; want %d, %v", tt.give, got, ok, tt.want, tt.wantOK)
		}
	}
}
