package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"syscall"
)

const usage = `wsedge: an edge reverse proxy for WebSocket applications

usage:
  wsedge serve  --config proxy.toml     run the proxy (also: wsedge --config ...)
  wsedge check  --config proxy.toml     validate a config; exit 1 listing every problem
  wsedge route  --config proxy.toml KEY print which backend KEY routes to now, and why
  wsedge upgrade [--config proxy.toml] [--binary PATH] [--admin HOST:PORT]
                                        replace the running proxy with a new binary (default: its own path) without
                                        closing a WebSocket; the running one keeps serving if the new one cannot start
  wsedge agent  --join HOST:PORT --advertise ADDR  run beside a backend and gossip it into the ring (--help: all flags)
  wsedge demo [--redis HOST:PORT]       run the proxy on 127.0.0.1:8080 in front of a three-backend chat room
  wsedge bench  MODE ...                WebSocket load generator: idle, echo, handshake; backend serves echo
  wsedge version                        print the version
`

// errQuiet is returned by commands that already printed why they failed.
var errQuiet = errors.New("")

// run is the whole program; main only maps its error to an exit status.
func run(args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	switch cmd {
	case "serve":
		return serve(ctx, args, stderr)
	case "check":
		return check(args, stdout, stderr)
	case "route":
		return routeCmd(args, stdout, stderr)
	case "upgrade":
		return upgradeCmd(args, stdout, stderr)
	case "agent":
		return agentCmd(ctx, args, stdout, stderr)
	case "demo":
		return demo(ctx, args, stdout, stderr)
	case "bench":
		return benchCmd(ctx, args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, versionString())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

// newFlags returns a flag set that reports errors to stderr instead of
// exiting.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}
