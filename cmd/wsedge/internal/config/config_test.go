package config

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/config")

// fixtures is where the config files shared with the binary's tests live.
const fixtures = "../../../../testdata/config"

const examplePath = "../../../../proxy.toml.example"

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
}

func TestDefaultReturnsFreshValues(t *testing.T) {
	a := Default()
	a.Upstreams[0].Weight = 7
	if b := Default(); b.Upstreams[0].Weight != 1 {
		t.Fatal("changing one Default() changed the next")
	}
}

func TestParseGood(t *testing.T) {
	f := loadFixture(t, "good.toml")
	golden(t, filepath.Join(fixtures, "good.golden"), dump(f))

	// Every line of the dump must differ from the defaults: a key that
	// decodes into the wrong field, or nowhere, leaves one unchanged.
	def := Default()
	def.Path, def.Upstreams = f.Path, nil
	defLines := make(map[string]bool)
	for _, l := range strings.Split(dump(def), "\n") {
		defLines[l] = true
	}
	for _, l := range strings.Split(dump(f), "\n") {
		if l != "" && defLines[l] && !strings.HasPrefix(l, "Path ") {
			t.Errorf("good.toml leaves %s at its default", l)
		}
	}
	// An [[upstream]] entry cannot set every key (address and srv exclude
	// each other), so each field must differ from a fresh entry's in some
	// entry.
	var fresh File
	for _, fd := range schema(&fresh) {
		if fd.kind == kindTableArray {
			fd.add()
		}
	}
	freshLines := make(map[string]bool)
	for _, l := range strings.Split(dump(&File{Upstreams: fresh.Upstreams}), "\n") {
		if rest, ok := strings.CutPrefix(l, "Upstreams[0]."); ok {
			freshLines[rest] = true
		}
	}
	set := make(map[string]bool) // field name → set by some entry
	for _, l := range strings.Split(dump(f), "\n") {
		if !strings.HasPrefix(l, "Upstreams[") {
			continue
		}
		_, rest, _ := strings.Cut(l, "].")
		set[strings.Fields(rest)[0]] = set[strings.Fields(rest)[0]] || !freshLines[rest]
	}
	for field, ok := range set {
		if !ok {
			t.Errorf("no [[upstream]] of good.toml sets %s", field)
		}
	}
}

func TestParseInlineFormsDecodeAlike(t *testing.T) {
	// Dotted keys, inline tables, an inline array of tables, literal
	// strings, hex integers and an integer 0 duration say the same as the
	// plain forms in good.toml.
	want := loadFixture(t, "good.toml")
	got := loadFixture(t, "good_inline.toml")
	got.Path = want.Path
	if d1, d2 := dump(want), dump(got); d1 != d2 {
		t.Errorf("good_inline.toml decodes differently:\n%s", diffLines(d1, d2))
	}
}

func TestParseMinimal(t *testing.T) {
	got := loadFixture(t, "minimal.toml")
	want := Default()
	want.Path = got.Path
	if !reflect.DeepEqual(got, want) {
		t.Errorf("minimal.toml:\n%s", diffLines(dump(want), dump(got)))
	}
}

func TestParseWithoutUpstreamsUsesDiscovery(t *testing.T) {
	f, err := Parse("proxy.toml", []byte("[discovery]\nbind = \"127.0.0.1:7946\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Upstreams) != 0 {
		t.Errorf("Upstreams = %v, want none: they come from discovery", f.Upstreams)
	}
}

func TestParseBadFixtures(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(fixtures, "bad_*.toml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no bad fixtures: %v", err)
	}
	for _, path := range paths {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			f, err := Parse(name, data)
			if f != nil {
				t.Errorf("Parse returned a File along with its problems")
			}
			var probs Problems
			if !errors.As(err, &probs) || len(probs) == 0 {
				t.Fatalf("Parse(%s) error = %v, want Problems", name, err)
			}
			lines := strings.Count(string(data), "\n") + 1
			for _, p := range probs {
				if p.File != name || p.Line > lines || (p.Line == 0 && p.Key == "") {
					t.Errorf("problem without a usable place: %#v", p)
				}
			}
			golden(t, strings.TrimSuffix(path, ".toml")+".errors", err.Error()+"\n")
		})
	}
}

