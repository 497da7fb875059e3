package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsedge/wsedge/affinity"
	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

// startPods starts n backends, pod-2, pod-3, ..., on 127.0.0.2,
// 127.0.0.3, ... and one port, as the pods of a headless Service each
// listen on the Service's port on an address of their own.
func startPods(t *testing.T, n int) []*upstreamtest.Backend {
	t.Helper()
	for range 20 {
		first, err := upstreamtest.New(upstreamtest.WithAddr("127.0.0.2:0"), upstreamtest.WithName("pod-2"))
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(first.Addr)
		pods := []*upstreamtest.Backend{first}
		for i := 3; i < n+2; i++ {
			b, err := upstreamtest.New(upstreamtest.WithAddr(fmt.Sprintf("127.0.0.%d:%s", i, port)),
				upstreamtest.WithName(fmt.Sprintf("pod-%d", i)))
			if err != nil {
				break // the port is taken on that address: try another
			}
			pods = append(pods, b)
		}
		if len(pods) == n {
			for _, b := range pods {
				t.Cleanup(b.Close)
			}
			return pods
		}
		for _, b := range pods {
			b.Close()
		}
	}
	t.Fatalf("no port free on all of 127.0.0.2..127.0.0.%d", n+1)
	return nil
}

// ipsOf returns the IP addresses of backends, as A records give them.
func ipsOf(bs ...*upstreamtest.Backend) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i], _, _ = net.SplitHostPort(b.Addr)
	}
	return out
}

// metricValue returns the value of the sample of metric p exports with
// every one of labels (as `name="value"`), or 0 when it exports none.
func metricValue(t *testing.T, p *proc, metric string, labels ...string) float64 {
	t.Helper()
	for _, line := range strings.Split(adminText(t, p, "/metrics"), "\n") {
		if !strings.HasPrefix(line, metric+"{") || !containsAll(line, labels) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		return v
	}
	return 0
}

