package bench

import (
	"bufio"
	"context"
	"net"
	"sync"
	"time"

	"github.com/gobwas/ws"
)

// clientConn is one open client WebSocket. It is used by one goroutine at
// a time.
type clientConn struct {
	conn net.Conn
	fr   frameReader
}

func newClientConn(conn net.Conn, r *bufio.Reader) *clientConn {
	c := &clientConn{conn: conn}
	c.fr = frameReader{r: r, w: conn, mask: newMask()}
	return c
}

// opened is the outcome of opening many connections.
type opened struct {
	conns    []*clientConn // the ones that opened, in no particular order
	failed   int
	firstErr error
	took     time.Duration
}

// openConns opens connections first..first+n-1 with at most
// maxDialsInFlight connects outstanding and, when rate is positive, no
// faster than rate per second. Each reader has bufSize bytes of buffer.
// It returns when every attempt has ended or ctx is done.
func openConns(ctx context.Context, d *dialer, first, n int, rate float64, bufSize int) opened {
	var (
		mu  sync.Mutex // guards out
		out opened
		wg  sync.WaitGroup
		sem = make(chan struct{}, maxDialsInFlight)
	)
	start := time.Now()
	for i := range n {
		if rate > 0 {
			due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if wait := time.Until(due); wait > 0 && !sleep(ctx, wait) {
				break
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			conn, r, err := d.dial(ctx, first+i, bufSize)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				out.failed++
				if out.firstErr == nil {
					out.firstErr = err
				}
				return
			}
			out.conns = append(out.conns, newClientConn(conn, r))
		})
	}
	wg.Wait()
	out.took = time.Since(start)
	// Attempts never made because ctx ended count as failures.
	out.failed = n - len(out.conns)
	if out.firstErr == nil && out.failed > 0 {
		out.firstErr = context.Cause(ctx)
	}
	return out
}

// closeAll closes every connection, sending a close frame first when
// polite is set.
func closeAll(conns []*clientConn, polite bool) {
	for _, c := range conns {
		if polite {
			_ = c.conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			_, _ = c.conn.Write(closeFrame(ws.StatusNormalClosure, c.fr.mask))
		}
		_ = c.conn.Close()
	}
}

// sleep waits for d or until ctx is done, and reports whether the full
// time passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
