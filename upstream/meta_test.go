package upstream

import (
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/memberlist"
)

func TestMetaRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		give nodeMeta
		want nodeMeta
	}{
		{"backend", nodeMeta{Role: roleBackend, Addr: "10.0.0.7:9001", Weight: 3, State: nodeAlive},
			nodeMeta{Version: 1, Role: roleBackend, Addr: "10.0.0.7:9001", Weight: 3, State: nodeAlive}},
		{"draining backend", nodeMeta{Role: roleBackend, Addr: "[::1]:9001", Weight: 1, State: nodeDraining},
			nodeMeta{Version: 1, Role: roleBackend, Addr: "[::1]:9001", Weight: 1, State: nodeDraining}},
		{"weight 0 reads as 1", nodeMeta{Role: roleBackend, Addr: "app:80", State: nodeAlive},
			nodeMeta{Version: 1, Role: roleBackend, Addr: "app:80", Weight: 1, State: nodeAlive}},
		{"proxy", nodeMeta{Role: roleProxy, State: nodeAlive}, nodeMeta{Version: 1, Role: roleProxy, State: nodeAlive}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.give.encode()
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeMeta(b)
			if err != nil {
				t.Fatalf("decodeMeta(%s): %v", b, err)
			}
			if got != tt.want {
				t.Errorf("decodeMeta(%s) = %+v, want %+v", b, got, tt.want)
			}
		})
	}
}

func TestMetaFitsMemberlistWithLongestHostName(t *testing.T) {
	host := strings.Repeat(strings.Repeat("a", 62)+".", 5)[:253]
	b, err := nodeMeta{Role: roleBackend, Addr: host + ":65535", Weight: 1000, State: nodeDraining}.encode()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > memberlist.MetaMaxSize {
		t.Errorf("%d bytes, over %d", len(b), memberlist.MetaMaxSize)
	}
}

func TestMetaDecodeRejects(t *testing.T) {
	tests := []struct {
		name        string
		give        string
		wantVersion bool // errMetaVersion
	}{
		{"newer version", `{"v":2,"role":"backend","addr":"a:1","state":"alive","shards":[1,2]}`, true},
		{"no version", `{"role":"backend","addr":"a:1","state":"alive"}`, true},
		{"unknown state", `{"v":1,"role":"backend","addr":"a:1","state":"sleeping"}`, false},
		{"unknown role", `{"v":1,"role":"cache","state":"alive"}`, false},
		{"backend without address", `{"v":1,"role":"backend","state":"alive"}`, false},
		{"backend without port", `{"v":1,"role":"backend","addr":"app","state":"alive"}`, false},
		{"not JSON", "\x01\x02", false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := decodeMeta([]byte(tt.give))
			if err == nil {
				t.Fatalf("decodeMeta(%q) = %+v, want an error", tt.give, m)
			}
			if got := errors.Is(err, errMetaVersion); got != tt.wantVersion {
				t.Errorf("errors.Is(%v, errMetaVersion) = %v, want %v", err, got, tt.wantVersion)
			}
		})
	}
}

func TestMetaIgnoresUnknownFields(t *testing.T) {
	m, err := decodeMeta([]byte(`{"v":1,"role":"backend","addr":"a:1","weight":2,"state":"alive","zone":"eu-1"}`))
	if err != nil || m.Addr != "a:1" || m.Weight != 2 {
		t.Errorf("decodeMeta = %+v, %v; want the fields it knows", m, err)
	}
}
