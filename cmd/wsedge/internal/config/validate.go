package config

import (
	"cmp"
	"fmt"
	"math"
	"strings"
	"time"
)

// Validate checks f against every rule Parse applies after decoding: ranges,
// enumerations, address formats and the rules that tie keys together. It
// returns Problems, without line numbers, or nil. Use it after changing a
// File in code, for example from command-line flags.
func (f *File) Validate() error {
	v := validator{file: f.Path}
	v.check(f)
	if len(v.probs) == 0 {
		return nil
	}
	sortProblems(v.probs)
	return v.probs
}

// validator applies the rules that need a whole decoded File. It reports each
// problem on the key that is wrong and, when the key came from a file, the
// line that set it.
type validator struct {
	file  string
	lines map[string]int  // dotted key → line; nil when not from a file
	bad   map[string]bool // keys already reported while decoding
	probs Problems
}

// ok reports whether none of keys, nor a table around them, was rejected
// while decoding. A rule that read a rejected key would judge the default
// value left in its place, and blame the user for something they did not
// write.
func (v *validator) ok(keys ...string) bool {
	for _, k := range keys {
		for ; k != ""; k = parentKey(k) {
			if v.bad[k] {
				return false
			}
		}
	}
	return true
}

// addf records a problem with key. A key the file does not set, such as a
// required key that is missing, takes the line of the table around it.
func (v *validator) addf(key, format string, args ...any) {
	line := 0
	for k := key; k != ""; k = parentKey(k) {
		if l, ok := v.lines[k]; ok {
			line = l
			break
		}
	}
	v.probs = append(v.probs, Problem{File: v.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// parentKey returns the table or array around key: "upstream[2]" for
// "upstream[2].address", "upstream" for "upstream[2]".
func parentKey(key string) string {
	i := strings.LastIndexAny(key, ".[")
	if i < 0 {
		return ""
	}
	return key[:i]
}

func (v *validator) check(f *File) {
	v.top(f)
	v.tls(f)
	v.affinity(f)
	v.ring(f)
	v.upstreams(f)
	v.health(f)
	v.discovery(f)
	v.websocket(f)
	v.rebalance(f)
	v.limits(f)
	v.tuning(f)
}

func (v *validator) top(f *File) {
	if f.Listen == "" {
		v.addf("listen", "must not be empty")
	} else {
		v.hostPort("listen", f.Listen, true)
	}
	if f.AdminListen != "" {
		v.hostPort("admin_listen", f.AdminListen, true)
	}
	if f.MetricsListen != "" {
		v.hostPort("metrics_listen", f.MetricsListen, true)
	}
	v.oneOf("log_level", f.LogLevel, "debug", "info", "warn", "error")
	v.oneOf("log_format", f.LogFormat, "json", "console")
	v.positive("shutdown_timeout", f.ShutdownTimeout)
	v.notNegative("upgrade_linger", f.UpgradeLinger)
	if f.ProxyProtocol && len(f.Affinity.TrustedProxies) == 0 && v.ok("affinity.trusted_proxies") {
		v.addf("proxy_protocol", "needs affinity.trusted_proxies: PROXY headers are accepted only from trusted proxies")
	}
}

func (v *validator) tls(f *File) {
	switch {
	case f.TLS.Cert != "" && f.TLS.Key == "" && v.ok("tls.key"):
		v.addf("tls.key", "missing: tls.cert is set, and both are needed")
	case f.TLS.Key != "" && f.TLS.Cert == "" && v.ok("tls.cert"):
		v.addf("tls.cert", "missing: tls.key is set, and both are needed")
	}
	for i, c := range f.TLS.Curves {
		if _, ok := CurveID(c); !ok {
			v.addf(indexKey("tls.curves", i), "unknown key exchange %q (want %s)", c, curveNames)
		}
	}
}

func (v *validator) affinity(f *File) {
	a := f.Affinity
	v.oneOf("affinity.key", a.Key, "ip", "cookie", "header")
	// The names are checked whatever the key, so that switching key later
	// cannot reveal a mistake made long before.
	if a.Cookie != "" && !isToken(a.Cookie) {
		v.addf("affinity.cookie", "invalid cookie name %q (want a token: letters, digits and !#$%%&'*+-.^_`|~)", a.Cookie)
	}
	if a.Header != "" && !isToken(a.Header) {
		v.addf("affinity.header", "invalid header name %q (want a token: letters, digits and !#$%%&'*+-.^_`|~)", a.Header)
	}
	if a.Key == "cookie" && a.Cookie == "" && v.ok("affinity.cookie") {
		v.addf("affinity.cookie", "must not be empty when affinity.key is \"cookie\"")
	}
	if a.Key == "header" && a.Header == "" && v.ok("affinity.header") {
		v.addf("affinity.header", "must not be empty when affinity.key is \"header\"")
	}
}

func (v *validator) ring(f *File) {
	v.between("ring.vnodes", f.Ring.VNodes, 1, 10000)
	// Between 0 and 1 no backend could take its share; infinity and NaN
	// would switch the bound off while claiming to set it.
	if lf := f.Ring.LoadFactor; !(lf == 0 || lf > 1 && !math.IsInf(lf, 1)) && v.ok("ring.load_factor") {
		v.addf("ring.load_factor", "%v out of range (want 0 for off, or greater than 1, e.g. 1.25)", lf)
	}
}

func (v *validator) upstreams(f *File) {
	if len(f.Upstreams) == 0 && f.Discovery.Bind == "" && v.ok("upstream", "discovery.bind") {
		v.addf("upstream", "no backends: add [[upstream]] or set discovery.bind")
	}
	first := make(map[string]int)
	for i, u := range f.Upstreams {
		key := indexKey("upstream", i)
		switch {
		case u.Address != "" && u.SRV != "":
			if v.ok(key+".address", key+".srv") {
				v.addf(key+".srv", "set along with address %q: an entry names its backends by address or by srv, not both", u.Address)
			}
		case u.Address == "" && u.SRV == "" && v.ok(key+".address", key+".srv"):
			v.addf(key+".address", "missing (want host:port, e.g. \"127.0.0.1:9001\", or srv)")
		case u.Address != "":
			v.hostPort(key+".address", u.Address, false)
		}
		if u.SRV != "" && !isHostname(u.SRV) && v.ok(key+".srv") {
			v.addf(key+".srv", "invalid SRV name %q (want a DNS name, e.g. \"_ws._tcp.chat.default.svc.cluster.local\")", u.SRV)
		}
		v.between(key+".weight", u.Weight, 1, 1000)
		if u.SRV != "" && v.given(key+".weight", u.Weight != 1) && v.ok(key+".weight") {
			v.addf(key+".weight", "set along with srv: the SRV records give the weights")
		}
		v.resolve(key, u)
		// Host names are case-insensitive, so "App1:9001" and "app1:9001"
		// are one backend listed twice.
		name, what := strings.ToLower(u.Address), "address"
		if u.Address == "" && u.SRV != "" {
			name, what = "srv "+strings.ToLower(strings.TrimSuffix(u.SRV, ".")), "srv"
		}
		if j, dup := first[name]; dup && name != "" {
			v.addf(key+"."+what, "duplicate of upstream[%d].%s %q", j, what, cmp.Or(f.Upstreams[j].Address, f.Upstreams[j].SRV))
		} else {
			first[name] = i
		}
	}
}

// minResolve is the shortest resolve interval: a name looked up more often
// would load the DNS server for nothing, since no fleet changes faster.
const minResolve = 100 * time.Millisecond

// resolve checks the keys that make an [[upstream]] entry a DNS name.
func (v *validator) resolve(key string, u Upstream) {
	switch r := u.Resolve; {
	case r < 0 || r > 0 && r < minResolve:
		if v.ok(key + ".resolve") {
			v.addf(key+".resolve", "%v out of range (want 0 or at least %v)", r, minResolve)
		}
	case r > 0 && u.SRV == "" && ipHost(u.Address) && v.ok(key+".address", key+".resolve"):
		v.addf(key+".resolve", "set, but address %q is an IP address: there is nothing to resolve", u.Address)
	}
	if u.Resolver == "" || !v.ok(key+".resolver") {
		return
	}
	if checkHostPort(u.Resolver, false) != nil || !ipHost(u.Resolver) {
		v.addf(key+".resolver", "invalid resolver %q (want the ip:port of a DNS server, e.g. \"10.96.0.10:53\")", u.Resolver)
		return
	}
	if u.Resolve == 0 && u.SRV == "" && v.ok(key+".resolve", key+".srv") {
		v.addf(key+".resolver", "set, but address is dialed as written: set resolve to look it up")
	}
}

// given reports whether the file sets key. For a File changed in code,
// which has no lines, differs (from the default) says whether it was set.
func (v *validator) given(key string, differs bool) bool {
	if v.lines == nil {
		return differs
	}
	_, ok := v.lines[key]
	return ok
}

func (v *validator) health(f *File) {
	h := f.Health
	v.oneOf("health.type", h.Type, "http", "websocket", "tcp")
	// A tcp check sends no request, so it needs no path; a path given anyway
	// must still be one.
	if (h.Type != "tcp" || h.Path != "") && !strings.HasPrefix(h.Path, "/") && v.ok("health.path") {
		v.addf("health.path", "must start with \"/\", got %q", h.Path)
	}
	v.positive("health.interval", h.Interval)
	v.positive("health.timeout", h.Timeout)
	if h.Timeout > 0 && h.Timeout >= h.Interval && v.ok("health.timeout", "health.interval") {
		v.addf("health.timeout", "%v must be shorter than health.interval (%v), or checks would overlap", h.Timeout, h.Interval)
	}
	v.atLeast("health.rise", h.Rise, 1)
	v.atLeast("health.fall", h.Fall, 1)
}

func (v *validator) discovery(f *File) {
	d := f.Discovery
	v.oneOf("discovery.profile", d.Profile, "lan", "wan", "local")
	if d.Bind != "" {
		v.hostPort("discovery.bind", d.Bind, true)
	}
	for i, j := range d.Join {
		v.hostPort(indexKey("discovery.join", i), j, false)
	}
	if d.Bind == "" && len(d.Join) > 0 && v.ok("discovery.bind") {
		v.addf("discovery.join", "set, but discovery is off: set discovery.bind too")
	}
	if d.Bind != "" && checkHostPort(d.Bind, true) == nil && d.SecretFile == "" && !d.AllowPlaintextGossip && !loopbackHost(d.Bind) &&
		v.ok("discovery.bind", "discovery.secret_file", "discovery.allow_plaintext_gossip") {
		v.addf("discovery.secret_file", "needed: gossip on %s is reachable beyond this host, and without a key anyone "+
			"who reaches it can put backends in the ring; create one with `head -c 32 /dev/urandom | base64 > gossip.key` "+
			"and give every node the same, or set discovery.allow_plaintext_gossip = true on purpose", d.Bind)
	}
}

func (v *validator) websocket(f *File) {
	w := f.WebSocket
	v.positive("websocket.handshake_timeout", w.HandshakeTimeout)
	v.notNegative("websocket.ping_interval", w.PingInterval)
	v.notNegative("websocket.pong_timeout", w.PongTimeout)
	if w.PingInterval > 0 && w.PongTimeout == 0 && v.ok("websocket.ping_interval", "websocket.pong_timeout") {
		v.addf("websocket.pong_timeout", "must be greater than 0 while websocket.ping_interval is on (%v)", w.PingInterval)
	}
	v.positive("websocket.write_timeout", w.WriteTimeout)
	// 125 bytes is the largest control frame (RFC 6455 section 5.5); a
	// smaller limit would refuse close frames carrying a reason.
	if w.MaxMessageBytes < 125 && v.ok("websocket.max_message_bytes") {
		v.addf("websocket.max_message_bytes", "%d too small (want at least 125, the largest control frame)", w.MaxMessageBytes)
	}
	v.notNegative("websocket.max_connection_age", w.MaxConnectionAge)
	if j := w.MaxConnectionAgeJitter; !(j >= 0 && j <= 0.5) && v.ok("websocket.max_connection_age_jitter") {
		v.addf("websocket.max_connection_age_jitter", "%v out of range (want 0 to 0.5, e.g. 0.1 for ±10%%)", j)
	}
	v.notNegative("websocket.idle_timeout", w.IdleTimeout)
	for i, o := range w.AllowedOrigins {
		if err := checkOrigin(o); err != nil {
			v.addf(indexKey("websocket.allowed_origins", i), "%v", err)
		}
	}
}

func (v *validator) rebalance(f *File) {
	v.oneOf("rebalance.on_remove", f.Rebalance.OnRemove, "close", "keep")
	v.oneOf("rebalance.on_add", f.Rebalance.OnAdd, "keep", "migrate")
	v.atLeast("rebalance.migrate_rate", f.Rebalance.MigrateRate, 1)
}

func (v *validator) limits(f *File) {
	v.atLeast("limits.max_connections", f.Limits.MaxConnections, 0)
	v.atLeast("limits.max_connections_per_ip", f.Limits.MaxConnectionsPerIP, 0)
	// An ordinary browser upgrade request, cookies included, runs to
	// several hundred bytes.
	if f.Limits.MaxHeaderBytes < 1024 && v.ok("limits.max_header_bytes") {
		v.addf("limits.max_header_bytes", "%d too small (want at least 1024)", f.Limits.MaxHeaderBytes)
	}
	v.atLeast("limits.client_messages_per_second", f.Limits.ClientMessagesPerSecond, 0)
	v.atLeast("limits.client_message_burst", f.Limits.ClientMessageBurst, 0)
	if f.Limits.ClientBytesPerSecond < 0 && v.ok("limits.client_bytes_per_second") {
		v.addf("limits.client_bytes_per_second", "%d out of range (want at least 0)", f.Limits.ClientBytesPerSecond)
	}
	v.positive("limits.rate_limit_grace", f.Limits.RateLimitGrace)
	v.atLeast("limits.handshakes_per_second_per_ip", f.Limits.HandshakesPerSecondPerIP, 0)
	v.atLeast("limits.handshake_burst_per_ip", f.Limits.HandshakeBurstPerIP, 0)
}

func (v *validator) tuning(f *File) {
	v.between("tuning.loops", f.Tuning.Loops, 0, 1024)
	v.oneOf("tuning.io_uring", f.Tuning.IOUring, "auto", "off")
}

func (v *validator) hostPort(key, addr string, listener bool) {
	if !v.ok(key) {
		return
	}
	if err := checkHostPort(addr, listener); err != nil {
		v.addf(key, "%v", err)
	}
}

func (v *validator) oneOf(key, got string, allowed ...string) {
	for _, a := range allowed {
		if got == a {
			return
		}
	}
	if !v.ok(key) {
		return
	}
	quoted := make([]string, len(allowed))
	for i, a := range allowed {
		quoted[i] = fmt.Sprintf("%q", a)
	}
	list := strings.Join(quoted[:len(quoted)-1], ", ") + " or " + quoted[len(quoted)-1]
	v.addf(key, "unknown value %q (want %s)", got, list)
}

func (v *validator) between(key string, got, lo, hi int) {
	if (got < lo || got > hi) && v.ok(key) {
		v.addf(key, "%d out of range (want %d..%d)", got, lo, hi)
	}
}

func (v *validator) atLeast(key string, got, lo int) {
	if got < lo && v.ok(key) {
		v.addf(key, "%d out of range (want at least %d)", got, lo)
	}
}

func (v *validator) positive(key string, got time.Duration) {
	if got <= 0 && v.ok(key) {
		v.addf(key, "%v out of range (want greater than 0)", got)
	}
}

func (v *validator) notNegative(key string, got time.Duration) {
	if got < 0 && v.ok(key) {
		v.addf(key, "%v out of range (want 0 or more)", got)
	}
}
