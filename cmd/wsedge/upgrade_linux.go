//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/wsedge/wsedge/proxy"
)

// Bounds of an upgrade, as the old process waits on the new one.
const (
	// upgradeStartTimeout: from starting the new binary to its word that
	// its config is good and its listeners are built.
	upgradeStartTimeout = 30 * time.Second
	// upgradeRoundTimeout: one round of connections, from the first one
	// stopped to the new process's word that it has them all.
	upgradeRoundTimeout = 60 * time.Second
	// successorExit is how long a new process that gave up gets to exit
	// before it is killed.
	successorExit = 5 * time.Second
)

// Roles of the sockets an old process lends.
const (
	roleClient  = "client"
	roleAdmin   = "admin"
	roleMetrics = "metrics"
)

// successor is the new process an upgrade started, and the socket the old
// one hands over on.
type successor struct {
	cmd     *exec.Cmd
	h       *proxy.HandoffConn
	exited  chan struct{} // closed when the process ended; waitErr says how
	waitErr error
}

// why says what went wrong with the new process at step: it exited, and
// how, or what err says.
func (s *successor) why(step string, err error) error {
	select {
	case <-s.exited:
	case <-time.After(time.Second):
	}
	select {
	case <-s.exited:
		var refused *proxy.HandoffRefused
		if errors.As(err, &refused) {
			return fmt.Errorf("new process gave up %s: %s (%v)", step, refused.Reason, s.waitErr)
		}
		return fmt.Errorf("new process exited %s (%v)", step, s.waitErr)
	default:
	}
	return fmt.Errorf("new process %s: %w", step, err)
}

// abandon ends a new process that will not take over: its socket is
// closed, which tells it so, and it is killed if it does not exit.
func (s *successor) abandon() {
	s.h.Close()
	select {
	case <-s.exited:
		return
	case <-time.After(successorExit):
	}
	s.cmd.Process.Kill()
	<-s.exited
}

// upgrade starts binary (this process's own path when empty) with this
// process's arguments, lends it the listening sockets, and hands it every
// connection that can move. It returns once the new process serves, or
// why it will not: then everything is as it was before, this process
// serving, and the new process gone.
func (d *daemon) upgrade(ctx context.Context, binary string) (*successor, upgradeResult, error) {
	res := upgradeResult{Result: "failed"}
	bin, err := upgradeBinary(binary)
	res.Binary = bin
	if err != nil {
		return nil, res, err
	}
	h, end, err := proxy.NewHandoffPair()
	if err != nil {
		return nil, res, err
	}
	cmd := exec.Command(bin, os.Args[1:]...)
	cmd.Env = append(withoutEnv(os.Environ(), proxy.HandoffEnv), proxy.HandoffEnv+"=3")
	cmd.ExtraFiles = []*os.File{end} // descriptor 3 in the new process
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	err = cmd.Start()
	end.Close()
	if err != nil {
		h.Close()
		return nil, res, fmt.Errorf("start %s: %w", bin, err)
	}
	s := &successor{cmd: cmd, h: h, exited: make(chan struct{})}
	go func() { s.waitErr = cmd.Wait(); close(s.exited) }()
	res.PID = cmd.Process.Pid
	d.log.Info("upgrade: new process started", zap.String("binary", bin), zap.Int("new_pid", res.PID))
	fail := func(err error) (*successor, upgradeResult, error) {
		s.abandon()
		res.PID = 0
		res.Error = err.Error()
		return nil, res, err
	}

	stop := context.AfterFunc(ctx, func() { h.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	h.SetDeadline(time.Now().Add(upgradeStartTimeout))
	hello, err := h.RecvHello()
	if err != nil {
		return fail(s.why("before it said hello", err))
	}
	version, ok := proxy.ChooseVersion(hello)
	if !ok {
		err := fmt.Errorf("new process speaks hand-over versions %d to %d, this one %d", hello.MinVersion, hello.MaxVersion, proxy.HandoffVersion)
		h.Fail(err.Error())
		return fail(err)
	}
	st := d.srv.HandoffState()
	st.Version = version
	st.Members = d.set.Bequest()
	lent, err := d.lendSockets()
	if err != nil {
		return fail(err)
	}
	st.Sockets = lent
	err = h.SendState(st)
	for _, l := range lent {
		closeFDs(l.FDs) // the new process has its own copies now
	}
	if err != nil {
		return fail(s.why("while it was sent the sockets", h.RefusalOr(err)))
	}
	if err := h.AwaitReady(); err != nil {
		return fail(s.why("before it was ready", err))
	}
	h.SetDeadline(time.Time{})

	// From here on the new process accepts new clients, once it has the
	// connections: this process stops, and the kernel queues them
	// meanwhile.
	d.mu.Lock()
	ln := d.ln
	d.mu.Unlock()
	if err := proxy.PauseListener(ln); err != nil {
		return fail(err)
	}
	rctx, cancel := context.WithTimeout(ctx, upgradeRoundTimeout)
	moved, err := d.srv.HandOver(rctx, h, proxy.HandOverOptions{})
	cancel()
	if err != nil {
		var refused *proxy.HandoffRefused
		if !errors.As(err, &refused) {
			h.Fail("old process gave up: " + err.Error())
		}
		proxy.ResumeListener(ln)
		return fail(s.why("while taking the connections", err))
	}
	res.Result, res.Moved, res.Stayed, res.Took = "ok", moved.Moved, moved.Stayed, moved.Took.Round(time.Millisecond).String()
	return s, res, nil
}

// retire ends this process once its successor serves: the listeners it
// lent are closed here, a last round hands over the connections that were
// in their handshake, and those that cannot move (TLS) relay on for
// upgrade_linger, or until a signal, then close with 1012.
func (d *daemon) retire(ctx context.Context, s *successor) {
	// The new process goes on as this gossip node, once this one frees
	// its port: the cluster sees no member leave.
	d.set.ReleaseGossip()
	d.mu.Lock()
	d.ln.Close() // the new process accepts from its copies
	for _, srv := range []*http.Server{d.admin, d.metrics} {
		if srv == nil {
			continue
		}
		// Its listener is the new process's now. Shutdown closes this
		// process's copy and the idle connections, so that scrapers and
		// operators reconnect to the new process, and lets the requests
		// under way (the upgrade's own) finish.
		d.wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), successorExit)
			defer cancel()
			srv.Shutdown(ctx)
		})
	}
	cur := d.cur
	d.mu.Unlock()

	// Clients accepted before the pause finish their handshake here;
	// then they can move too.
	for deadline := time.Now().Add(cur.WebSocket.HandshakeTimeout + time.Second); d.srv.Handshaking() > 0 && time.Now().Before(deadline) && ctx.Err() == nil; {
		time.Sleep(20 * time.Millisecond)
	}
	if ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, upgradeRoundTimeout)
		res, err := d.srv.HandOver(rctx, s.h, proxy.HandOverOptions{})
		cancel()
		switch {
		case err != nil:
			d.log.Warn("last hand-over round failed; those connections stay here until upgrade_linger", zap.Error(err))
		case res.Moved > 0:
			d.log.Info("handed over the connections that finished their handshake meanwhile", zap.Int("moved", res.Moved))
		}
		s.h.SendDone()
	}
	s.h.Close()

	// A stop signal (ctx) cuts the lingering short, not the closing.
	linger, stopLinger := context.WithTimeout(ctx, cur.UpgradeLinger)
	defer stopLinger()
	bound, cancel := context.WithTimeout(context.Background(), cur.UpgradeLinger+cur.ShutdownTimeout)
	defer cancel()
	if err := d.srv.Retire(bound, linger.Done()); err != nil {
		d.log.Warn("shutdown cut short", zap.Error(err))
	}
	d.mu.Lock()
	d.closeAdmin()
	d.mu.Unlock()
	d.cancel()
	d.wg.Wait()
	d.log.Info("stopped; the new process serves", zap.Int("new_pid", s.cmd.Process.Pid))
}

