package upstream

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
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
