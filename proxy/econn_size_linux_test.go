//go:build linux

package proxy

import (
	"testing"
	"unsafe"
)

// An idle connection is its record on a loop and nothing else: the record's
// size is most of the proxy's memory per idle client, so it is held to a
// budget rather than left to grow a field at a time. 600 bytes today: the
// two flows and framers, heartbeat and close state (504), each way's
// message count and rate for /debug/connections (40), the message-size
// histograms of the framers (16), the last data frame's time and the rate
// limits' state (16), and padding.
func TestIdleConnectionRecordSize(t *testing.T) {
	const budget = 640
	size := unsafe.Sizeof(econn{})
	t.Logf("econn: %d bytes (two flows of %d)", size, unsafe.Sizeof(flow{}))
	if size > budget {
		t.Fatalf("econn is %d bytes, over the %d-byte budget for an idle connection", size, budget)
	}
}
