package upstream

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
)

// readSecret reads a gossip key file: 16, 24 or 32 bytes (AES-128, -192,
// -256), base64-encoded on one line. Base64 rather than raw bytes because a
// key file is text that people paste into secret stores and config
// management, and because a raw key could be mistaken for base64 of a
// shorter one. An empty path means no key.
func readSecret(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("upstream: gossip secret: %w", err)
	}
	text := bytes.TrimSpace(data)
	key, err := base64.StdEncoding.DecodeString(string(text))
	if err != nil {
		key, err = base64.RawStdEncoding.DecodeString(string(text))
	}
	if err != nil {
		return nil, fmt.Errorf("upstream: gossip secret %s: not base64 (create one with `head -c 32 /dev/urandom | base64`)", path)
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	}
	return nil, fmt.Errorf("upstream: gossip secret %s: %d bytes, want 16, 24 or 32", path, len(key))
}
