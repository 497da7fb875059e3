//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/wsedge/wsedge/cmd/wsedge/internal/config"
	"github.com/wsedge/wsedge/proxy"
)

// The new process's side of a binary upgrade: it says hello to the old
// process, takes the sockets it lends and the connections it hands over,
// and goes live once it has the first round.

// takeover is a new process's side of an upgrade: its end of the
// hand-over socket and the sockets the old process lent, by role, until
// the daemon takes them.
type takeover struct {
	h     *proxy.HandoffConn
	state proxy.HandoffState
}

// takeoverFromEnv opens the hand-over socket when an old process started
// this one to replace it, and says hello; nil otherwise.
func takeoverFromEnv() (*takeover, error) {
	v, ok := os.LookupEnv(proxy.HandoffEnv)
	if !ok {
		return nil, nil
	}
	os.Unsetenv(proxy.HandoffEnv) // not for a binary this one starts
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("%s=%q: want a descriptor number", proxy.HandoffEnv, v)
	}
	unix.CloseOnExec(fd)
	h, err := proxy.NewHandoffConn(os.NewFile(uintptr(fd), "handoff"))
	if err != nil {
		return nil, err
	}
	h.SetDeadline(time.Now().Add(upgradeStartTimeout))
	if err := h.SendHello(proxy.Hello(versionString())); err != nil {
		h.Close()
		return nil, fmt.Errorf("upgrade: saying hello to the old process: %w", err)
	}
	return &takeover{h: h}, nil
}

// fail tells the old process why this one gives up; nil-safe.
func (tk *takeover) fail(err error) {
	if tk == nil {
		return
	}
	tk.h.Fail(err.Error())
	tk.h.Close()
	tk.closeLent()
}

// recvState reads what the old process lends; nil-safe.
func (tk *takeover) recvState() error {
	if tk == nil {
		return nil
	}
	st, err := tk.h.RecvState()
	if err != nil {
		return fmt.Errorf("upgrade: reading the old process's state: %w", err)
	}
	tk.state = st
	return nil
}

// inherit makes d go on from the old process's state: request IDs, and
// its gossip node and members, so its ring is whole before it relays.
// Call it before d's backend set runs; nil-safe.
func (tk *takeover) inherit(d *daemon) {
	if tk == nil {
		return
	}
	d.srv.ContinueFrom(tk.state)
	d.set.Inherit(tk.state.Members)
}

// take returns the sockets lent for role when the old process opened them
// for addr, as this one's config has it too, and nil otherwise; the
// caller owns them.
func (tk *takeover) take(role, addr string) []int {
	if tk == nil || addr == "" {
		return nil
	}
	for i, s := range tk.state.Sockets {
		if s.Role == role && s.Addr == addr && s.FDs != nil {
			tk.state.Sockets[i].FDs = nil
			return s.FDs
		}
	}
	return nil
}

// takeListener is take for a Go listener: the admin or metrics one.
func (tk *takeover) takeListener(role, addr string) (net.Listener, error) {
	fds := tk.take(role, addr)
	if len(fds) != 1 {
		closeFDs(fds)
		return nil, nil
	}
	f := os.NewFile(uintptr(fds[0]), role)
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("%s listener from the old process: %w", role, err)
	}
	return ln, nil
}

// closeLent closes the sockets lent and not taken: this process's config
// does not have them.
func (tk *takeover) closeLent() {
	if tk == nil {
		return
	}
	for i := range tk.state.Sockets {
		closeFDs(tk.state.Sockets[i].FDs)
		tk.state.Sockets[i].FDs = nil
	}
}

// clientListener opens the client listener as f says: on the sockets the
// old process lent when it listened on the same address, else anew.
func (tk *takeover) clientListener(f *config.File, certs *certificate, loops int) (net.Listener, error) {
	fds := tk.take(roleClient, f.Listen)
	if fds == nil {
		return listen(f, certs, loops)
	}
	ln, err := proxy.AdoptTCP(fds, loops, listenOptions(f, certs)...)
	if err != nil {
		return nil, fmt.Errorf("listen on the old process's sockets: %w", err)
	}
	return ln, nil
}

// prepareAdmin is the daemon's prepareAdmin at start, on the admin and
// metrics sockets the old process lent where the addresses are the same.
func (tk *takeover) prepareAdmin(d *daemon, f *config.File) (*adminChange, error) {
	if tk == nil {
		return d.prepareAdmin(nil, f)
	}
	admin, err := tk.takeListener(roleAdmin, f.AdminListen)
	if err != nil {
		return nil, err
	}
	metrics, err := tk.takeListener(roleMetrics, f.MetricsListen)
	if err != nil {
		if admin != nil {
			admin.Close()
		}
		return nil, err
	}
	g := *f
	if admin != nil {
		g.AdminListen = ""
	}
	if metrics != nil {
		g.MetricsListen = ""
	}
	c, err := d.prepareAdmin(nil, &g)
	if err != nil {
		for _, ln := range []net.Listener{admin, metrics} {
			if ln != nil {
				ln.Close()
			}
		}
		return nil, err
	}
	if admin != nil {
		c.moveAdmin, c.admin = true, admin
	}
	if metrics != nil {
		c.moveMetrics, c.metrics = true, metrics
	}
	return c, nil
}

// takeOver takes the old process's connections over and goes live: once
// the first round is in, this process accepts clients and serves the
// admin endpoints, and the old one follows with the rounds of connections
// that finish their handshake there.
func (d *daemon) takeOver(tk *takeover) error {
	tk.closeLent()
	if err := tk.h.SendReady(); err != nil {
		return fmt.Errorf("upgrade: telling the old process: %w", err)
	}
	tk.h.SetDeadline(time.Time{})
	ctx, cancel := context.WithTimeout(d.life, upgradeStartTimeout+upgradeRoundTimeout)
	n, done, err := d.srv.TakeOver(ctx, tk.h)
	cancel()
	if err != nil {
		tk.h.Close()
		return fmt.Errorf("upgrade: taking the connections over: %w", err)
	}
	d.goLive()
	// A round's records and buffers are garbage once its connections
	// relay: give the memory back now rather than carry it at the next
	// GC's higher goal, so the host holds what one process did.
	debug.FreeOSMemory()
	d.upgrades.WithLabelValues("ok").Inc()
	d.log.Info("took over from the old process", zap.Int("pid", os.Getpid()), zap.Int("connections", n))
	sdNotify(fmt.Sprintf("MAINPID=%d\nREADY=1", os.Getpid()))
	if done {
		tk.h.Close()
		return nil
	}
	d.wg.Go(func() {
		defer tk.h.Close()
		for {
			n, done, err := d.srv.TakeOver(d.life, tk.h)
			switch {
			case err != nil:
				if d.life.Err() == nil && !errors.Is(err, io.ErrUnexpectedEOF) {
					d.log.Warn("a later hand-over round failed; the old process keeps those connections", zap.Error(err))
				}
				return
			case done:
				return
			case n > 0:
				debug.FreeOSMemory()
				d.log.Info("took over more connections from the old process", zap.Int("connections", n))
			}
		}
	})
	return nil
}

// sdNotify tells systemd about this process, when it runs under a unit
// that listens (Type=notify): READY=1 once it serves, MAINPID= when a new
// process takes over (NotifyAccess=all lets it say so).
func sdNotify(state string) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return
	}
	defer c.Close()
	c.Write([]byte(state))
}
