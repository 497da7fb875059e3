package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

// binary is the wsedge executable built once for the integration tests.
var binary string

// e2e is how the tests' clients connect to the proxies they start, read
// once from WSEDGE_E2E_MODE (see modes_test.go).
var e2e e2eMode

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wsedge-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "wsedge")
	if e2e, err = loadMode(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if e2e.name != modePlain {
		fmt.Fprintf(os.Stderr, "end-to-end clients connect in %s mode\n", e2e)
	}
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building wsedge:", err)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "leaked goroutines:", err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running wsedge process.
type proc struct {
	cmd     *exec.Cmd
	cfgPath string
	listen  string // the proxy's address, as it logged it
	admin   string
	tls     bool // the client listener terminates TLS, as the proxy logged it
	logs    *logLines
	exited  chan struct{}
	exitErr error
}

// upstreams renders [[upstream]] entries for backends.
func upstreams(backends ...*upstreamtest.Backend) string {
	var b strings.Builder
	for _, be := range backends {
		fmt.Fprintf(&b, "\n[[upstream]]\naddress = %q\nweight = 1\n", be.Addr)
	}
	return b.String()
}

// startWsedge runs `wsedge serve` with cfg (TOML without listen keys: the
// proxy and admin listeners get free loopback ports) and waits until it
// listens. The process is stopped at cleanup.
func startWsedge(t *testing.T, cfg string) *proc {
	t.Helper()
	path := filepath.Join(t.TempDir(), "proxy.toml")
	writeConfig(t, path, cfg)
	p := runWsedge(t, "serve", "--config", path)
	p.cfgPath = path
	p.listening(t, p.waitStarted(t))
	t.Cleanup(func() { p.stop(t) })
	return p
}

// writeConfig writes cfg to path as a config for `wsedge serve`, with the
// proxy and admin listeners on free loopback ports.
func writeConfig(t *testing.T, path, cfg string) {
	t.Helper()
	writeServeConfig(t, path, "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n"+cfg)
}

// writeServeConfig writes full, a config for `wsedge serve` that names
// its listeners, to path, with what the clients' mode needs of the proxy.
func writeServeConfig(t *testing.T, path, full string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(e2e.serveConfig(full)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitStarted waits for the "listening" log line, failing at once if the
// process exits instead.
func (p *proc) waitStarted(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range p.logs.all() {
			if strings.Contains(line, `"msg":"listening"`) {
				return line
			}
		}
		select {
		case <-p.exited:
			t.Fatalf("wsedge exited before listening (%v); log:\n%s", p.exitErr, strings.Join(p.logs.all(), "\n"))
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("wsedge not listening after 10s; log:\n%s", strings.Join(p.logs.all(), "\n"))
	return ""
}

// runWsedge starts the binary with args, capturing its log.
func runWsedge(t *testing.T, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, logs: &logLines{}, exited: make(chan struct{})}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.logs.add(sc.Text())
		}
	}()
	go func() {
		<-scanned
		p.exitErr = cmd.Wait()
		close(p.exited)
	}()
	return p
}

func (p *proc) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// stop sends SIGTERM and waits for the process to exit.
func (p *proc) stop(t *testing.T) {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
		t.Errorf("wsedge did not exit within 15s of SIGTERM")
	}
	if t.Failed() {
		t.Logf("wsedge log:\n%s", strings.Join(p.logs.all(), "\n"))
	}
}

// waitExit waits for the process to end and returns its exit code.
func (p *proc) waitExit(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(within):
		t.Fatalf("wsedge still running after %v", within)
	}
	return p.cmd.ProcessState.ExitCode()
}

// rss is the process's resident memory in bytes.
func (p *proc) rss(t *testing.T) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// freePort returns a loopback address nothing listens on, for a process
// to listen on, or for a test to name as a backend that is not there.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// logLines collects a process's log lines; safe for concurrent use.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, s)
}

func (l *logLines) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// count returns how many lines contain every one of subs.
func (l *logLines) count(subs ...string) int {
	n := 0
	for _, line := range l.all() {
		if containsAll(line, subs) {
			n++
		}
	}
	return n
}

// wait returns the first line containing every one of subs, waiting for it.
func (l *logLines) wait(t *testing.T, sub string, within time.Duration, more ...string) string {
	t.Helper()
	subs := append([]string{sub}, more...)
	deadline := time.Now().Add(within)
	for {
		for _, line := range l.all() {
			if containsAll(line, subs) {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q within %v; log:\n%s", subs, within, strings.Join(l.all(), "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
