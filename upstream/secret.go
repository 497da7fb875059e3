package upstream

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
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

// checkPlaintext refuses gossip that anyone beyond this host could join
// without a key, unless d allows it on purpose. memberlist admits every node
// that speaks to its port; the key is what makes the cluster members only,
// so that a stranger can neither read the metadata nor add backends to the
// ring, drain the real ones, or make every proxy work on its behalf.
func (d DiscoveryConfig) checkPlaintext() error {
	if !d.on() || d.SecretFile != "" || d.AllowPlaintext || loopbackBind(d.Bind) {
		return nil
	}
	return fmt.Errorf("upstream: gossip on %s: %w", d.Bind, ErrPlaintextGossip)
}

// loopbackBind reports whether the host of a bind address is a loopback
// address or "localhost", reachable from this host alone. An empty host,
// every address, is not; nor is any other name, whatever it resolves to
// today.
func loopbackBind(bind string) bool {
	host, _, err := net.SplitHostPort(bind)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}