func TestParseReportsEveryValueProblem(t *testing.T) {
	_, err := Parse("bad_values.toml", readFixture(t, "bad_values.toml"))
	var probs Problems
	if !errors.As(err, &probs) {
		t.Fatalf("error = %v, want Problems", err)
	}
	// One problem per wrong line of the file, each on its own key.
	keys := make(map[string]bool)
	for _, p := range probs {
		keys[p.Key] = true
	}
	for _, k := range []string{
		"listen", "admin_listen", "log_level", "shutdown_timeout", "affinity.key",
		"affinity.trusted_proxies[1]", "affinity.trusted_proxies[2]", "ring.vnodes",
		"ring.load_factor", "upstream[0].weight", "upstream[1].address", "upstream[2].address",
		"upstream[2].weight", "health.type", "health.interval", "health.rise",
		"websocket.handshake_timeout", "websocket.ping_interval", "websocket.max_message_bytes",
		"websocket.allowed_origins[0]", "websocket.allowed_origins[1]", "rebalance.on_add",
		"rebalance.migrate_rate", "limits.max_connections", "limits.max_header_bytes",
	} {
		if !keys[k] {
			t.Errorf("no problem reported for %s", k)
		}
	}
	if len(probs) != len(keys) {
		t.Errorf("%d problems for %d keys: a key was reported twice:\n%v", len(probs), len(keys), err)
	}
}

