package upstream

import (
	"strings"
	"testing"
)

// An agent refuses to advertise what the proxies would refuse, rather than
// never entering a ring.
func TestNewAgentChecksWhatProxiesCheck(t *testing.T) {
	tests := []struct {
		advertise string
		weight    int
		want      string // in the error; "" for none
	}{
		{"127.0.0.1:9001", 0, ""},
		{"app.internal:9001", 1000, ""},
		{"[::1]:9001", 1, ""},
		{"app", 1, "want host:port"},
		{"app:0", 1, "want a port of 1..65535"},
		{"bad host:9001", 1, "want an IP address or a DNS name"},
		{"0.0.0.0:9001", 1, "want an IP address a proxy can dial"},
		{"127.0.0.1:9001", 1001, "weight 1001: want 1..1000"},
	}
	for _, tt := range tests {
		_, err := NewAgent(AgentConfig{
			Discovery: DiscoveryConfig{Bind: "127.0.0.1:0", Join: []string{"127.0.0.1:7946"}},
			Advertise: tt.advertise,
			Weight:    tt.weight,
		}, nil)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("NewAgent advertising %q weight %d = %v, want %q", tt.advertise, tt.weight, err, tt.want)
		}
	}
}
