package bench

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
)

// curveByName returns the key exchange called name, in any case:
// crypto/tls's name for it (CurveID.String) or, for the NIST curves, P256,
// P-256 and the like.
func curveByName(name string) (tls.CurveID, bool) {
	switch strings.ToLower(name) {
	case "p256", "p-256":
		return tls.CurveP256, true
	case "p384", "p-384":
		return tls.CurveP384, true
	case "p521", "p-521":
		return tls.CurveP521, true
	}
	for _, id := range []tls.CurveID{tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024,
		tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521} {
		if strings.EqualFold(id.String(), name) {
			return id, true
		}
	}
	return 0, false
}

// ParseCurves parses a comma-separated list of key exchanges for a client
// to offer, such as "X25519,P256" or "X25519MLKEM768": crypto/tls's names
// (CurveID.String) or P256, P-256 and the like, in any case. The order is
// the client's preference, which a server may overrule (a Go server
// does). An empty list returns nil, which leaves crypto/tls's defaults.
func ParseCurves(s string) ([]tls.CurveID, error) {
	var ids []tls.CurveID
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		id, ok := curveByName(item)
		if !ok {
			return nil, fmt.Errorf("key exchange %q: want one of X25519MLKEM768, SecP256r1MLKEM768, SecP384r1MLKEM1024, X25519, P256, P384, P521", item)
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// ClientTLS returns the client configuration for wss:// targets: the
// server's certificate is verified against the PEM certificates in caFile
// (the system's roots when empty), or not at all when insecure is set;
// curves, when not empty, pins the key exchanges offered.
func ClientTLS(insecure bool, caFile string, curves []tls.CurveID) (*tls.Config, error) {
	c := &tls.Config{InsecureSkipVerify: insecure, CurvePreferences: curves}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: no PEM certificate in %s", caFile)
		}
	}
	return c, nil
}

// connTLS returns the configuration for one connection to tg: a copy of
// base (nil: crypto/tls's defaults) with no session cache, so that every
// handshake is a full one and none resumes an earlier session, as a
// client coming for the first time would. It offers HTTP/1.1 by ALPN, the
// protocol WebSockets upgrade.
func connTLS(base *tls.Config, tg Target) *tls.Config {
	c := base.Clone()
	if c == nil {
		c = &tls.Config{}
	}
	c.ClientSessionCache = nil
	if c.ServerName == "" {
		c.ServerName = tg.u.Hostname()
	}
	if len(c.NextProtos) == 0 {
		c.NextProtos = []string{"http/1.1"}
	}
	return c
}

// keyExchange names the key exchange conn negotiated ("X25519MLKEM768",
// "X25519", "CurveP256"...), "none" for a TLS 1.2 RSA key exchange, or ""
// when conn is not TLS.
func keyExchange(conn net.Conn) string {
	tc, ok := conn.(*tls.Conn)
	if !ok {
		return ""
	}
	if id := tc.ConnectionState().CurveID; id != 0 {
		return id.String()
	}
	return "none"
}

// tally counts occurrences of names. It is safe for concurrent use.
type tally struct {
	mu sync.Mutex // guards n
	n  map[string]int64
}

func (t *tally) add(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == nil {
		t.n = map[string]int64{}
	}
	t.n[name]++
}

// counts returns a copy of the counts, nil when there are none.
func (t *tally) counts() map[string]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.n) == 0 {
		return nil
	}
	return maps.Clone(t.n)
}

// shares formats counts as each name's share of the total, largest
// first: "X25519MLKEM768 100%" or "X25519 75%, CurveP256 25%".
func shares(counts map[string]int64) string {
	var total int64
	for _, n := range counts {
		total += n
	}
	if total == 0 {
		return ""
	}
	names := slices.SortedFunc(maps.Keys(counts), func(a, b string) int {
		return cmp.Or(cmp.Compare(counts[b], counts[a]), strings.Compare(a, b))
	})
	parts := make([]string, len(names))
	for i, name := range names {
		parts[i] = fmt.Sprintf("%s %.0f%%", name, 100*float64(counts[name])/float64(total))
	}
	return strings.Join(parts, ", ")
}