func TestParseProblems(t *testing.T) {
	// Each snippet is followed by a valid [[upstream]], so it is judged
	// alone and its line numbers are the snippet's own.
	tests := []struct {
		name string
		give string
		want []string
	}{
		{
			name: "valid",
			give: "listen = \":8080\"\n",
		},
		{
			name: "duration typo",
			give: "[websocket]\nping_interval = \"20x\"\n",
			want: []string{`p.toml:2: websocket.ping_interval: invalid duration "20x" (want e.g. "20s")`},
		},
		{
			name: "duration without unit",
			give: "[websocket]\nwrite_timeout = 10\n",
			want: []string{`p.toml:2: websocket.write_timeout: want a duration string such as "20s", got an integer (10)`},
		},
		{
			name: "zero duration where zero is not off",
			give: "[websocket]\nwrite_timeout = \"0s\"\n",
			want: []string{`p.toml:2: websocket.write_timeout: 0s out of range (want greater than 0)`},
		},
		{
			name: "zero ping interval turns pings off",
			give: "[websocket]\nping_interval = \"0\"\npong_timeout = \"0s\"\n",
		},
		{
			name: "negative pong timeout",
			give: "[websocket]\npong_timeout = \"-1s\"\n",
			want: []string{`p.toml:2: websocket.pong_timeout: -1s out of range (want 0 or more)`},
		},
		{
			name: "pings without pong timeout",
			give: "websocket.pong_timeout = \"0s\"\n",
			want: []string{`p.toml:1: websocket.pong_timeout: must be greater than 0 while websocket.ping_interval is on (20s)`},
		},
		{
			name: "bad ping interval does not blame pong timeout",
			give: "websocket.ping_interval = \"x\"\nwebsocket.pong_timeout = \"0s\"\n",
			want: []string{`p.toml:1: websocket.ping_interval: invalid duration "x" (want e.g. "20s")`},
		},
		{
			name: "size units",
			give: "websocket.max_message_bytes = \"2MB\"\nlimits.max_header_bytes = \"1KiB\"\n",
		},
		{
			name: "negative size",
			give: "websocket.max_message_bytes = -1\n",
			want: []string{`p.toml:1: websocket.max_message_bytes: invalid size -1 (want bytes, at least 0)`},
		},
		{
			name: "address without port",
			give: "[discovery]\nbind = \"0.0.0.0\"\n",
			want: []string{`p.toml:2: discovery.bind: invalid address "0.0.0.0" (want host:port, e.g. "127.0.0.1:9001")`},
		},
		{
			name: "port out of range",
			give: "admin_listen = \"127.0.0.1:65536\"\n",
			want: []string{`p.toml:1: admin_listen: invalid port "65536" in "127.0.0.1:65536" (want 0..65535)`},
		},
		{
			name: "admin listener off",
			give: "admin_listen = \"\"\n",
		},
		{
			name: "empty listen",
			give: "listen = \"\"\n",
			want: []string{`p.toml:1: listen: must not be empty`},
		},
		{
			name: "ipv6 without brackets",
			give: "listen = \"::1:8080\"\n",
			want: []string{`p.toml:1: listen: invalid address "::1:8080" (want host:port, e.g. "127.0.0.1:9001")`},
		},
		{
			name: "bracketed name",
			give: "listen = \"[localhost]:8080\"\n",
			want: []string{`p.toml:1: listen: invalid IPv6 address "localhost" in "[localhost]:8080"`},
		},
		{
			name: "upstream needs a host",
			give: "[[upstream]]\naddress = \":9002\"\n",
			want: []string{`p.toml:2: upstream[0].address: missing host in ":9002" (want host:port, e.g. "127.0.0.1:9001")`},
		},
		{
			name: "upstream without address",
			give: "[[upstream]]\nweight = 2\n",
			want: []string{`p.toml:1: upstream[0].address: missing (want host:port, e.g. "127.0.0.1:9001", or srv)`},
		},
		{
			name: "duplicate upstream",
			give: "[[upstream]]\naddress = \"127.0.0.1:9001\"\n",
			want: []string{`p.toml:5: upstream[1].address: duplicate of upstream[0].address "127.0.0.1:9001"`},
		},
		{
			name: "address resolved",
			give: "[[upstream]]\naddress = \"chat-app.default.svc.cluster.local:8080\"\nresolve = \"5s\"\nresolver = \"10.96.0.10:53\"\n",
		},
		{
			name: "srv",
			give: "[[upstream]]\nsrv = \"_ws._tcp.chat.default.svc.cluster.local\"\nresolver = \"[fd00::10]:53\"\n",
		},
		{
			name: "srv and address",
			give: "[[upstream]]\naddress = \"chat:8080\"\nsrv = \"_ws._tcp.chat\"\n",
			want: []string{`p.toml:3: upstream[0].srv: set along with address "chat:8080": an entry names its backends by address or by srv, not both`},
		},
		{
			name: "srv not a name",
			give: "[[upstream]]\nsrv = \"_ws._tcp.chat:8080\"\n",
			want: []string{`p.toml:2: upstream[0].srv: invalid SRV name "_ws._tcp.chat:8080" (want a DNS name, e.g. "_ws._tcp.chat.default.svc.cluster.local")`},
		},
		{
			name: "srv with a weight",
			give: "[[upstream]]\nsrv = \"_ws._tcp.chat\"\nweight = 1\n",
			want: []string{`p.toml:3: upstream[0].weight: set along with srv: the SRV records give the weights`},
		},
		{
			name: "duplicate srv",
			give: "[[upstream]]\nsrv = \"_ws._tcp.chat\"\n[[upstream]]\nsrv = \"_WS._tcp.chat.\"\n",
			want: []string{`p.toml:4: upstream[1].srv: duplicate of upstream[0].srv "_ws._tcp.chat"`},
		},
		{
			name: "resolve an IP address",
			give: "[[upstream]]\naddress = \"10.0.0.1:8080\"\nresolve = \"5s\"\n",
			want: []string{`p.toml:3: upstream[0].resolve: set, but address "10.0.0.1:8080" is an IP address: there is nothing to resolve`},
		},
		{
			name: "resolve too often",
			give: "[[upstream]]\naddress = \"chat:8080\"\nresolve = \"10ms\"\n",
			want: []string{`p.toml:3: upstream[0].resolve: 10ms out of range (want 0 or at least 100ms)`},
		},
		{
			name: "resolve without unit",
			give: "[[upstream]]\naddress = \"chat:8080\"\nresolve = 5\n",
			want: []string{`p.toml:3: upstream[0].resolve: want a duration string such as "20s", got an integer (5)`},
		},
		{
			name: "resolver by name",
			give: "[[upstream]]\naddress = \"chat:8080\"\nresolve = \"5s\"\nresolver = \"kube-dns:53\"\n",
			want: []string{`p.toml:4: upstream[0].resolver: invalid resolver "kube-dns:53" (want the ip:port of a DNS server, e.g. "10.96.0.10:53")`},
		},
		{
			name: "resolver without port",
			give: "[[upstream]]\nsrv = \"_ws._tcp.chat\"\nresolver = \"10.96.0.10\"\n",
			want: []string{`p.toml:3: upstream[0].resolver: invalid resolver "10.96.0.10" (want the ip:port of a DNS server, e.g. "10.96.0.10:53")`},
		},
		{
			name: "resolver for an address not resolved",
			give: "[[upstream]]\naddress = \"chat:8080\"\nresolver = \"10.96.0.10:53\"\n",
			want: []string{`p.toml:3: upstream[0].resolver: set, but address is dialed as written: set resolve to look it up`},
		},
		{
			name: "weight zero",
			give: "[[upstream]]\naddress = \"127.0.0.1:9009\"\nweight = 0\n",
			want: []string{`p.toml:3: upstream[0].weight: 0 out of range (want 1..1000)`},
		},
		{
			name: "cidr",
			give: "affinity.trusted_proxies = [\"10.0.0.0/8\", \"fe80::1%eth0\", \"::1\"]\n",
			want: []string{`p.toml:1: affinity.trusted_proxies[1]: invalid CIDR "fe80::1%eth0" (want e.g. "10.0.0.0/8" or "192.0.2.1")`},
		},
		{
			name: "cidr on its own line",
			give: "[affinity]\ntrusted_proxies = [\n  \"10.0.0.0/8\",\n  \"10.0.0.0/99\",\n]\n",
			want: []string{`p.toml:4: affinity.trusted_proxies[1]: invalid CIDR "10.0.0.0/99" (want e.g. "10.0.0.0/8" or "192.0.2.1")`},
		},
		{
			name: "enum",
			give: "log_format = \"text\"\n",
			want: []string{`p.toml:1: log_format: unknown value "text" (want "json" or "console")`},
		},
		{
			name: "load factor one",
			give: "ring.load_factor = 1\n",
			want: []string{`p.toml:1: ring.load_factor: 1 out of range (want 0 for off, or greater than 1, e.g. 1.25)`},
		},
		{
			name: "load factor infinite",
			give: "ring.load_factor = inf\n",
			want: []string{`p.toml:1: ring.load_factor: +Inf out of range (want 0 for off, or greater than 1, e.g. 1.25)`},
		},
		{
			name: "vnodes too many",
			give: "[ring]\nvnodes = 10_001\n",
			want: []string{`p.toml:2: ring.vnodes: 10001 out of range (want 1..10000)`},
		},
		{
			name: "integer overflow",
			give: "[ring]\nvnodes = 99999999999999999999\n",
			want: []string{`p.toml:2:10: toml: decimal number is too large to fit in a 64-bit signed integer`},
		},
		{
			name: "tls key without cert",
			give: "[tls]\nkey = \"k.pem\"\n",
			want: []string{`p.toml:1: tls.cert: missing: tls.key is set, and both are needed`},
		},
		{
			name: "header affinity without header",
			give: "[affinity]\nkey = \"header\"\nheader = \"\"\n",
			want: []string{`p.toml:3: affinity.header: must not be empty when affinity.key is "header"`},
		},
		{
			name: "cookie name with a space",
			give: "[affinity]\ncookie = \"my route\"\n",
			want: []string{"p.toml:2: affinity.cookie: invalid cookie name \"my route\" (want a token: letters, digits and !#$%&'*+-.^_`|~)"},
		},
		{
			name: "health path",
			give: "[health]\npath = \"healthz\"\n",
			want: []string{`p.toml:2: health.path: must start with "/", got "healthz"`},
		},
		{
			name: "tcp health needs no path",
			give: "[health]\ntype = \"tcp\"\npath = \"\"\n",
		},
		{
			name: "health timeout equal to interval",
			give: "[health]\ninterval = \"1s\"\ntimeout = \"1s\"\n",
			want: []string{`p.toml:3: health.timeout: 1s must be shorter than health.interval (1s), or checks would overlap`},
		},
		{
			name: "proxy protocol without trusted proxies",
			give: "proxy_protocol = true\n",
			want: []string{`p.toml:1: proxy_protocol: needs affinity.trusted_proxies: PROXY headers are accepted only from trusted proxies`},
		},
		{
			name: "proxy protocol with trusted proxies",
			give: "proxy_protocol = true\naffinity.trusted_proxies = [\"10.0.0.0/8\"]\n",
		},
		{
			name: "unknown key with suggestion",
			give: "[websocket]\nping_intervall = \"20s\"\n",
			want: []string{`p.toml:2: websocket.ping_intervall: unknown key (did you mean "ping_interval"?)`},
		},
		{
			name: "key under the wrong table",
			give: "[limits]\nmigrate_rate = 10\n",
			want: []string{`p.toml:2: limits.migrate_rate: unknown key (did you mean "rebalance.migrate_rate"?)`},
		},
		{
			name: "unknown table",
			give: "[websocekt]\nping_interval = \"20s\"\n",
			want: []string{`p.toml:1: websocekt: unknown table (did you mean "websocket"?)`},
		},
		{
			name: "unknown key in inline table",
			give: "upstream_tls = { enabled = true, verify = false }\n",
			want: []string{`p.toml:1: upstream_tls.verify: unknown key`},
		},
		{
			name: "string for integer",
			give: "[limits]\nmax_connections = \"10\"\n",
			want: []string{`p.toml:2: limits.max_connections: want an integer, got a string ("10")`},
		},
		{
			name: "table for value",
			give: "[listen]\nport = 1\n",
			want: []string{`p.toml:1: listen: want a string, got a table`},
		},
		{
			name: "value for table",
			give: "websocket = \"on\"\n",
			want: []string{`p.toml:1: websocket: want a table ([websocket]), got a string ("on")`},
		},
		{
			name: "array of tables for table",
			give: "[[health]]\ntype = \"tcp\"\n",
			want: []string{`p.toml:1: health: want a table ([health]), got an array of tables`},
		},
		{
			name: "key defined twice",
			give: "log_level = \"info\"\nlog_level = \"debug\"\n",
			want: []string{`p.toml:2:1: log_level: toml: key log_level is already defined`},
		},
		{
			name: "key defined twice in a table",
			give: "[ring]\nvnodes = 0\nvnodes = 160\n",
			want: []string{`p.toml:3:1: ring.vnodes: toml: key vnodes is already defined`},
		},
		{
			name: "table defined twice",
			give: "[ring]\nvnodes = 1\n[ring]\nload_factor = 2\n",
			want: []string{`p.toml:3:2: ring: toml: table ring already exists`},
		},
		{
			name: "syntax error keeps earlier problems",
			give: "log_levle = \"info\"\nlisten = \n",
			want: []string{
				`p.toml:1: log_levle: unknown key (did you mean "log_level"?)`,
				`p.toml:2:10: toml: unexpected character U+000A at start of value`,
			},
		},
		{
			name: "join without discovery",
			give: "discovery.join = [\"10.0.0.1:7946\"]\n",
			want: []string{`p.toml:1: discovery.join: set, but discovery is off: set discovery.bind too`},
		},
		{
			name: "gossip beyond loopback without a key",
			give: "discovery.bind = \"0.0.0.0:7946\"\n",
			want: []string{"p.toml:1: discovery.secret_file: needed: gossip on 0.0.0.0:7946 is reachable beyond this host, and without a key anyone who reaches it can put backends in the ring; create one with `head -c 32 /dev/urandom | base64 > gossip.key` and give every node the same, or set discovery.allow_plaintext_gossip = true on purpose"},
		},
		{
			name: "gossip on every address without a key",
			give: "discovery.bind = \":7946\"\n",
			want: []string{"p.toml:1: discovery.secret_file: needed: gossip on :7946 is reachable beyond this host, and without a key anyone who reaches it can put backends in the ring; create one with `head -c 32 /dev/urandom | base64 > gossip.key` and give every node the same, or set discovery.allow_plaintext_gossip = true on purpose"},
		},
		{
			name: "plaintext gossip on purpose",
			give: "discovery.bind = \"0.0.0.0:7946\"\ndiscovery.allow_plaintext_gossip = true\n",
		},
		{
			name: "plaintext gossip on loopback",
			give: "discovery.bind = \"127.0.0.1:7946\"\n",
		},
		{
			name: "plaintext gossip on localhost",
			give: "discovery.bind = \"localhost:7946\"\n",
		},
		{
			name: "tuning out of range",
			give: "tuning.loops = -1\ntuning.io_uring = \"on\"\n",
			want: []string{
				`p.toml:1: tuning.loops: -1 out of range (want 0..1024)`,
				`p.toml:2: tuning.io_uring: unknown value "on" (want "auto" or "off")`,
			},
		},
		{
			name: "metrics listener without port",
			give: "metrics_listen = \"10.0.0.5\"\n",
			want: []string{`p.toml:1: metrics_listen: invalid address "10.0.0.5" (want host:port, e.g. "127.0.0.1:9001")`},
		},
		{
			name: "allowed backends not CIDRs",
			give: "discovery.allowed_backends = [\"10.0.0.0/33\"]\n",
			want: []string{`p.toml:1: discovery.allowed_backends[0]: invalid CIDR "10.0.0.0/33" (want e.g. "10.0.0.0/8" or "192.0.2.1")`},
		},
		{
			name: "unknown key exchange",
			give: "tls.curves = [\"X25519\", \"x448\"]\n",
			want: []string{`p.toml:1: tls.curves[1]: unknown key exchange "x448" (want "X25519MLKEM768", "SecP256r1MLKEM768", "X25519", "P-256", "P-384" or "P-521")`},
		},
		{
			name: "edge limits out of range",
			give: "websocket.max_connection_age_jitter = 0.9\nwebsocket.idle_timeout = \"-1s\"\nlimits.client_messages_per_second = -5\nlimits.rate_limit_grace = \"0s\"\n",
			want: []string{
				`p.toml:1: websocket.max_connection_age_jitter: 0.9 out of range (want 0 to 0.5, e.g. 0.1 for ±10%)`,
				`p.toml:2: websocket.idle_timeout: -1s out of range (want 0 or more)`,
				`p.toml:3: limits.client_messages_per_second: -5 out of range (want at least 0)`,
				`p.toml:4: limits.rate_limit_grace: 0s out of range (want greater than 0)`,
			},
		},
		{
			name: "negative upgrade linger",
			give: "upgrade_linger = \"-1s\"\n",
			want: []string{`p.toml:1: upgrade_linger: -1s out of range (want 0 or more)`},
		},
		{
			name: "upgrade linger off",
			give: "upgrade_linger = \"0s\"\n",
		},
		{
			name: "origin with path",
			give: "websocket.allowed_origins = [\"https://example.com/app\"]\n",
			want: []string{`p.toml:1: websocket.allowed_origins[0]: invalid origin "https://example.com/app" (want scheme://host[:port], e.g. "https://example.com"; an empty list allows any)`},
		},
		{
			name: "byte order mark",
			give: "\uFEFFlisten = \":8080\"\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse("p.toml", []byte(tt.give+"\n[[upstream]]\naddress = \"127.0.0.1:9001\"\n"))
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if (err == nil) != (f != nil) {
				t.Errorf("Parse returned File %v with error %v", f != nil, err)
			}
		})
	}
}

