package bench

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"maps"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// selfSigned returns a self-signed ECDSA P-256 certificate for 127.0.0.1,
// ::1 and localhost, as run.sh makes for --tls, and the path of its PEM.
func selfSigned(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "wsedge bench"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, file
}

// startTLSBackend serves an echo Backend over TLS with a self-signed
// certificate until the test ends, and returns its wss:// target and the
// PEM file that trusts it.
func startTLSBackend(t *testing.T) (*Backend, Target, string) {
	t.Helper()
	b, _ := startBackend(t)
	cert, caFile := selfSigned(t)
	ts := httptest.NewUnstartedServer(http.HandlerFunc(b.serveHTTP))
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	// Refused handshakes are what some tests are after.
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	t.Cleanup(ts.Close) // before b.Close, which ends the upgraded connections
	return b, mustTarget(t, "wss://"+ts.Listener.Addr().String()+"/"), caFile
}

func mustClientTLS(t *testing.T, insecure bool, caFile, curves string) *tls.Config {
	t.Helper()
	ids, err := ParseCurves(curves)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ClientTLS(insecure, caFile, ids)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestEchoOverTLS(t *testing.T) {
	b, tg, caFile := startTLSBackend(t)
	res, err := Echo(t.Context(), EchoConfig{
		Targets: Targets{tg}, Sources: testSources(t), Transport: Transport{TLS: mustClientTLS(t, false, caFile, "")},
		Conns: 3, Size: 3000, Duration: 300 * time.Millisecond, Warmup: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Opened != 3 || res.Lost != 0 || res.Messages < 20 {
		t.Errorf("opened %d, lost %d (%s), %d messages; want 3, 0 and dozens", res.Opened, res.Lost, res.FirstError, res.Messages)
	}
	if st := b.Stats(); st.Messages < res.Messages || st.Bytes != st.Messages*3000 {
		t.Errorf("backend echoed %d messages, %d bytes; want at least %d of 3000 bytes", st.Messages, st.Bytes, res.Messages)
	}
}

func TestHandshakeOverTLSCountsKeyExchanges(t *testing.T) {
	_, tg, caFile := startTLSBackend(t)
	tests := []struct {
		curves string
		want   string
	}{
		// Go offers the hybrid post-quantum exchange first, and a Go
		// server takes it.
		{curves: "", want: "X25519MLKEM768"},
		{curves: "X25519", want: "X25519"},
		// Offered alone; given a choice, a Go server goes by its own
		// order, not the client's.
		{curves: "P-256", want: "CurveP256"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			res, err := Handshake(t.Context(), HandshakeConfig{
				Targets: Targets{tg}, Sources: testSources(t), Workers: 2, Duration: 200 * time.Millisecond,
				Transport: Transport{TLS: mustClientTLS(t, false, caFile, tt.curves)},
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Handshakes == 0 || res.Failures != 0 {
				t.Fatalf("%d handshakes, %d failures (%s); want some and none", res.Handshakes, res.Failures, res.FirstError)
			}
			if want := map[string]int64{tt.want: res.Handshakes}; !maps.Equal(res.KeyExchange, want) {
				t.Errorf("KeyExchange = %v, want %v", res.KeyExchange, want)
			}
			var out strings.Builder
			if err := WriteReport(&out, res, false); err != nil {
				t.Fatal(err)
			}
			if want := "key exchange  " + tt.want + " 100%"; !strings.Contains(out.String(), want) {
				t.Errorf("table lacks %q:\n%s", want, out.String())
			}
		})
	}
}

func TestHandshakeWithoutTLSReportsNoKeyExchange(t *testing.T) {
	_, tg := startBackend(t)
	res, err := Handshake(t.Context(), HandshakeConfig{Targets: Targets{tg}, Workers: 1, Duration: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Handshakes == 0 || res.KeyExchange != nil {
		t.Errorf("%d handshakes, key exchanges %v; want some and none", res.Handshakes, res.KeyExchange)
	}
}

// Every connection makes a full handshake: the server hands out session
// tickets, and the client keeps none.
func TestWSSNeverResumes(t *testing.T) {
	_, tg, caFile := startTLSBackend(t)
	d, err := newDialer(Targets{tg}, nil, Transport{TLS: mustClientTLS(t, false, caFile, "")}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		conn, _, err := d.dial(t.Context(), i, 64)
		if err != nil {
			t.Fatal(err)
		}
		st := conn.(*tls.Conn).ConnectionState()
		conn.Close()
		if st.DidResume || st.NegotiatedProtocol != "http/1.1" {
			t.Errorf("connection %d: resumed %v, ALPN %q; want a full handshake offering http/1.1", i, st.DidResume, st.NegotiatedProtocol)
		}
	}
}

func TestWSSVerifiesTheCertificate(t *testing.T) {
	_, tg, caFile := startTLSBackend(t)
	tests := []struct {
		name       string
		tls        *tls.Config
		wantVerify bool // fails verification
	}{
		{name: "trusted", tls: mustClientTLS(t, false, caFile, "")},
		{name: "insecure", tls: mustClientTLS(t, true, "", "")},
		{name: "system roots", tls: mustClientTLS(t, false, "", ""), wantVerify: true},
		{name: "nil config", wantVerify: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := newDialer(Targets{tg}, nil, Transport{TLS: tt.tls}, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			conn, _, err := d.dial(t.Context(), 0, 64)
			if !tt.wantVerify {
				if err != nil {
					t.Fatal(err)
				}
				conn.Close()
				return
			}
			var de *DialError
			var ve *tls.CertificateVerificationError
			if !errors.As(err, &de) || de.Step != "tls" || !errors.As(err, &ve) {
				t.Errorf("dial: %v; want a verification failure at step tls", err)
			}
		})
	}
}

func TestClientTLSRejectsBadCAFiles(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{notPEM, filepath.Join(t.TempDir(), "missing.pem")} {
		if _, err := ClientTLS(false, file, nil); err == nil {
			t.Errorf("ClientTLS(%s): no error", file)
		}
	}
}

func TestParseCurves(t *testing.T) {
	tests := []struct {
		give    string
		want    []tls.CurveID
		wantErr bool
	}{
		{give: "", want: nil},
		{give: "X25519,P256", want: []tls.CurveID{tls.X25519, tls.CurveP256}},
		{give: "x25519mlkem768, X25519", want: []tls.CurveID{tls.X25519MLKEM768, tls.X25519}},
		{give: "P-384,CurveP521,p256", want: []tls.CurveID{tls.CurveP384, tls.CurveP521, tls.CurveP256}},
		{give: "SecP256r1MLKEM768", want: []tls.CurveID{tls.SecP256r1MLKEM768}},
		{give: "X25519,x25519", want: []tls.CurveID{tls.X25519}},
		{give: "X448", wantErr: true},
		{give: "X25519,", want: []tls.CurveID{tls.X25519}},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			got, err := ParseCurves(tt.give)
			if tt.wantErr {
				if err == nil {
					t.Errorf("ParseCurves = %v, want an error", got)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("ParseCurves = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestShares(t *testing.T) {
	tests := []struct {
		give map[string]int64
		want string
	}{
		{give: nil, want: ""},
		{give: map[string]int64{"X25519MLKEM768": 7}, want: "X25519MLKEM768 100%"},
		{give: map[string]int64{"CurveP256": 1, "X25519": 3}, want: "X25519 75%, CurveP256 25%"},
		{give: map[string]int64{"X25519": 1, "CurveP256": 1}, want: "CurveP256 50%, X25519 50%"},
	}
	for _, tt := range tests {
		if got := shares(tt.give); got != tt.want {
			t.Errorf("shares(%v) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

// An untrusted certificate will not become trusted by waiting.
func TestWaitReadyStopsAtAnUntrustedCertificate(t *testing.T) {
	_, tg, caFile := startTLSBackend(t)
	start := time.Now()
	err := WaitReady(t.Context(), tg, nil, Transport{TLS: mustClientTLS(t, false, "", "")}, 5*time.Second)
	var ve *tls.CertificateVerificationError
	if !errors.As(err, &ve) || time.Since(start) > time.Second {
		t.Errorf("WaitReady: %v after %v; want a verification failure at once", err, time.Since(start))
	}
	if err := WaitReady(t.Context(), tg, nil, Transport{TLS: mustClientTLS(t, false, caFile, "")}, time.Second); err != nil {
		t.Errorf("WaitReady with the certificate trusted: %v", err)
	}
}
