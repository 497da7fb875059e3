package bench

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseSize parses a message size: a number of bytes, optionally with a
// unit B, KiB or MiB ("64", "64B", "4KiB").
func ParseSize(s string) (int, error) {
	num, mult := strings.TrimSpace(s), 1
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"B", 1}} {
		if n, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want bytes, e.g. 64, 4KiB or 1MiB", s)
	}
	return n * mult, nil
}

// ParseRate parses a rate of new connections per second: "2000/s" or
// "2000".
func ParseRate(s string) (float64, error) {
	num, _ := strings.CutSuffix(strings.TrimSpace(s), "/s")
	r, err := strconv.ParseFloat(num, 64)
	if err != nil || r <= 0 {
		return 0, fmt.Errorf("rate %q: want connections per second, e.g. 2000/s", s)
	}
	return r, nil
}
