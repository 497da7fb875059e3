package config

import (
	"bytes"
	"errors"
	"os"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// Load reads the file at path and parses it. A file that cannot be read
// yields the *fs.PathError of os.ReadFile, so callers can tell a missing
// file (errors.Is(err, fs.ErrNotExist)) from a broken one (Problems).
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse decodes a proxy.toml document. name, usually the file's path, only
// labels problems.
//
// Keys the document leaves out keep their Default value, except the upstream
// list, which starts empty: a file without [[upstream]] relies on discovery.
//
// On failure Parse returns a nil File and Problems listing everything it
// found wrong in the whole document, not just the first thing: syntax,
// unknown keys and tables, wrong types, bad values and rules that tie keys
// together. After a TOML syntax error only the keys before it are checked,
// and rules that need the whole file are skipped.
func Parse(name string, data []byte) (*File, error) {
	// Editors on Windows may start the file with a byte order mark, which
	// TOML does not allow and the reader cannot see.
	data = bytes.TrimPrefix(data, []byte("\uFEFF"))

	f := Default()
	f.Path = name
	f.Upstreams = nil

	d := newDecoder(name, data, schema(f))
	walkErr := d.walk()
	probs := d.probs
	switch tomlProb := checkTOML(name, data); {
	case tomlProb != nil:
		probs = withTOMLProblem(d, *tomlProb)
	case walkErr != nil:
		// Unreachable while go-toml's decoder is at least as strict as its
		// parser; kept so that a disagreement cannot pass as success.
		probs = append(probs, Problem{File: name, Line: d.errorLine(walkErr), Msg: "toml: " + walkErr.Error()})
	default:
		v := validator{file: name, lines: d.lines, bad: d.bad, probs: probs}
		v.check(f)
		probs = v.probs
	}
	if len(probs) > 0 {
		sortProblems(probs)
		return nil, probs
	}
	return f, nil
}

// withTOMLProblem adds the TOML error p to what the schema walk found.
func withTOMLProblem(d *decoder, p Problem) Problems {
	// go-toml names the key relative to its table; the walk saw the same
	// line and knows the full name.
	if k, ok := d.keyAt[p.Line]; ok && (k == p.Key || strings.HasSuffix(k, "."+p.Key)) {
		p.Key = k
	}
	// The TOML error says it better than whatever the walk made of the
	// same line.
	var probs Problems
	for _, q := range d.probs {
		if q.Line != p.Line {
			probs = append(probs, q)
		}
	}
	return append(probs, p)
}

// checkTOML decodes data generically to catch what makes it invalid TOML.
// The AST walk alone would not: go-toml's parser checks syntax but leaves
// the language's other rules (a key or table defined twice, integers that
// overflow or have leading zeros) to its decoder.
func checkTOML(name string, data []byte) *Problem {
	var doc map[string]any
	err := toml.Unmarshal(data, &doc)
	if err == nil {
		return nil
	}
	p := Problem{File: name, Line: 1, Msg: err.Error()}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		p.Line, p.Column = de.Position()
		p.Key = strings.Join(de.Key(), ".")
		p.Line = max(p.Line, 1)
	}
	return &p
}