// A headless Service's pods behind the proxy, named by DNS: a pod whose
// record appears takes exactly the keys the new ring gives it (on_add =
// "migrate" moves their clients, closed with 1012, to it), and its share
// of new clients; a pod whose record goes has its clients closed with 1012
// and each reconnects to its key's new owner; nobody else is touched. Then
// the DNS server stops: no client is closed and the ring keeps its pods.
func TestDNSBackendsFollowRecords(t *testing.T) {
	pods := startPods(t, 3)
	names := nameOf(pods...)
	_, port, _ := net.SplitHostPort(pods[0].Addr)
	d := upstreamtest.StartDNS(t)
	const host = "chat-app.default.svc.cluster.local"
	d.SetAddrs(host, 30, ipsOf(pods[0], pods[1])...)
	name := net.JoinHostPort(host, port)
	p := startWsedge(t, fmt.Sprintf(`[affinity]
key = "header"
header = %q

[health]
interval = "100ms"
timeout = "80ms"
rise = 2
fall = 3

[rebalance]
on_add = "migrate"
migrate_rate = 1000

[[upstream]]
address = %q
resolve = "200ms"
resolver = %q
`, faultKeyHeader, name, d.Addr))
	waitInRing(t, p, addrsOf(pods[0], pods[1]), 5*time.Second)

	// clients and where each is, by session key.
	conns := make(map[string]*websocket.Conn)
	on := make(map[string]string)
	connect := func(key string, want string) {
		t.Helper()
		c := dialAs(t, p, key)
		if got := askName(t, c); got != names[want] {
			t.Errorf("client %s landed on %s, want its owner %s", key, got, names[want])
		}
		conns[key], on[key] = c, want
	}
	// untouched checks that every client but those of moved is where it was.
	untouched := func(moved []string) {
		t.Helper()
		time.Sleep(300 * time.Millisecond) // for any close still coming
		for key, c := range conns {
			if !slices.Contains(moved, key) {
				if got := askName(t, c); got != names[on[key]] {
					t.Errorf("client %s answered by %s, want %s, where it was", key, got, names[on[key]])
				}
			}
		}
	}
	// move checks that each client of keys is closed with 1012 and
	// reconnects to its owner on ring.
	move := func(keys []string, ring []string) {
		t.Helper()
		r := plainRing(ring)
		for _, key := range keys {
			if code := closeCodeOf(t, conns[key], 5*time.Second); code != 1012 {
				t.Errorf("client %s closed with %d, want 1012", key, code)
			}
			connect(key, owner(r, key))
		}
	}

	two := addrsOf(pods[0], pods[1])
	for _, key := range sessionKeys("dns", 90) {
		connect(key, owner(plainRing(two), key))
	}

	// A pod joins.
	d.SetAddrs(host, 30, ipsOf(pods...)...)
	three := addrsOf(pods...)
	waitInRing(t, p, three, 5*time.Second)
	var movers []string
	for key, at := range on {
		switch now := owner(plainRing(three), key); {
		case now == pods[2].Addr:
			movers = append(movers, key)
		case now != at:
			t.Errorf("key %s moved from %s to %s: only moves to the new pod are allowed", key, at, now)
		}
	}
	if len(movers) < 15 {
		t.Fatalf("the new pod owns %d of 90 keys on the ring of three, want about 30", len(movers))
	}
	move(movers, three)
	untouched(movers)
	newcomers := 0
	for _, key := range sessionKeys("dns-new", 60) {
		connect(key, owner(plainRing(three), key))
		if on[key] == pods[2].Addr {
			newcomers++
		}
	}
	t.Logf("the new pod took %d of 90 live clients and %d of 60 new ones", len(movers), newcomers)
	if newcomers < 10 {
		t.Errorf("the new pod took %d of 60 new clients, want about 20", newcomers)
	}

	// A pod leaves.
	d.SetAddrs(host, 30, ipsOf(pods[1], pods[2])...)
	left := addrsOf(pods[1], pods[2])
	waitInRing(t, p, left, 5*time.Second)
	var orphans []string
	for key, at := range on {
		if at == pods[0].Addr {
			orphans = append(orphans, key)
		}
	}
	move(orphans, left)
	untouched(orphans)

	// The DNS server goes away: the lookups fail, and nothing else happens.
	d.Close()
	failures := func() float64 {
		return metricValue(t, p, "wsedge_dns_errors_total", `kind="unreachable"`, `name="`+name+`"`)
	}
	deadline := time.Now().Add(5 * time.Second)
	for failures() < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("%v failed lookups counted within 5s of the DNS server stopping, want 5", failures())
		}
		time.Sleep(50 * time.Millisecond)
	}
	untouched(nil)
	if got := ringOf(t, p); !slices.Equal(got, left) {
		t.Errorf("ring %v with the DNS server gone, want %v as it last answered", got, left)
	}
	if n := p.logs.count(`"msg":"dns lookup failed`); n != 1 {
		t.Errorf("the outage was logged %d times, want once", n)
	}
}