func TestParseNoBackends(t *testing.T) {
	_, err := Parse("p.toml", []byte("listen = \":8080\"\n"))
	want := "p.toml: upstream: no backends: add [[upstream]] or set discovery.bind"
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
}

func TestParseValues(t *testing.T) {
	tests := []struct {
		name string
		give string
		got  func(*File) any
		want any
	}{
		{"bare ip is one host", `affinity.trusted_proxies = ["192.0.2.1", "2001:db8::1"]`,
			func(f *File) any { return fmt.Sprint(f.Affinity.TrustedProxies) }, "[192.0.2.1/32 2001:db8::1/128]"},
		{"host bits cleared", `affinity.trusted_proxies = ["10.1.2.3/8"]`,
			func(f *File) any { return fmt.Sprint(f.Affinity.TrustedProxies) }, "[10.0.0.0/8]"},
		{"empty list is nil", `websocket.allowed_origins = []`,
			func(f *File) any { return f.WebSocket.AllowedOrigins == nil }, true},
		{"binary size", `websocket.max_message_bytes = "1MiB"`,
			func(f *File) any { return f.WebSocket.MaxMessageBytes }, int64(1 << 20)},
		{"decimal size", `websocket.max_message_bytes = "1MB"`,
			func(f *File) any { return f.WebSocket.MaxMessageBytes }, int64(1_000_000)},
		{"integer size", `limits.max_header_bytes = 0x2000`,
			func(f *File) any { return f.Limits.MaxHeaderBytes }, int64(8192)},
		{"compound duration", `shutdown_timeout = "1m30s"`,
			func(f *File) any { return f.ShutdownTimeout }, 90 * time.Second},
		{"integer load factor", `ring.load_factor = 2`,
			func(f *File) any { return f.Ring.LoadFactor }, 2.0},
		{"escaped string", `affinity.header = "X-\u0041"`,
			func(f *File) any { return f.Affinity.Header }, "X-A"},
		{"default weight", ``,
			func(f *File) any { return f.Upstreams[0].Weight }, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse("p.toml", []byte(tt.give+"\n[[upstream]]\naddress = \"127.0.0.1:9001\"\n"))
			if err != nil {
				t.Fatal(err)
			}
			if got := tt.got(f); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(fixtures, "minimal.toml")
	f, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Path != path {
		t.Errorf("Path = %q, want %q", f.Path, path)
	}

	_, err = Load(filepath.Join(t.TempDir(), "absent.toml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing file: %v, want fs.ErrNotExist", err)
	}

	_, err = Load(filepath.Join(fixtures, "bad_rules.toml"))
	var p Problem
	if !errors.As(err, &p) || p.File != filepath.Join(fixtures, "bad_rules.toml") {
		t.Errorf("Load of a bad file: %v, want Problems naming the path", err)
	}
}

func TestProblemError(t *testing.T) {
	tests := []struct {
		give Problem
		want string
	}{
		{Problem{File: "proxy.toml", Line: 12, Key: "websocket.ping_interval", Msg: "bad"}, "proxy.toml:12: websocket.ping_interval: bad"},
		{Problem{File: "proxy.toml", Key: "upstream", Msg: "none"}, "proxy.toml: upstream: none"},
		{Problem{File: "proxy.toml", Line: 3, Column: 7, Msg: "toml: oops"}, "proxy.toml:3:7: toml: oops"},
		{Problem{Key: "listen", Msg: "must not be empty"}, "listen: must not be empty"},
	}
	for _, tt := range tests {
		if got := tt.give.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	ps := Problems{tests[0].give, tests[1].give}
	if got, want := ps.Error(), tests[0].want+"\n"+tests[1].want; got != want {
		t.Errorf("Problems.Error() = %q, want %q", got, want)
	}
}

func TestValidateAfterChange(t *testing.T) {
	f := Default()
	f.Ring.VNodes = 0
	f.Upstreams = append(f.Upstreams, f.Upstreams[0])
	err := f.Validate()
	want := "ring.vnodes: 0 out of range (want 1..10000)\n" +
		`upstream[1].address: duplicate of upstream[0].address "127.0.0.1:9001"`
	if err == nil || err.Error() != want {
		t.Errorf("Validate() = %v, want\n%s", err, want)
	}
}

func TestExampleMatchesDefaults(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse("proxy.toml.example", data)
	if err != nil {
		t.Fatal(err)
	}
	wantUpstreams := []Upstream{{Address: "127.0.0.1:9001", Weight: 1}, {Address: "127.0.0.1:9002", Weight: 1},
		{Address: "127.0.0.1:9003", Weight: 1}}
	if !reflect.DeepEqual(got.Upstreams, wantUpstreams) {
		t.Errorf("example upstreams = %v, want %v", got.Upstreams, wantUpstreams)
	}
	want := Default()
	want.Path, want.Upstreams = got.Path, got.Upstreams
	if d1, d2 := dump(want), dump(got); d1 != d2 {
		t.Errorf("proxy.toml.example disagrees with Default():\n%s", diffLines(d1, d2))
	}
}

func TestExampleDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	// Optional sections are commented out in the example; uncommented,
	// they must make a valid file too.
	uncommented := regexp.MustCompile(`(?m)^# (\[\[?[a-z_]+\]\]?|[a-z_]+ = .*)$`).ReplaceAll(data, []byte("$1"))
	if _, err := Parse("proxy.toml.example (uncommented)", uncommented); err != nil {
		t.Fatalf("uncommented example: %v", err)
	}
	d := newDecoder("proxy.toml.example", uncommented, schema(Default()))
	if err := d.walk(); err != nil {
		t.Fatal(err)
	}
	// A key of [[upstream]] may be documented in any entry: the ones that
	// name DNS backends are examples of their own.
	element := regexp.MustCompile(`\[[0-9]+\]\.`)
	documented := make(map[string]bool)
	for key := range d.lines {
		documented[element.ReplaceAllString(key, "[0].")] = true
	}
	for _, key := range leafKeys(schema(Default()), "") {
		if !documented[element.ReplaceAllString(key, "[0].")] {
			t.Errorf("proxy.toml.example does not document %s", key)
		}
	}
}

// leafKeys lists every value key of the schema, naming the first element of
// table arrays.
func leafKeys(fields []field, prefix string) []string {
	var keys []string
	for _, fd := range fields {
		key := joinKey(prefix, fd.name)
		switch fd.kind {
		case kindLeaf:
			keys = append(keys, key)
		case kindTable:
			keys = append(keys, leafKeys(fd.fields, key)...)
		case kindTableArray:
			i, elem := fd.add()
			keys = append(keys, leafKeys(elem, indexKey(key, i))...)
		}
	}
	return keys
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtures, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func loadFixture(t *testing.T, name string) *File {
	t.Helper()
	f, err := Parse(name, readFixture(t, name))
	if err != nil {
		t.Fatalf("Parse(%s): %v", name, err)
	}
	return f
}

// golden compares got with the file at path, or rewrites it under -update.
func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it):\n%s", path, diffLines(string(want), got))
	}
}

