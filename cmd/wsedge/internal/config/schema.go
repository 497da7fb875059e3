package config

import (
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2/unstable"
)

// kind is the shape of TOML a key takes.
type kind int

const (
	kindLeaf       kind = iota // a value: string, number, boolean or array of them
	kindTable                  // [name] or name = { ... }
	kindTableArray             // [[name]] or name = [{ ... }, ...]
)

// field is one key of the file format.
//
// The schema built by schema is the only list of keys there is: decoding,
// the unknown-key check, the suggestions for typos and the test that
// proxy.toml.example documents every key all read it, so a key cannot be
// added to one and forgotten in another.
type field struct {
	name string
	kind kind
	want string // what a leaf takes, for messages

	// decode converts a leaf's value and stores it, or tells d what is wrong.
	decode func(d *decoder, key string, line int, v *unstable.Node)
	// fields are a table's keys.
	fields []field
	// add appends an element to a table array and returns its index and
	// keys. Elements are filled one after the other, never revisited, which
	// is what keeps the pointers inside the returned fields valid.
	add func() (int, []field)
}

// schema returns the keys of proxy.toml, each bound to where its value goes
// in f.
func schema(f *File) []field {
	return []field{
		str("listen", &f.Listen),
		str("admin_listen", &f.AdminListen),
		str("log_level", &f.LogLevel),
		str("log_format", &f.LogFormat),
		boolean("proxy_protocol", &f.ProxyProtocol),
		duration("shutdown_timeout", &f.ShutdownTimeout),
		duration("upgrade_linger", &f.UpgradeLinger),
		str("admin_token_file", &f.AdminTokenFile),
		str("metrics_listen", &f.MetricsListen),
		table("tls",
			str("cert", &f.TLS.Cert),
			str("key", &f.TLS.Key),
			strs("curves", &f.TLS.Curves),
		),
		table("upstream_tls",
			boolean("enabled", &f.UpstreamTLS.Enabled),
			str("ca_file", &f.UpstreamTLS.CAFile),
			str("server_name", &f.UpstreamTLS.ServerName),
			boolean("insecure_skip_verify", &f.UpstreamTLS.InsecureSkipVerify),
		),
		table("affinity",
			str("key", &f.Affinity.Key),
			str("cookie", &f.Affinity.Cookie),
			str("header", &f.Affinity.Header),
			prefixes("trusted_proxies", &f.Affinity.TrustedProxies),
		),
		table("ring",
			integer("vnodes", &f.Ring.VNodes),
			number("load_factor", &f.Ring.LoadFactor),
		),
		tableArray("upstream", func() (int, []field) {
			f.Upstreams = append(f.Upstreams, Upstream{Weight: 1})
			i := len(f.Upstreams) - 1
			u := &f.Upstreams[i]
			return i, []field{
				str("address", &u.Address),
				integer("weight", &u.Weight),
				duration("resolve", &u.Resolve),
				str("srv", &u.SRV),
				str("resolver", &u.Resolver),
			}
		}),
		table("health",
			str("type", &f.Health.Type),
			str("path", &f.Health.Path),
			duration("interval", &f.Health.Interval),
			duration("timeout", &f.Health.Timeout),
			integer("rise", &f.Health.Rise),
			integer("fall", &f.Health.Fall),
		),
		table("discovery",
			str("bind", &f.Discovery.Bind),
			str("name", &f.Discovery.Name),
			strs("join", &f.Discovery.Join),
			str("secret_file", &f.Discovery.SecretFile),
			str("profile", &f.Discovery.Profile),
			boolean("allow_plaintext_gossip", &f.Discovery.AllowPlaintextGossip),
			prefixes("allowed_backends", &f.Discovery.AllowedBackends),
		),
		table("websocket",
			duration("handshake_timeout", &f.WebSocket.HandshakeTimeout),
			duration("ping_interval", &f.WebSocket.PingInterval),
			duration("pong_timeout", &f.WebSocket.PongTimeout),
			size("max_message_bytes", &f.WebSocket.MaxMessageBytes),
			duration("write_timeout", &f.WebSocket.WriteTimeout),
			strs("allowed_origins", &f.WebSocket.AllowedOrigins),
			duration("max_connection_age", &f.WebSocket.MaxConnectionAge),
			number("max_connection_age_jitter", &f.WebSocket.MaxConnectionAgeJitter),
			duration("idle_timeout", &f.WebSocket.IdleTimeout),
		),
		table("rebalance",
			str("on_remove", &f.Rebalance.OnRemove),
			str("on_add", &f.Rebalance.OnAdd),
			integer("migrate_rate", &f.Rebalance.MigrateRate),
		),
		table("limits",
			integer("max_connections", &f.Limits.MaxConnections),
			integer("max_connections_per_ip", &f.Limits.MaxConnectionsPerIP),
			size("max_header_bytes", &f.Limits.MaxHeaderBytes),
			integer("client_messages_per_second", &f.Limits.ClientMessagesPerSecond),
			integer("client_message_burst", &f.Limits.ClientMessageBurst),
			size("client_bytes_per_second", &f.Limits.ClientBytesPerSecond),
			duration("rate_limit_grace", &f.Limits.RateLimitGrace),
			integer("handshakes_per_second_per_ip", &f.Limits.HandshakesPerSecondPerIP),
			integer("handshake_burst_per_ip", &f.Limits.HandshakeBurstPerIP),
		),
		table("tuning",
			integer("loops", &f.Tuning.Loops),
			str("io_uring", &f.Tuning.IOUring),
		),
	}
}