// lendSockets returns duplicates of the listening sockets, by role, to
// send to the new process.
func (d *daemon) lendSockets() ([]proxy.HandoffSockets, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []proxy.HandoffSockets
	fail := func(err error) ([]proxy.HandoffSockets, error) {
		for _, l := range out {
			closeFDs(l.FDs)
		}
		return nil, err
	}
	fds, err := proxy.ListenerFDs(d.ln)
	if err != nil {
		return fail(fmt.Errorf("client listener: %w", err))
	}
	out = append(out, proxy.HandoffSockets{Role: roleClient, Addr: d.cur.Listen, FDs: fds})
	for _, l := range []struct {
		role, addr string
		ln         net.Listener
	}{{roleAdmin, d.cur.AdminListen, d.adminLn}, {roleMetrics, d.cur.MetricsListen, d.metricsLn}} {
		if l.ln == nil {
			continue
		}
		fd, err := dupListener(l.ln)
		if err != nil {
			return fail(fmt.Errorf("%s listener: %w", l.role, err))
		}
		out = append(out, proxy.HandoffSockets{Role: l.role, Addr: l.addr, FDs: []int{fd}})
	}
	return out, nil
}

// dupListener duplicates a Go listener's socket.
func dupListener(ln net.Listener) (int, error) {
	sc, ok := ln.(syscallConner)
	if !ok {
		return -1, errors.New("not a socket")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	cerr := raw.Control(func(s uintptr) { fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) })
	if cerr != nil {
		return -1, cerr
	}
	return fd, err
}

type syscallConner interface {
	SyscallConn() (syscall.RawConn, error)
}

// upgradeBinary is the binary to start: the one named, or this process's
// own path, where a new build is put over the running one.
func upgradeBinary(binary string) (string, error) {
	if binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("finding this binary: %w", err)
		}
		binary = exe
	}
	fi, err := os.Stat(binary)
	switch {
	case err != nil:
		return binary, err
	case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0:
		return binary, fmt.Errorf("%s: not an executable file", binary)
	}
	return binary, nil
}

func withoutEnv(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
