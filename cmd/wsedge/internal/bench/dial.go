package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/gobwas/ws"
)

const (
	// defaultDialTimeout bounds a TCP connect plus the upgrade.
	defaultDialTimeout = 5 * time.Second
	// handshakeBufferSize holds the server's 101 response head; the
	// proxies measured send 150-300 bytes.
	handshakeBufferSize = 1024
	// maxDialsInFlight bounds concurrent connects when opening many
	// connections, so that a slow target sees a queue, not a SYN flood.
	maxDialsInFlight = 128
)

// Transport is what a client connection carries beneath its WebSocket
// handshake: a PROXY protocol header first when ProxyHeader asks for one,
// as a balancer in front of the proxy would send, then TLS for wss://
// targets. The zero value is plain TCP with Go's TLS defaults for wss://.
type Transport struct {
	// ProxyHeader, when v1 or v2, opens every connection with a PROXY
	// protocol header naming the connection's own source and destination
	// addresses, so the proxy sees the address it would have seen without
	// the header.
	ProxyHeader ProxyVersion
	// TLS is the client configuration for wss:// targets (see ClientTLS).
	// Each connection uses a copy without a session cache: no handshake
	// resumes a session. Nil means crypto/tls's defaults, verifying against
	// the system's roots. It is not modified.
	TLS *tls.Config
}

// DialError says which connection failed and at what step.
type DialError struct {
	Source netip.Addr // zero when the kernel chose
	Target string
	Step   string // "connect", "proxy header", "tls" or "upgrade"
	Err    error
}

func (e *DialError) Error() string {
	src := "any"
	if e.Source.IsValid() {
		src = e.Source.String()
	}
	return fmt.Sprintf("%s %s from %s: %v", e.Step, e.Target, src, e.Err)
}

func (e *DialError) Unwrap() error { return e.Err }

// dialer opens client WebSocket connections: connection i from source i
// and to target i, round-robin over each list. It is safe for concurrent
// use.
type dialer struct {
	targets   Targets
	sources   *Sources
	transport Transport
	timeout   time.Duration
}

func newDialer(targets Targets, sources *Sources, tr Transport, timeout time.Duration) (*dialer, error) {
	if len(targets) == 0 {
		return nil, errors.New("no target")
	}
	if tr.ProxyHeader > 2 {
		return nil, fmt.Errorf("proxy protocol %v: want v1 or v2", tr.ProxyHeader)
	}
	if timeout <= 0 {
		timeout = defaultDialTimeout
	}
	return &dialer{targets: targets, sources: sources, transport: tr, timeout: timeout}, nil
}

// dial connects and upgrades connection i, with a PROXY header and TLS as
// d's Transport and the target say; the returned conn is a *tls.Conn for a
// wss:// target. The returned reader holds any bytes the server sent right
// after its 101 and then reads from the connection; size is its buffer
// size.
func (d *dialer) dial(ctx context.Context, i, size int) (net.Conn, *bufio.Reader, error) {
	tg, src := d.targets.at(i), d.sources.At(i)
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	nd := net.Dialer{Control: bindNoPort}
	if src.IsValid() {
		nd.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
	}
	conn, err := nd.DialContext(ctx, "tcp", tg.Addr)
	if err != nil {
		return nil, nil, &DialError{Source: src, Target: tg.Addr, Step: "connect", Err: err}
	}
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	// The deadline bounds the header, TLS and the upgrade; a cancelled ctx
	// cuts them short.
	raw := conn
	stop := context.AfterFunc(ctx, func() { _ = raw.SetDeadline(time.Unix(1, 0)) })
	conn, br, step, err := d.open(conn, tg)
	stopped := stop()
	if err == nil && !stopped {
		err = context.Cause(ctx)
	}
	if err != nil {
		conn.Close()
		return nil, nil, &DialError{Source: src, Target: tg.Addr, Step: step, Err: err}
	}
	_ = conn.SetDeadline(time.Time{})
	if br == nil {
		return conn, bufio.NewReaderSize(conn, size), nil
	}
	// Bytes past the 101 sit in br (a pooled reader, kept for good).
	return conn, bufio.NewReaderSize(io.MultiReader(br, conn), size), nil
}

// open takes a connected socket through the PROXY header, TLS and the
// upgrade, and returns the connection to use from then on (the TLS one
// for a wss:// target, even when it failed: closing it closes the socket)
// and, on failure, the step it was at.
func (d *dialer) open(conn net.Conn, tg Target) (_ net.Conn, br *bufio.Reader, step string, err error) {
	if v := d.transport.ProxyHeader; v != 0 {
		hdr, err := proxyHeader(v, conn.LocalAddr(), conn.RemoteAddr())
		if err == nil {
			_, err = conn.Write(hdr)
		}
		if err != nil {
			return conn, nil, "proxy header", err
		}
	}
	if tg.TLS {
		tc := tls.Client(conn, connTLS(d.transport.TLS, tg))
		conn = tc
		// The socket's deadline bounds the handshake too.
		if err := tc.Handshake(); err != nil {
			return conn, nil, "tls", err
		}
	}
	br, _, err = ws.Dialer{ReadBufferSize: handshakeBufferSize}.Upgrade(conn, tg.u)
	return conn, br, "upgrade", err
}

// WaitReady retries a WebSocket handshake with target until one succeeds
// or wait has passed, so that a run does not start before the proxy and
// its backends are up. It connects from sources, when there are any, as
// the run will: a proxy may trust only those. It returns the last error on
// timeout, and at once when the target's certificate is not trusted, which
// waiting cannot change.
func WaitReady(ctx context.Context, target Target, sources *Sources, tr Transport, wait time.Duration) error {
	d, err := newDialer(Targets{target}, sources, tr, time.Second)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		conn, _, err := d.dial(ctx, 0, 64)
		if err == nil {
			_, _ = conn.Write(closeFrame(ws.StatusNormalClosure, newMask()))
			return conn.Close()
		}
		var untrusted *tls.CertificateVerificationError
		if errors.As(err, &untrusted) {
			return err
		}
		// An attempt cut by the end of the wait says less than the one
		// before it.
		if last == nil || ctx.Err() == nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %v: %w", target.URL, wait, last)
		case <-tick.C:
		}
	}
}
