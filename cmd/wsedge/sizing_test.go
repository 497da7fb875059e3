package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/wsedge/wsedge/upstream/upstreamtest"
)

// The proxy runs as many event loops as the Go runtime gives it processors
// (GOMAXPROCS, which follows the CPU affinity mask and a container's CPU
// limit), or as [tuning] loops says; ListenTCP opens a socket for each,
// the log and wsedge_event_loops say how many, and the runtime gets one
// processor more unless GOMAXPROCS is set. io_uring = "off" is obeyed and
// logged.
func TestEventLoopsSizedByRuntime(t *testing.T) {
	procs := runtime.GOMAXPROCS(0) // what a child gets too, with the same mask and limits
	if os.Getenv("GOMAXPROCS") != "" {
		t.Skip("GOMAXPROCS is set for the tests: every case would inherit it")
	}
	tests := []struct {
		name      string
		cfg       string
		env       string // GOMAXPROCS in the proxy's environment
		oneCPU    bool   // run it on CPU 0 alone
		loops     int
		gomaxproc int // the runtime's processors once the proxy has started
		ioUring   string
	}{
		{name: "default", loops: procs, gomaxproc: procs + 1},
		{name: "GOMAXPROCS=1", env: "1", loops: 1, gomaxproc: 1},
		{name: "one CPU", oneCPU: true, loops: 1, gomaxproc: 2},
		{name: "loops = 3", cfg: "[tuning]\nloops = 3\n", loops: 3, gomaxproc: max(procs, 3) + 1},
		{name: "io_uring off", cfg: "[tuning]\nio_uring = \"off\"\n", loops: procs, gomaxproc: procs + 1, ioUring: "off"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.oneCPU && runtime.NumCPU() < 2 {
				t.Skip("this machine has one CPU: pinning the proxy to one would show nothing")
			}
			if tt.env != "" {
				t.Setenv("GOMAXPROCS", tt.env)
			}
			b := upstreamtest.Start(t, upstreamtest.WithName("b1"))
			cfg := upstreams(b) + tt.cfg
			var p *proc
			if tt.oneCPU {
				p = startPinned(t, cfg)
			} else {
				p = startWsedge(t, cfg)
			}
			line := p.logs.wait(t, `"msg":"event loops started"`, clusterWait)
			var started struct {
				Loops   int
				IOUring string `json:"io_uring"`
			}
			if err := json.Unmarshal([]byte(line), &started); err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			if started.Loops != tt.loops {
				t.Errorf("log says %d loops, want %d: %s", started.Loops, tt.loops, line)
			}
			if tt.ioUring != "" && started.IOUring != tt.ioUring {
				t.Errorf("log says io_uring %q, want %q: %s", started.IOUring, tt.ioUring, line)
			}
			fams := scrape(t, p)
			if got := gaugeValue(t, fams, "wsedge_event_loops"); got != float64(tt.loops) {
				t.Errorf("wsedge_event_loops = %v, want %d", got, tt.loops)
			}
			if got := gaugeValue(t, fams, "go_sched_gomaxprocs_threads"); got != float64(tt.gomaxproc) {
				t.Errorf("GOMAXPROCS = %v, want %d", got, tt.gomaxproc)
			}
			if got := listeningSockets(t, p.listen); got != tt.loops {
				t.Errorf("%d sockets listen on %s, want one per loop, %d", got, p.listen, tt.loops)
			}
			c, _ := wsDial(t, p, "/", nil)
			if got := askName(t, c); got != "b1" {
				t.Errorf("client reached %q, want b1", got)
			}
			c.Close()
			t.Logf("%d loops, io_uring %s, GOMAXPROCS %d", started.Loops, started.IOUring, tt.gomaxproc)
		})
	}
}

// startPinned is startWsedge with the proxy on CPU 0 alone, as taskset -c 0
// runs it.
func startPinned(t *testing.T, cfg string) *proc {
	t.Helper()
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		t.Skip("no taskset to pin the proxy to one CPU")
	}
	path := filepath.Join(t.TempDir(), "proxy.toml")
	writeConfig(t, path, cfg)
	cmd := exec.Command(taskset, "-c", "0", binary, "serve", "--config", path)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// taskset sets the mask and execs: the process is wsedge's, as
	// runWsedge would have it.
	p := &proc{cmd: cmd, cfgPath: path, logs: &logLines{}, exited: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.logs.add(sc.Text())
		}
		p.exitErr = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() { p.stop(t) })
	p.listening(t, p.waitStarted(t))
	return p
}

// listeningSockets counts the IPv4 sockets listening on addr, from the
// kernel's table: /proc/net/tcp has local addresses as hex, the IP in the
// kernel's byte order, and state 0A for LISTEN.
func listeningSockets(t *testing.T, addr string) int {
	t.Helper()
	ap, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	ip := ap.IP.To4()
	want := fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], ap.Port)
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Skipf("no kernel socket table to count listeners in: %v", err)
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && f[1] == want && f[3] == "0A" {
			n++
		}
	}
	return n
}
