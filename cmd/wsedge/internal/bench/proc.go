package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of utime and stime in /proc/PID/stat. The kernel
// reports them in USER_HZ, which is 100 on every Linux architecture Go
// supports (sysconf(_SC_CLK_TCK)); reading it would need cgo.
const userHZ = 100

// ErrProcFormat is returned for a /proc file that does not parse.
var ErrProcFormat = errors.New("unexpected /proc format")

// PIDs is a list of processes whose CPU time or memory is summed: every
// process of a proxy (nginx's master and workers) or of the backends.
// Children are not included unless listed.
type PIDs []int

// ParsePIDs parses a comma-separated list of process IDs; "" gives none.
func ParsePIDs(s string) (PIDs, error) {
	var out PIDs
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		pid, err := strconv.Atoi(f)
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("pid %q: not a process ID", f)
		}
		out = append(out, pid)
	}
	return out, nil
}

// String formats the list as ParsePIDs reads it.
func (p PIDs) String() string {
	s := make([]string, len(p))
	for i, pid := range p {
		s[i] = strconv.Itoa(pid)
	}
	return strings.Join(s, ",")
}

// CPU returns the user plus system CPU time the processes have used so far.
// A process that has exited is an error: its time would silently vanish
// from the sum.
func (p PIDs) CPU() (time.Duration, error) {
	var sum time.Duration
	for _, pid := range p {
		d, err := readCPU(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, err
		}
		sum += d
	}
	return sum, nil
}

// RSS returns the processes' summed resident set size in bytes.
func (p PIDs) RSS() (int64, error) {
	var sum int64
	for _, pid := range p {
		n, err := readRSS(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}

// selfCPU returns this process's CPU time, so that a report can show the
// generator was not the bottleneck.
func selfCPU() (time.Duration, error) { return readCPU("/proc/self/stat") }

func readCPU(path string) (time.Duration, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read cpu: %w", err)
	}
	ticks, err := parseStat(b)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// parseStat returns utime+stime, in clock ticks, from the contents of
// /proc/PID/stat (proc(5)). The second field, the command name in
// parentheses, may itself hold spaces and parentheses, so fields are
// counted from the last ')'.
func parseStat(b []byte) (uint64, error) {
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return 0, fmt.Errorf("%w: no command name", ErrProcFormat)
	}
	// After the name come field 3 (state) onwards; utime and stime are
	// fields 14 and 15.
	fields := strings.Fields(string(b[end+1:]))
	const utime, stime = 14 - 3, 15 - 3
	if len(fields) <= stime {
		return 0, fmt.Errorf("%w: %d fields after the command name", ErrProcFormat, len(fields))
	}
	u, err1 := strconv.ParseUint(fields[utime], 10, 64)
	s, err2 := strconv.ParseUint(fields[stime], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("%w: utime/stime: %w", ErrProcFormat, err)
	}
	return u + s, nil
}

func readRSS(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read rss: %w", err)
	}
	n, err := parseRSS(b)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

// parseRSS returns VmRSS in bytes from the contents of /proc/PID/status.
func parseRSS(b []byte) (int64, error) {
	for line := range strings.Lines(string(b)) {
		v, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		num, unit, _ := strings.Cut(strings.TrimSpace(v), " ")
		kb, err := strconv.ParseInt(num, 10, 64)
		if err != nil || unit != "kB" {
			return 0, fmt.Errorf("%w: VmRSS %q", ErrProcFormat, strings.TrimSpace(v))
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("%w: no VmRSS line (a kernel thread or a zombie?)", ErrProcFormat)
}