// dump renders a File one field per line, by Go field name, independently of
// the schema, so that golden files show where each key really landed.
func dump(f *File) string {
	var b strings.Builder
	dumpValue(&b, "", reflect.ValueOf(*f))
	return b.String()
}

func dumpValue(b *strings.Builder, name string, v reflect.Value) {
	if s, ok := v.Interface().(fmt.Stringer); ok {
		fmt.Fprintf(b, "%s = %s\n", name, s)
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			dumpValue(b, strings.TrimPrefix(name+"."+v.Type().Field(i).Name, "."), v.Field(i))
		}
	case reflect.Slice:
		if v.Len() == 0 {
			fmt.Fprintf(b, "%s = []\n", name)
		}
		for i := 0; i < v.Len(); i++ {
			dumpValue(b, fmt.Sprintf("%s[%d]", name, i), v.Index(i))
		}
	case reflect.String:
		fmt.Fprintf(b, "%s = %q\n", name, v.String())
	default:
		fmt.Fprintf(b, "%s = %v\n", name, v.Interface())
	}
}

// diffLines shows the lines of want and got that the other lacks.
func diffLines(want, got string) string {
	in := func(s string) map[string]bool {
		m := make(map[string]bool)
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	w, g := in(want), in(got)
	var b strings.Builder
	for _, l := range strings.Split(want, "\n") {
		if !g[l] {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if !w[l] {
			fmt.Fprintf(&b, "+ %s\n", l)
		}
	}
	return b.String()
}
