package upstream

import (
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestGossipLogLevels(t *testing.T) {
	tests := []struct {
		give       string
		wantLevel  zapcore.Level
		wantDetail string
	}{
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:5000\n", zap.DebugLevel, "Stream connection from=127.0.0.1:5000"},
		{"[INFO] memberlist: Marking b as failed, suspect timeout reached (0 peer confirmations)\n", zap.InfoLevel, "Marking b as failed, suspect timeout reached (0 peer confirmations)"},
		{"[WARN] memberlist: Was able to connect to b over TCP but UDP probes failed\n", zap.WarnLevel, "Was able to connect to b over TCP but UDP probes failed"},
		{"[ERR] memberlist: Failed to send ping: write: broken pipe\n", zap.ErrorLevel, "Failed to send ping: write: broken pipe"},
		{"something untagged\n", zap.WarnLevel, "something untagged"},
	}
	for _, tt := range tests {
		core, logs := observer.New(zap.DebugLevel)
		newGossipLogger(zap.New(core)).Print(tt.give)
		entries := logs.All()
		if len(entries) != 1 {
			t.Fatalf("%q: %d entries, want 1", tt.give, len(entries))
		}
		e := entries[0]
		if e.Level != tt.wantLevel || e.Message != "gossip" || e.ContextMap()["detail"] != tt.wantDetail {
			t.Errorf("%q logged %s %q %v, want %s gossip %q", tt.give, e.Level, e.Message, e.ContextMap(), tt.wantLevel, tt.wantDetail)
		}
	}
}
