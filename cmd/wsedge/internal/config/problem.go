package config

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a config file.
type Problem struct {
	File string // the file name given to Parse or Load
	Line int    // 1-based; 0 when the problem has no single place (a missing key)
	Key  string // full dotted key, such as "upstream[2].weight"; "" for some syntax errors
	Msg  string

	// Column is the 1-based column of a TOML syntax error; 0 otherwise,
	// because schema problems are about a whole key.
	Column int
}

// Error formats the problem the way compilers do, so editors can jump to it:
//
//	proxy.toml:12: websocket.ping_interval: invalid duration "20x" (want e.g. "20s")
func (p Problem) Error() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(p.Line))
		if p.Column > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(p.Column))
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if p.Key != "" {
		b.WriteString(p.Key)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every problem found in one file, in line order; those without a
// line come last. Parse and Load return it as their error, never empty.
type Problems []Problem

// Error lists the problems one per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find a single Problem.
func (ps Problems) Unwrap() []error {
	errs := make([]error, len(ps))
	for i, p := range ps {
		errs[i] = p
	}
	return errs
}

// sortProblems orders problems as a reader of the file meets them. The sort
// is stable so that problems on one line keep the order they were found in.
func sortProblems(ps Problems) {
	line := func(p Problem) int {
		if p.Line == 0 {
			return math.MaxInt
		}
		return p.Line
	}
	slices.SortStableFunc(ps, func(a, b Problem) int { return cmp.Compare(line(a), line(b)) })
}
