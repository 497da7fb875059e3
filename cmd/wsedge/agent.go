package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/wsedge/wsedge/cmd/wsedge/internal/config"
	"github.com/wsedge/wsedge/upstream"
)

// agentCmd runs `wsedge agent`: a sidecar that gossips one backend into the
// proxies' ring until SIGTERM or SIGINT, then drains it and leaves.
func agentCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("agent", stderr)
	join := fs.String("join", "", "gossip seeds, `HOST:PORT[,HOST:PORT...]`: proxies or other agents (required)")
	advertise := fs.String("advertise", "", "the backend's `HOST:PORT` as proxies should dial it (required)")
	health := fs.String("health", "", "`URL` checked locally: http(s)://... GET 2xx, ws(s)://... upgrade and ping, tcp://host:port connect; failing advertises draining (default: no check)")
	weight := fs.Int("weight", 1, "the backend's share of the ring, 1..1000")
	bind := fs.String("bind", "0.0.0.0:7946", "gossip address, TCP and UDP; change it when a proxy or another agent on this host uses the port")
	name := fs.String("name", "", "gossip node name, unique in the cluster (default: hostname and bind port)")
	secretFile := fs.String("secret-file", "", "gossip encryption key `file`, as the proxies' [discovery] secret_file; required unless --bind is a loopback address")
	plaintext := fs.Bool("allow-plaintext-gossip", false, "gossip without --secret-file on a non-loopback --bind, where anyone who reaches it could put backends in the ring")
	grace := fs.Duration("grace", 10*time.Second, "on SIGTERM, how long to advertise draining before leaving")
	interval := fs.Duration("check-interval", time.Second, "time between local health checks")
	profile := fs.String("profile", upstream.ProfileLAN, "gossip timing, as the proxies' [discovery] profile: lan, wan or local")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("agent: unexpected argument %q", fs.Arg(0))
	}
	switch {
	case *join == "":
		return fmt.Errorf("agent: --join is required: the gossip address of a proxy or another agent")
	case *advertise == "":
		return fmt.Errorf("agent: --advertise is required: the backend's host:port")
	case *weight < 1 || *weight > 1000:
		return fmt.Errorf("agent: --weight %d out of range (want 1..1000)", *weight)
	case *grace < 0:
		return fmt.Errorf("agent: --grace %v must not be negative", *grace)
	case *interval <= 0:
		return fmt.Errorf("agent: --check-interval %v must be positive", *interval)
	}
	var seeds []string
	for s := range strings.SplitSeq(*join, ",") {
		if s = strings.TrimSpace(s); s != "" {
			seeds = append(seeds, s)
		}
	}

	log, _ := newLogger(config.Default(), stderr) // JSON to stderr at info, as serve logs by default
	defer log.Sync()
	a, err := upstream.NewAgent(upstream.AgentConfig{
		Discovery: upstream.DiscoveryConfig{
			Bind:           *bind,
			Name:           *name,
			Join:           seeds,
			SecretFile:     *secretFile,
			Profile:        *profile,
			AllowPlaintext: *plaintext,
		},
		Advertise:     *advertise,
		Weight:        *weight,
		Health:        *health,
		CheckInterval: *interval,
		Grace:         *grace,
	}, log)
	if errors.Is(err, upstream.ErrPlaintextGossip) {
		return fmt.Errorf("agent: %w: pass --secret-file gossip.key, or --allow-plaintext-gossip", err)
	}
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	return a.Run(ctx)
}
