//go:build linux

package looptls

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testCertificate is a self-signed P-256 certificate for 127.0.0.1.
func testCertificate(tb testing.TB) tls.Certificate {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// tlsPair is a TLS connection whose server end is a Side on a raw
// non-blocking socket, handshaken by a Pool as the loops have it done,
// and whose client end is Go's.
func tlsPair(t testing.TB, slow bool) (*Side, *tls.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[1]), "client")
	cc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); unix.Close(fds[0]) })
	pool := NewPool(1)
	t.Cleanup(pool.Close)
	type result struct {
		side *Side
		err  error
	}
	handshaken := make(chan result, 1)
	cfg := &tls.Config{Certificates: []tls.Certificate{testCertificate(t)}}
	deadline := time.Now().Add(5 * time.Second).UnixNano()
	if !pool.Server(fds[0], nil, nil, cfg, deadline, func(s *Side, err error) { handshaken <- result{s, err} }) {
		t.Fatal("the pool took no handshake")
	}
	var under net.Conn = cc
	if slow {
		under = slowConn{cc}
	}
	client := tls.Client(under, &tls.Config{InsecureSkipVerify: true})
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	r := <-handshaken
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.side, client
}

// A record that arrives a few bytes at a time is read once its last byte
// is there: each read before that says EAGAIN and loses nothing.
func TestTLSSideReadsPartialRecords(t *testing.T) {
	side, client := tlsPair(t, true)
	msg := bytes.Repeat([]byte("partial record "), 1000)
	go client.Write(msg)
	buf := make([]byte, 32<<10)
	var got []byte
	agains := 0
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < len(msg) && time.Now().Before(deadline) {
		n, err := side.Read(buf)
		switch {
		case err == unix.EAGAIN:
			agains++
			time.Sleep(100 * time.Microsecond)
		case err != nil:
			t.Fatal(err)
		case n == 0:
			t.Fatal("end of stream")
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("read %d bytes, want %d", len(got), len(msg))
	}
	if agains == 0 {
		t.Error("no read found a record cut short: the test did not test it")
	}
}

// Records that arrive together are read from the socket at once and
// decrypted one per read, Waiting saying more are there; a lone record is
// read with the socket found drained, so the loop does not ask the socket
// again only to hear EAGAIN. What a read found of the socket holds for
// that read only: bytes that came since, announced by an edge the loop
// took already, are waited for.
func TestTLSSideSaysWhenDrained(t *testing.T) {
	side, client := tlsPair(t, false)
	write := func(m string) {
		t.Helper()
		if _, err := client.Write([]byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 1024)
	read := func(want string, waiting bool) {
		t.Helper()
		n, err := side.Read(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("read %q, %v; want %q", buf[:n], err, want)
		}
		if side.Waiting() != waiting {
			t.Fatalf("after reading %q, Waiting() = %v, want %v", want, side.Waiting(), waiting)
		}
	}
	write("first")
	write("second")
	read("first", true) // "second" came with it
	write("third")      // an edge the loop takes before its next read
	read("second", true)
	read("third", false)
	if n, err := side.Read(buf); err != unix.EAGAIN {
		t.Fatalf("read after the last record: %d, %v; want EAGAIN", n, err)
	}
	write("fourth")
	read("fourth", false)
}

// Records sealed for the caller to write (in the loop's batch) reach the
// client once, whole and in order, however the socket takes them: in
// part, not at all for now, or all at once. Until the caller says how
// its write went, Flush leaves them to it.
func TestTLSSideSealedRecordsWrittenByTheCaller(t *testing.T) {
	side, client := tlsPair(t, false)
	big := make([]byte, 4<<20)
	rand.Read(big)
	want := append([]byte("hello"), big...)
	got := make(chan []byte)
	go func() {
		b := make([]byte, len(want))
		if _, err := io.ReadFull(client, b); err != nil {
			b = nil
		}
		got <- b
	}()

	if err := side.Seal([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	records := side.Sealed()
	if len(records) <= len("hello") {
		t.Fatalf("sealed %d bytes for 5 bytes of data: no record", len(records))
	}
	if done, err := side.Flush(); done || err != nil || len(side.Sealed()) != len(records) {
		t.Fatalf("Flush between Seal and Sent = %v, %v, and left %d of %d bytes; want it to leave them",
			done, err, len(side.Sealed()), len(records))
	}
	half := len(records) / 2
	n, err := unix.Write(side.tr.fd, records[:half])
	if err != nil || n != half {
		t.Fatalf("write = %d, %v", n, err)
	}
	if err := side.Sent(n, nil); err != nil || !side.Held() || len(side.Sealed()) != len(records)-half {
		t.Fatalf("after the socket took %d of %d: Sent = %v, Held = %v, %d left", n, len(records), err, side.Held(), len(side.Sealed()))
	}
	if _, err := side.Flush(); err != nil || side.Held() {
		t.Fatalf("Flush of the rest: %v, held %v", err, side.Held())
	}

	if err := side.Seal(big); err != nil {
		t.Fatal(err)
	}
	records = side.Sealed()
	n, err = unix.Write(side.tr.fd, records)
	if err := side.Sent(n, err); err != nil {
		t.Fatal(err)
	}
	if !side.Held() {
		t.Fatal("4 MiB went out at once: the socket buffer should not hold it")
	}
	if err := side.Sent(0, unix.EAGAIN); err != nil || !side.Held() {
		t.Fatalf("a write that found no room: Sent = %v, held %v", err, side.Held())
	}
	deadline := time.Now().Add(10 * time.Second)
	for side.Held() && time.Now().Before(deadline) {
		if _, err := side.Flush(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatal("the client did not receive both writes intact and in order")
	}
}

// closeWrite sends close_notify: the client reads a clean end.
func TestTLSSideCloseNotify(t *testing.T) {
	side, client := tlsPair(t, false)
	side.Write([]byte("bye"))
	side.CloseWrite()
	b, err := io.ReadAll(client)
	if string(b) != "bye" || err != nil {
		t.Fatalf("client read %q, %v; want \"bye\" and a clean end", b, err)
	}
}

// slowConn writes in small pieces, as a client on a slow link.
type slowConn struct{ net.Conn }

func (c slowConn) Write(p []byte) (int, error) {
	for i := 0; i < len(p); i += 7 {
		if _, err := c.Conn.Write(p[i:min(i+7, len(p))]); err != nil {
			return i, err
		}
		time.Sleep(50 * time.Microsecond)
	}
	return len(p), nil
}

// BenchmarkSideWriteSlowPeer relays bursts to a peer that cannot take a
// burst at once: each write leaves ciphertext held until the socket drains.
func BenchmarkSideWriteSlowPeer(b *testing.B) {
	side, client := tlsPair(b, false)
	if err := unix.SetsockoptInt(side.tr.fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 8<<10); err != nil {
		b.Fatal(err)
	}
	go io.Copy(io.Discard, client)
	msg := make([]byte, 32<<10)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	partial := 0
	for b.Loop() {
		if _, err := side.Write(msg); err != nil {
			b.Fatal(err)
		}
		if side.Held() {
			partial++
		}
		for side.Held() {
			if _, err := side.Flush(); err != nil {
				b.Fatal(err)
			}
		}
	}
	if partial == 0 {
		b.Fatal("every write went out whole: the benchmark did not hold anything")
	}
}