func table(name string, fields ...field) field {
	return field{name: name, kind: kindTable, fields: fields}
}

func tableArray(name string, add func() (int, []field)) field {
	return field{name: name, kind: kindTableArray, add: add}
}

func leaf(name, want string, decode func(d *decoder, key string, line int, v *unstable.Node)) field {
	return field{name: name, kind: kindLeaf, want: want, decode: decode}
}

func str(name string, dst *string) field {
	return leaf(name, wantString, func(d *decoder, key string, line int, v *unstable.Node) {
		if s, ok := d.str(key, line, v); ok {
			*dst = s
		}
	})
}

func boolean(name string, dst *bool) field {
	return leaf(name, wantBool, func(d *decoder, key string, line int, v *unstable.Node) {
		if b, ok := d.boolean(key, line, v); ok {
			*dst = b
		}
	})
}

func integer(name string, dst *int) field {
	return leaf(name, wantInt, func(d *decoder, key string, line int, v *unstable.Node) {
		if n, ok := d.integer(key, line, v); ok {
			*dst = n
		}
	})
}

func number(name string, dst *float64) field {
	return leaf(name, wantNumber, func(d *decoder, key string, line int, v *unstable.Node) {
		if x, ok := d.number(key, line, v); ok {
			*dst = x
		}
	})
}

func duration(name string, dst *time.Duration) field {
	return leaf(name, wantDuration, func(d *decoder, key string, line int, v *unstable.Node) {
		if t, ok := d.duration(key, line, v); ok {
			*dst = t
		}
	})
}

func size(name string, dst *int64) field {
	return leaf(name, wantSize, func(d *decoder, key string, line int, v *unstable.Node) {
		if n, ok := d.size(key, line, v); ok {
			*dst = n
		}
	})
}

func strs(name string, dst *[]string) field {
	return leaf(name, wantStrings, func(d *decoder, key string, line int, v *unstable.Node) {
		if ss, ok := d.strs(key, line, v); ok {
			*dst = ss
		}
	})
}

func prefixes(name string, dst *[]netip.Prefix) field {
	return leaf(name, wantPrefixes, func(d *decoder, key string, line int, v *unstable.Node) {
		if ps, ok := d.prefixes(key, line, v); ok {
			*dst = ps
		}
	})
}

// lookup finds the key called name among fields.
func lookup(fields []field, name string) (field, bool) {
	for _, fd := range fields {
		if fd.name == name {
			return fd, true
		}
	}
	return field{}, false
}

// suggest names the key a typo most likely meant: a key of the same table a
// few edits away ("ping_intervall"), or else a key of that exact name in
// exactly one other table, for the common mistake of writing it under the
// wrong header. It returns "" when nothing is close.
func suggest(root, fields []field, name string) string {
	best, bestDist := "", max(2, len(name)/3)+1
	for _, fd := range fields {
		// The lengths alone bound the distance from below; skipping on
		// them keeps a file full of junk keys cheap to report.
		if abs(len(name)-len(fd.name)) >= bestDist {
			continue
		}
		if dist := editDistance(name, fd.name); dist < bestDist {
			best, bestDist = fd.name, dist
		}
	}
	if best != "" {
		return best
	}
	// A name found in several tables (key is in [tls] and [affinity]) has
	// no single answer.
	var found []string
	for _, t := range root {
		if _, ok := lookup(t.fields, name); ok && t.kind == kindTable {
			found = append(found, t.name+"."+name)
		}
	}
	if len(found) == 1 {
		return found[0]
	}
	return ""
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// indexKey names element i of the array at key, as in "upstream[2]".
func indexKey(key string, i int) string {
	return key + "[" + strconv.Itoa(i) + "]"
}

// joinKey names the key name inside the table at key. A name that is not a
// bare TOML key is quoted, as the file must quote it.
func joinKey(key, name string) string {
	if name == "" || strings.Trim(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") != "" {
		name = strconv.Quote(name)
	}
	if key == "" {
		return name
	}
	return key + "." + name
}
