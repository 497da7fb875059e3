//go:build linux

package proxy

import (
	"testing"
	"unsafe"
)

// An idle connection is its record on a loop and nothing else: the record's
// size is most of the proxy's memory per idle client, so it is held to a
// budget rather than left to grow a field at a time.
func TestIdleConnectionRecordSize(t *testing.T) {
	const budget = 512
	size := unsafe.Sizeof(econn{})
	t.Logf("econn: %d bytes (two flows of %d)", size, unsafe.Sizeof(flow{}))
	if size > budget {
		t.Fatalf("econn is %d bytes, over the %d-byte budget for an idle connection", size, budget)
	}
}
