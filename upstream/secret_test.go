package upstream

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadSecret(t *testing.T) {
	key32 := bytes.Repeat([]byte{0xab}, 32)
	tests := []struct {
		name    string
		give    string
		want    []byte
		wantErr bool
	}{
		{"32 bytes base64 with newline", base64.StdEncoding.EncodeToString(key32) + "\n", key32, false},
		{"16 bytes", base64.StdEncoding.EncodeToString(key32[:16]), key32[:16], false},
		{"24 bytes unpadded", base64.RawStdEncoding.EncodeToString(key32[:24]), key32[:24], false},
		{"16 bytes unpadded", "  " + base64.RawStdEncoding.EncodeToString(key32[:16]) + "\r\n", key32[:16], false},
		{"raw bytes", string(key32), nil, true},
		{"wrong length", base64.StdEncoding.EncodeToString(key32[:20]), nil, true},
		{"empty", "", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "gossip.key")
			if err := os.WriteFile(path, []byte(tt.give), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := readSecret(path)
			if (err != nil) != tt.wantErr || !bytes.Equal(got, tt.want) {
				t.Errorf("readSecret = %x, %v; want %x (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
	if key, err := readSecret(""); key != nil || err != nil {
		t.Errorf("readSecret(\"\") = %x, %v; want no key", key, err)
	}
	if _, err := readSecret(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing key file is not an error")
	}
}

// Gossip that anyone beyond this host can reach needs a key, or plaintext
// asked for on purpose; New and NewAgent refuse it whatever their callers
// checked.
func TestPlaintextGossipRefused(t *testing.T) {
	keyFile, _ := writeKey(t)
	tests := []struct {
		bind      string
		secret    string
		plaintext bool
		wantErr   bool
	}{
		{bind: "0.0.0.0:7946", wantErr: true},
		{bind: ":7946", wantErr: true}, // every address
		{bind: "[::]:7946", wantErr: true},
		{bind: "192.0.2.7:7946", wantErr: true},
		{bind: "[2001:db8::7]:7946", wantErr: true},
		{bind: "gossip.internal:7946", wantErr: true}, // a name may resolve anywhere
		{bind: "127.0.0.1:7946"},
		{bind: "127.3.2.1:7946"},
		{bind: "[::1]:7946"},
		{bind: "[::ffff:127.0.0.1]:7946"},
		{bind: "localhost:7946"},
		{bind: "0.0.0.0:7946", secret: keyFile},
		{bind: "0.0.0.0:7946", plaintext: true},
	}
	for _, tt := range tests {
		d := DiscoveryConfig{Bind: tt.bind, SecretFile: tt.secret, AllowPlaintext: tt.plaintext}
		_, err := New(Config{Discovery: d}, nil)
		if (err != nil) != tt.wantErr || err != nil && !errors.Is(err, ErrPlaintextGossip) {
			t.Errorf("New with %+v = %v, want error %v", d, err, tt.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), "head -c 32 /dev/urandom | base64 > gossip.key") {
			t.Errorf("New: %v, does not say how to make a key", err)
		}
		d.Join = []string{"127.0.0.1:7946"}
		_, err = NewAgent(AgentConfig{Discovery: d, Advertise: "127.0.0.1:9001"}, nil)
		if (err != nil) != tt.wantErr || err != nil && !errors.Is(err, ErrPlaintextGossip) {
			t.Errorf("NewAgent with %+v = %v, want error %v", d, err, tt.wantErr)
		}
	}
}
