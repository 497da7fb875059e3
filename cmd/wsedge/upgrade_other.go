//go:build !linux

package main

import (
	"context"
	"errors"
	"net"

	"github.com/wsedge/wsedge/cmd/wsedge/internal/config"
)

// Binary upgrades hand sockets over with SCM_RIGHTS between the event
// loops of two processes: Linux only. Elsewhere a process is never started
// by one, and refuses to start one.

type successor struct{}

type takeover struct{}

func (d *daemon) upgrade(context.Context, string) (*successor, upgradeResult, error) {
	return nil, upgradeResult{Result: "failed"}, errors.New("binary upgrades need Linux")
}

func (d *daemon) retire(context.Context, *successor) {}

func takeoverFromEnv() (*takeover, error) { return nil, nil }

func (tk *takeover) fail(error) {}

func (tk *takeover) recvState() error { return nil }

func (tk *takeover) inherit(*daemon) {}

func (tk *takeover) clientListener(f *config.File, certs *certificate, loops int) (net.Listener, error) {
	return listen(f, certs, loops)
}

func (tk *takeover) prepareAdmin(d *daemon, f *config.File) (*adminChange, error) {
	return d.prepareAdmin(nil, f)
}

func (d *daemon) takeOver(*takeover) error { return errors.New("binary upgrades need Linux") }

func sdNotify(string) {}
