package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/wsedge/wsedge/affinity"
	"github.com/wsedge/wsedge/cmd/wsedge/internal/config"
	"github.com/wsedge/wsedge/proxy"
	"github.com/wsedge/wsedge/upstream"
)

// defaultConfigPath is read by serve when --config is not given.
const defaultConfigPath = "proxy.toml"

// loadConfig reads path; with no path it reads ./proxy.toml when there is
// one and otherwise returns the built-in defaults (defaulted true).
func loadConfig(path string) (f *config.File, defaulted bool, err error) {
	if path == "" {
		if _, err := os.Stat(defaultConfigPath); errors.Is(err, os.ErrNotExist) {
			return config.Default(), true, nil
		}
		path = defaultConfigPath
	}
	f, err = config.Load(path)
	return f, false, err
}

// proxyConfig is what the proxy package needs of the file.
func proxyConfig(f *config.File) (proxy.Config, error) {
	c := proxy.Config{
		Cookie:              f.Affinity.Cookie,
		Header:              f.Affinity.Header,
		Trusted:             affinity.NewTrustedProxies(f.Affinity.TrustedProxies),
		VNodes:              f.Ring.VNodes,
		LoadFactor:          f.Ring.LoadFactor,
		KeepRemoved:         f.Rebalance.OnRemove == "keep",
		MigrateOnAdd:        f.Rebalance.OnAdd == "migrate",
		MigrateRate:         f.Rebalance.MigrateRate,
		HandshakeTimeout:    f.WebSocket.HandshakeTimeout,
		PingInterval:        f.WebSocket.PingInterval,
		PongTimeout:         f.WebSocket.PongTimeout,
		WriteTimeout:        f.WebSocket.WriteTimeout,
		MaxMessageBytes:     f.WebSocket.MaxMessageBytes,
		MaxHeaderBytes:      int(f.Limits.MaxHeaderBytes),
		MaxConnections:      f.Limits.MaxConnections,
		MaxConnectionsPerIP: f.Limits.MaxConnectionsPerIP,
		AllowedOrigins:      f.WebSocket.AllowedOrigins,

		MaxConnectionAge:         f.WebSocket.MaxConnectionAge,
		MaxConnectionAgeJitter:   f.WebSocket.MaxConnectionAgeJitter,
		IdleTimeout:              f.WebSocket.IdleTimeout,
		ClientMessagesPerSecond:  f.Limits.ClientMessagesPerSecond,
		ClientMessageBurst:       f.Limits.ClientMessageBurst,
		ClientBytesPerSecond:     f.Limits.ClientBytesPerSecond,
		RateLimitGrace:           f.Limits.RateLimitGrace,
		HandshakesPerSecondPerIP: f.Limits.HandshakesPerSecondPerIP,
		HandshakeBurstPerIP:      f.Limits.HandshakeBurstPerIP,
	}
	switch f.Affinity.Key {
	case "cookie":
		c.Key = proxy.KeyCookie
	case "header":
		c.Key = proxy.KeyHeader
	default:
		c.Key = proxy.KeyIP
	}
	if f.UpstreamTLS.Enabled {
		tc, err := upstreamTLS(f.UpstreamTLS)
		if err != nil {
			return c, err
		}
		c.UpstreamTLS = tc
	}
	return c, nil
}

func upstreamTLS(u config.UpstreamTLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: u.ServerName, InsecureSkipVerify: u.InsecureSkipVerify}
	if u.CAFile != "" {
		pem, err := os.ReadFile(u.CAFile)
		if err != nil {
			return nil, fmt.Errorf("upstream_tls.ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("upstream_tls.ca_file: no PEM certificates in %s", u.CAFile)
		}
	}
	return tc, nil
}

// upstreamConfig is what the backend set needs of the file.
func upstreamConfig(f *config.File, pc proxy.Config) upstream.Config {
	return upstream.Config{
		Static: staticBackends(f),
		DNS:    dnsNames(f),
		Health: upstream.HealthConfig{Type: f.Health.Type, Path: f.Health.Path, Interval: f.Health.Interval,
			Timeout: f.Health.Timeout, Rise: f.Health.Rise, Fall: f.Health.Fall},
		Discovery: upstream.DiscoveryConfig{Bind: f.Discovery.Bind, Name: f.Discovery.Name, Join: f.Discovery.Join,
			SecretFile: f.Discovery.SecretFile, Profile: f.Discovery.Profile,
			AllowPlaintext: f.Discovery.AllowPlaintextGossip, AllowedBackends: f.Discovery.AllowedBackends},
		UpstreamTLS: pc.UpstreamTLS,
	}
}

// staticBackends lists the [[upstream]] entries that name one backend, by
// its address.
func staticBackends(f *config.File) []upstream.Backend {
	var out []upstream.Backend
	for _, u := range f.Upstreams {
		if !fromDNS(u) {
			out = append(out, upstream.Backend{Addr: u.Address, Weight: u.Weight})
		}
	}
	return out
}

// dnsNames lists the [[upstream]] entries whose backends come from DNS.
func dnsNames(f *config.File) []upstream.DNSName {
	var out []upstream.DNSName
	for _, u := range f.Upstreams {
		if fromDNS(u) {
			out = append(out, upstream.DNSName{Addr: u.Address, SRV: u.SRV, Weight: u.Weight,
				Interval: u.Resolve, Resolver: u.Resolver})
		}
	}
	return out
}

// fromDNS reports whether an [[upstream]] entry's backends come from DNS.
func fromDNS(u config.Upstream) bool { return u.SRV != "" || u.Resolve > 0 }

// newLogger builds the process logger at the file's level and format. The
// level can be changed later through the returned AtomicLevel.
func newLogger(f *config.File, w io.Writer) (*zap.Logger, zap.AtomicLevel) {
	level := zap.NewAtomicLevelAt(logLevel(f.LogLevel))
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if f.LogFormat == "console" {
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	} else {
		enc = zapcore.NewJSONEncoder(encCfg)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), level)
	return zap.New(core), level
}

func logLevel(s string) zapcore.Level {
	l, err := zapcore.ParseLevel(s)
	if err != nil {
		return zapcore.InfoLevel
	}
	return l
}
