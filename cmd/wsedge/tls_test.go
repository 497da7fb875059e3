package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

// testCA issues server certificates for 127.0.0.1, as an operator's CA or
// ACME client would.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool // what clients trust
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1000),
		Subject:               pkix.Name{CommonName: "wsedge test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue writes a certificate for 127.0.0.1 with serial, and its key, to
// certPath and keyPath. Each file is replaced by a rename, as renewal
// tools do, so the proxy never reads half a file.
func (ca *testCA) issue(t *testing.T, serial int64, certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "wsedge.test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	replaceFile(t, keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
}

// replaceFile puts data at path by writing a new file and renaming it over
// the old one.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// wssDial opens a wss:// connection to p trusting roots, and returns it
// with the serial number of the certificate the proxy showed.
func wssDial(t *testing.T, p *proc, roots *x509.CertPool) (*websocket.Conn, int64) {
	t.Helper()
	d := p.wsDialer(websocket.Dialer{HandshakeTimeout: 5 * time.Second, TLSClientConfig: &tls.Config{RootCAs: roots}})
	c, res, err := d.Dial("wss://"+p.listen+"/", nil)
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if got := res.Header.Get("X-Seen-Forwarded-Proto"); got != "https" {
		t.Errorf("backend saw X-Forwarded-Proto %q behind TLS, want https", got)
	}
	return c, servedSerial(c)
}

// servedSerial is the serial number of the certificate c was shown.
func servedSerial(c *websocket.Conn) int64 {
	return c.NetConn().(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TLS termination with certificates rotated on SIGHUP: a wss:// client
// keeps relaying across the rotation, new clients are shown the renewed
// certificate, and a broken key file is refused without disturbing either.
func TestTLSCertificateRotation(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca := newTestCA(t)
	ca.issue(t, 1, certPath, keyPath)
	b := upstreamtest.Start(t)
	p := startWsedge(t, fmt.Sprintf("[tls]\ncert = %q\nkey = %q\n%s", certPath, keyPath, upstreams(b)))
	p.logs.wait(t, `"msg":"listening"`, time.Second, `"tls":true`)

	live, serial := wssDial(t, p, ca.pool)
	if serial != 1 {
		t.Fatalf("proxy showed certificate %d, want 1", serial)
	}
	if got := askName(t, live); got != b.Name {
		t.Fatalf("wss client reached %q", got)
	}
	if _, _, err := p.wsDialer(*websocket.DefaultDialer).Dial("ws://"+p.listen+"/", nil); err == nil {
		t.Error("a plain ws:// handshake succeeded on the TLS listener")
	}

	// The live client keeps talking through both reloads.
	e := newEchoer(live, 0)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); e.run(stop, 20*time.Millisecond) }()
	stopped := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	}
	defer stopped()

	ca.issue(t, 2, certPath, keyPath)
	p.signal(t, syscall.SIGHUP)
	p.logs.wait(t, `"msg":"config reloaded"`, 5*time.Second)
	if _, serial := wssDial(t, p, ca.pool); serial != 2 {
		t.Errorf("after rotation a new client was shown certificate %d, want 2", serial)
	}

	replaceFile(t, keyPath, []byte("-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n"))
	p.signal(t, syscall.SIGHUP)
	p.logs.wait(t, `"msg":"config reload failed; keeping the running config"`, 5*time.Second, "tls")
	if _, serial := wssDial(t, p, ca.pool); serial != 2 {
		t.Errorf("after a broken key file a new client was shown certificate %d, want 2 still", serial)
	}

	time.Sleep(200 * time.Millisecond)
	stopped()
	t.Logf("live wss client: %d messages echoed across a rotation and a failed reload", e.echoed)
	if e.err != nil {
		t.Fatalf("live wss client: %v", e.err)
	}
	if servedSerial(live) != 1 {
		t.Error("the live connection's certificate changed under it")
	}
	if got := askName(t, live); got != b.Name {
		t.Fatalf("live wss client on %q after the reloads", got)
	}
	fams := scrape(t, p)
	if ok, failed := counterValue(t, fams, "wsedge_config_reloads_total", "result", "ok"),
		counterValue(t, fams, "wsedge_config_reloads_total", "result", "failed"); ok != 1 || failed != 1 {
		t.Errorf("wsedge_config_reloads_total: ok %v, failed %v; want 1 and 1", ok, failed)
	}
}
