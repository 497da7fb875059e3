package bench

import (
	"fmt"
	"time"
)

// CPU is the processor time spent during a measured window, in seconds.
type CPU struct {
	// Proxy is the summed utime+stime of the proxy's processes; zero when
	// none were named.
	Proxy float64 `json:"proxy_cpu_s"`
	// Backend is the same for the backends' processes.
	Backend float64 `json:"backend_cpu_s"`
	// Client is this generator's own, so that a report shows whether the
	// generator, rather than the proxy, was the bottleneck.
	Client float64 `json:"client_cpu_s"`
}

// cpuMeter reads the CPU time of the proxy, the backends and this process
// at the start and the end of a window.
type cpuMeter struct {
	proxy, backend PIDs
	start          [3]time.Duration
}

// begin records the start of the window.
func (m *cpuMeter) begin() error {
	s, err := m.sample()
	m.start = s
	return err
}

// end returns the CPU time spent since begin.
func (m *cpuMeter) end() (CPU, error) {
	s, err := m.sample()
	if err != nil {
		return CPU{}, err
	}
	return CPU{
		Proxy:   (s[0] - m.start[0]).Seconds(),
		Backend: (s[1] - m.start[1]).Seconds(),
		Client:  (s[2] - m.start[2]).Seconds(),
	}, nil
}

func (m *cpuMeter) sample() ([3]time.Duration, error) {
	var s [3]time.Duration
	var err error
	if s[0], err = m.proxy.CPU(); err != nil {
		return s, fmt.Errorf("proxy: %w", err)
	}
	if s[1], err = m.backend.CPU(); err != nil {
		return s, fmt.Errorf("backend: %w", err)
	}
	s[2], err = selfCPU()
	return s, err
}

// perCPUSecond divides a count by CPU seconds; zero when no CPU was
// measured, rather than infinity.
func perCPUSecond(n int64, seconds float64) float64 {
	if seconds <= 0 {
		return 0
	}
	return float64(n) / seconds
}
