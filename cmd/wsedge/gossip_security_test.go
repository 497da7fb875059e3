package main

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

// keyHint is what a refusal to gossip in plaintext tells the operator to run.
const keyHint = "head -c 32 /dev/urandom | base64 > gossip.key"

// rejectedMetric counts the gossip metadata a proxy refused or corrected.
const rejectedMetric = "wsedge_gossip_metadata_rejected_total"

// rogueMeta is a memberlist delegate advertising fixed metadata.
type rogueMeta []byte

func (m rogueMeta) NodeMeta(int) []byte           { return m }
func (rogueMeta) NotifyMsg([]byte)                {}
func (rogueMeta) GetBroadcasts(int, int) [][]byte { return nil }
func (rogueMeta) LocalState(bool) []byte          { return nil }
func (rogueMeta) MergeRemoteState([]byte, bool)   {}

// startRogue runs a gossip node that is not wsedge, memberlist configured
// by hand as anyone who reaches a gossip port could, with wsedge's label,
// key (nil: none) and any metadata it likes, and joins it to the node on
// port. It returns the join's error; the node stops at cleanup.
func startRogue(t *testing.T, name string, port int, key []byte, meta string) error {
	t.Helper()
	c := memberlist.DefaultLocalConfig()
	c.Name = name
	c.BindAddr, c.BindPort = "127.0.0.1", 0
	c.Label = "wsedge"
	c.SecretKey = key
	c.Delegate = rogueMeta(meta)
	c.LogOutput = io.Discard
	ml, err := memberlist.Create(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ml.Shutdown() })
	_, err = ml.Join([]string{gossipAddr(port)})
	return err
}

// backendMeta is metadata advertising addr with weight, as an agent's
// would.
func backendMeta(addr string, weight int64) string {
	return fmt.Sprintf(`{"v":1,"role":"backend","addr":%q,"weight":%d,"state":"alive"}`, addr, weight)
}

// ringMembers returns every backend p's /debug/ring lists, in the ring or
// not, by address.
func ringMembers(t *testing.T, p *proc) map[string]struct{ Weight int } {
	t.Helper()
	var ring struct {
		Members []struct {
			Addr   string
			Weight int
		}
	}
	getJSON(t, "http://"+p.admin+"/debug/ring", &ring)
	out := make(map[string]struct{ Weight int })
	for _, m := range ring.Members {
		out[m.Addr] = struct{ Weight int }{m.Weight}
	}
	return out
}

// keyOf returns the key in a key file.
func keyOf(t *testing.T, path string) []byte {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(text)))
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// rejections returns p's count of metadata refused or corrected for reason.
func rejections(t *testing.T, p *proc, reason string) float64 {
	t.Helper()
	n, _ := sampleOf(scrape(t, p), rejectedMetric, "reason", reason)
	return n
}

// waitRejections waits until p has counted want refusals for reason.
func waitRejections(t *testing.T, p *proc, reason string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := rejections(t, p, reason)
		if n == want {
			return
		}
		if n > want || time.Now().After(deadline) {
			t.Fatalf("%s{reason=%q} = %v, want %v", rejectedMetric, reason, n, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A proxy gossiping on every address without a key refuses to start, and
// says how to make one; asked to on purpose, it starts and says gossip is
// not encrypted.
func TestGossipPlaintextServeRefused(t *testing.T) {
	bind := fmt.Sprintf("0.0.0.0:%d", gossipPort(t))
	cfg := fmt.Sprintf("[discovery]\nbind = %q\nprofile = \"local\"\n", bind)
	path := t.TempDir() + "/proxy.toml"
	writeConfig(t, path, cfg)
	p := runWsedge(t, "serve", "--config", path)
	if code := p.waitExit(t, 10*time.Second); code == 0 {
		t.Errorf("exit code %d, want non-zero", code)
	}
	out := strings.Join(p.logs.all(), "\n")
	for _, want := range []string{keyHint, "allow_plaintext_gossip"} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q does not say %q", out, want)
		}
	}

	p = startWsedge(t, cfg+"allow_plaintext_gossip = true\n")
	p.logs.wait(t, `"msg":"gossip started"`, 5*time.Second, `"encrypted":false`)
	p.logs.wait(t, `"msg":"gossip unencrypted beyond this host`, time.Second, fmt.Sprintf(`"bind":%q`, bind))
}

// The agent, whose --bind defaults to every address, refuses likewise
// without --secret-file, unless --allow-plaintext-gossip.
func TestGossipPlaintextAgentRefused(t *testing.T) {
	args := []string{"agent", "--bind", fmt.Sprintf("0.0.0.0:%d", gossipPort(t)),
		"--join", gossipAddr(gossipPort(t)), "--advertise", "127.0.0.1:9001", "--profile", "local", "--grace", "0s"}
	p := runWsedge(t, args...)
	if code := p.waitExit(t, 10*time.Second); code == 0 {
		t.Errorf("exit code %d, want non-zero", code)
	}
	out := strings.Join(p.logs.all(), "\n")
	for _, want := range []string{keyHint, "--secret-file", "--allow-plaintext-gossip"} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q does not say %q", out, want)
		}
	}

	// Its seed is a loopback port nobody listens on: it joins no one.
	p = runWsedge(t, append(args, "--allow-plaintext-gossip")...)
	t.Cleanup(func() { p.stop(t) })
	p.logs.wait(t, `"msg":"gossip started"`, 10*time.Second, `"encrypted":false`)
	p.logs.wait(t, `"msg":"agent started"`, 5*time.Second)
}