// SRV records, as Consul and Nomad give them: the proxy routes by the
// records' ports and weights over the lowest priority only, and falls back
// to the next priority when the first has no targets left.
func TestDNSSRVBackends(t *testing.T) {
	a, b, backup := upstreamtest.Start(t, upstreamtest.WithName("srv-a")), upstreamtest.Start(t,
		upstreamtest.WithName("srv-b")), upstreamtest.Start(t, upstreamtest.WithName("srv-backup"))
	names := nameOf(a, b, backup)
	portOf := func(be *upstreamtest.Backend) uint16 {
		_, port, _ := net.SplitHostPort(be.Addr)
		n, _ := strconv.Atoi(port)
		return uint16(n)
	}
	d := upstreamtest.StartDNS(t)
	const srv = "_ws._tcp.chat.service.consul"
	d.SetAddrs("node1.node.consul", 0, "127.0.0.1")
	spare := upstreamtest.SRV{Priority: 20, Weight: 1, Port: portOf(backup), Target: "node1.node.consul"}
	d.SetSRV(srv, 0,
		upstreamtest.SRV{Priority: 10, Weight: 10, Port: portOf(a), Target: "node1.node.consul"},
		upstreamtest.SRV{Priority: 10, Weight: 30, Port: portOf(b), Target: "node1.node.consul"},
		spare)
	p := startWsedge(t, fmt.Sprintf("[affinity]\nkey = \"header\"\nheader = %q\n\n"+
		"[health]\ninterval = \"100ms\"\ntimeout = \"80ms\"\n\n"+
		"[[upstream]]\nsrv = %q\nresolve = \"200ms\"\nresolver = %q\n", faultKeyHeader, srv, d.Addr))
	waitInRing(t, p, addrsOf(a, b), 5*time.Second)
	members := ringMembers(t, p)
	if members[a.Addr].Weight != 1 || members[b.Addr].Weight != 3 || len(members) != 2 {
		t.Errorf("ring members %v, want %s of weight 1 and %s of weight 3, the spare left out", members, a.Addr, b.Addr)
	}
	ring := affinity.NewRing([]affinity.Member{{Addr: a.Addr, Weight: 1}, {Addr: b.Addr, Weight: 3}}, affinity.DefaultVNodes)
	for _, key := range sessionKeys("srv", 20) {
		if got, want := askName(t, dialAs(t, p, key)), names[owner(ring, key)]; got != want {
			t.Errorf("client %s landed on %s, want its owner %s", key, got, want)
		}
	}

	d.SetSRV(srv, 0, spare)
	waitInRing(t, p, addrsOf(backup), 5*time.Second)
	if got := askName(t, dialAs(t, p, "after")); got != backup.Name {
		t.Errorf("with only the spare priority left, a client landed on %s, want %s", got, backup.Name)
	}
}

// The Kubernetes example deploys a wsedge whose proxy.toml, in its
// ConfigMap, follows the app's headless Service, and passes wsedge check.
func TestK8sExampleChecks(t *testing.T) {
	app := readFile(t, "../../testdata/k8s/app.yaml")
	for _, want := range []string{"kind: Service", "name: chat-app", "namespace: default", "clusterIP: None", "name: ws"} {
		if !strings.Contains(app, want) {
			t.Errorf("app.yaml lacks %q: the headless Service wsedge follows", want)
		}
	}
	toml := blockScalar(t, readFile(t, "../../testdata/k8s/wsedge.yaml"), "proxy.toml")
	for _, want := range []string{`address = "chat-app.default.svc.cluster.local:8080"`, `resolve = "5s"`} {
		if !strings.Contains(toml, want) {
			t.Errorf("proxy.toml of the ConfigMap lacks %s", want)
		}
	}
	// The admin token comes from a Secret mounted in the pod; check reads
	// it, so it reads one of its own here.
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	toml = strings.Replace(toml, `"/etc/wsedge/admin/token"`, strconv.Quote(token), 1)
	path := filepath.Join(dir, "proxy.toml")
	if err := os.WriteFile(path, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary, "check", "--config", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": ok") {
		t.Errorf("wsedge check of the ConfigMap's proxy.toml: %v\n%s\n%s", err, out, toml)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// blockScalar returns the literal block scalar (`key: |`) under key in a
// YAML document, without its indentation: enough YAML to read a ConfigMap's
// file.
func blockScalar(t *testing.T, doc, key string) string {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(doc))
	var b strings.Builder
	indent := -1
	in := false
	for sc.Scan() {
		line := sc.Text()
		if !in {
			in = strings.TrimSpace(line) == key+": |"
			continue
		}
		trimmed := strings.TrimLeft(line, " ")
		if trimmed == "" {
			b.WriteByte('\n')
			continue
		}
		if indent < 0 {
			indent = len(line) - len(trimmed)
		}
		if len(line)-len(trimmed) < indent {
			break
		}
		b.WriteString(line[indent:])
		b.WriteByte('\n')
	}
	if b.Len() == 0 {
		t.Fatalf("no %s: | block in the document", key)
	}
	return b.String()
}