// A node advertising a weight of a billion, which would have made the
// proxy build a ring of 1e9 × 160 points (terabytes), counts as weight
// 1000: the proxy stays up and small, and says what happened.
func TestGossipRogueWeightCapped(t *testing.T) {
	port := gossipPort(t)
	proxy := gossipProxy(t, port, "")
	b := upstreamtest.Start(t)
	if err := startRogue(t, "rogue", port, nil, backendMeta(b.Addr, 1_000_000_000)); err != nil {
		t.Fatal(err)
	}
	waitRings(t, []*proc{proxy}, []string{b.Addr}, clusterWait)
	if m := ringMembers(t, proxy)[b.Addr]; m.Weight != 1000 {
		t.Errorf("/debug/ring weight %d, want 1000", m.Weight)
	}
	waitRejections(t, proxy, "weight_capped", 1)
	proxy.logs.wait(t, `"msg":"gossip node weight capped"`, time.Second, `"node":"rogue"`)
	if rss := proxy.rss(t); rss > 200<<20 {
		t.Errorf("proxy RSS %d MiB with one member of weight 1000", rss>>20)
	}
	// Requests still go through the ring to the backend.
	res := proxyGet(t, proxy, "/healthz", nil)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz through the proxy: %s", res.Status)
	}
}

// With allowed_backends, a node advertising an address outside them never
// enters the ring, though the address answers checks.
func TestGossipAllowedBackends(t *testing.T) {
	port := gossipPort(t)
	proxy := gossipProxy(t, port, "allowed_backends = [\"127.0.0.2/32\"]\n")
	b := upstreamtest.Start(t)
	if err := startRogue(t, "outsider", port, nil, backendMeta(b.Addr, 1)); err != nil {
		t.Fatal(err)
	}
	waitRejections(t, proxy, "address_not_allowed", 1)
	time.Sleep(1500 * time.Millisecond) // three health intervals: it would have risen by now
	if got := ringMembers(t, proxy); len(got) != 0 {
		t.Errorf("/debug/ring lists %v, want nothing", got)
	}
	proxy.logs.wait(t, `"msg":"gossip node ignored: metadata refused"`, time.Second, `"node":"outsider"`)
}

// With a key on the proxy, a node without it, or with another, never gets
// in; one with the key does.
func TestGossipKeyKeepsStrangersOut(t *testing.T) {
	keyFile := gossipKey(t, 1)
	key, otherKey := keyOf(t, keyFile), keyOf(t, gossipKey(t, 2))
	port := gossipPort(t)
	proxy := gossipProxy(t, port, fmt.Sprintf("secret_file = %q\n", keyFile))
	proxy.logs.wait(t, `"msg":"gossip started"`, time.Second, `"encrypted":true`)
	b := upstreamtest.Start(t)

	if err := startRogue(t, "no-key", port, nil, backendMeta(b.Addr, 1)); err == nil {
		t.Error("a node without the key joined")
	}
	if err := startRogue(t, "other-key", port, otherKey, backendMeta(b.Addr, 1)); err == nil {
		t.Error("a node with another key joined")
	}
	time.Sleep(1500 * time.Millisecond) // three health intervals: it would have risen by now
	if got := ringMembers(t, proxy); len(got) != 0 {
		t.Errorf("/debug/ring lists %v, want nothing", got)
	}
	for _, reason := range []string{"unreadable", "oversized", "bad_address", "address_not_allowed", "bad_weight", "weight_capped"} {
		if n := rejections(t, proxy, reason); n != 0 {
			t.Errorf("%s{reason=%q} = %v: metadata got through to be refused", rejectedMetric, reason, n)
		}
	}

	// The same node with the key is admitted: the two above were kept out
	// by the key alone.
	if err := startRogue(t, "member", port, key, backendMeta(b.Addr, 1)); err != nil {
		t.Fatalf("a node with the key: %v", err)
	}
	waitRings(t, []*proc{proxy}, []string{b.Addr}, clusterWait)
}
