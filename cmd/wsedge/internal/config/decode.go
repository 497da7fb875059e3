package config

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2/unstable"
)

// decoder walks one TOML document expression by expression, checks every key
// against the schema and stores the values it accepts. It keeps going after
// a problem, so one run reports all of them.
//
// It reads go-toml's unstable AST rather than decoding into structs because
// the AST gives the position of every key, inside tables, inline tables and
// arrays of tables alike, and never stops at the first unknown key.
//
// A decoder reads one document once, on one goroutine.
type decoder struct {
	file       string
	root       []field
	p          unstable.Parser
	lineStarts []int // offset of the first byte of each line

	probs Problems
	lines map[string]int   // dotted key → line that sets it, for later rules
	keyAt map[int]string   // line → the last key it sets, to name TOML errors
	bad   map[string]bool  // keys whose value was rejected: later rules skip them
	last  map[string]scope // table array key → its latest element, for [upstream.x]
}

// scope is where the keys that follow a header go.
type scope struct {
	key    string // "" for the root, "websocket", "upstream[1]"
	fields []field
}

func newDecoder(file string, data []byte, root []field) *decoder {
	d := &decoder{
		file:       file,
		root:       root,
		lineStarts: []int{0},
		lines:      make(map[string]int),
		keyAt:      make(map[int]string),
		bad:        make(map[string]bool),
		last:       make(map[string]scope),
	}
	for i, c := range data {
		if c == '\n' {
			d.lineStarts = append(d.lineStarts, i+1)
		}
	}
	d.p.Reset(data)
	return d
}

// walk decodes the whole document. It returns the parser's error, if any;
// what came before the error has been decoded and checked.
func (d *decoder) walk() error {
	// cur is nil inside an unknown or mistyped table: its keys were
	// reported with the header, not one by one.
	cur := &scope{fields: d.root}
	for d.p.NextExpression() {
		n := d.p.Expression()
		switch n.Kind {
		case unstable.Table, unstable.ArrayTable:
			cur = d.header(n)
		case unstable.KeyValue:
			if cur != nil {
				d.keyval(*cur, n)
			}
		}
	}
	return d.p.Error()
}

// header resolves [a.b] or [[a]] to the table its keys go into.
func (d *decoder) header(n *unstable.Node) *scope {
	isArray := n.Kind == unstable.ArrayTable
	t := scope{fields: d.root}
	it := n.Key()
	for it.Next() {
		k := it.Node()
		line := d.line(k)
		name := string(k.Data)
		key := joinKey(t.key, name)
		fd, ok := lookup(t.fields, name)
		if !ok {
			d.unknown(t.fields, key, name, line, "table")
			return nil
		}
		final := it.IsLast()
		switch {
		case fd.kind == kindTable && !(final && isArray):
			t = scope{key: key, fields: fd.fields}
		case fd.kind == kindTableArray && final && isArray:
			i, fields := fd.add()
			t = scope{key: indexKey(key, i), fields: fields}
			d.last[key] = t
			d.mark(key, line)
		case fd.kind == kindTableArray && !final:
			// [upstream.x] names a table inside the latest [[upstream]].
			last, ok := d.last[key]
			if !ok {
				d.mismatch(key, line, want(fd), "a table")
				return nil
			}
			t = last
		default:
			got := "a table"
			if final && isArray {
				got = "an array of tables"
			}
			d.mismatch(key, line, want(fd), got)
			return nil
		}
		d.mark(t.key, line)
	}
	return &t
}

// keyval decodes one `a.b = value` inside t.
func (d *decoder) keyval(t scope, n *unstable.Node) {
	it := n.Key()
	for it.Next() {
		k := it.Node()
		line := d.line(k)
		name := string(k.Data)
		key := joinKey(t.key, name)
		fd, ok := lookup(t.fields, name)
		if !ok {
			d.unknown(t.fields, key, name, line, "key")
			return
		}
		if it.IsLast() {
			d.value(fd, key, line, n.Value())
			return
		}
		// A dotted key walks into a table: websocket.ping_interval = "20s".
		if fd.kind != kindTable {
			d.mismatch(key, line, want(fd), "a table")
			return
		}
		d.mark(key, line)
		t = scope{key: key, fields: fd.fields}
	}
}

// value decodes the value v of the key fd, named key, written on line.
func (d *decoder) value(fd field, key string, line int, v *unstable.Node) {
	d.mark(key, line)
	switch fd.kind {
	case kindLeaf:
		fd.decode(d, key, line, v)
	case kindTable:
		if v.Kind != unstable.InlineTable {
			d.mismatch(key, line, want(fd), describe(v))
			return
		}
		d.inline(scope{key: key, fields: fd.fields}, v)
	case kindTableArray:
		if v.Kind != unstable.Array {
			d.mismatch(key, line, want(fd), describe(v))
			return
		}
		it := v.Children()
		for it.Next() {
			e := it.Node()
			// Every element gets its place, even a wrong one, so that
			// upstream[2] is the third element in the file and in the File.
			i, fields := fd.add()
			t := scope{key: indexKey(key, i), fields: fields}
			d.mark(t.key, d.lineOr(e, line))
			if e.Kind != unstable.InlineTable {
				d.mismatch(t.key, d.lineOr(e, line), "a table", describe(e))
				continue
			}
			d.inline(t, e)
		}
	}
}

// inline decodes the key/value pairs of an inline table into t.
func (d *decoder) inline(t scope, v *unstable.Node) {
	it := v.Children()
	for it.Next() {
		if kv := it.Node(); kv.Kind == unstable.KeyValue {
			d.keyval(t, kv)
		}
	}
}

// add records a problem found while decoding.
func (d *decoder) add(line int, key, msg string) {
	d.probs = append(d.probs, Problem{File: d.file, Line: line, Key: key, Msg: msg})
	if key != "" {
		d.bad[key] = true
	}
}

func (d *decoder) unknown(fields []field, key, name string, line int, what string) {
	msg := "unknown " + what
	if s := suggest(d.root, fields, name); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	d.add(line, key, msg)
}

func (d *decoder) mismatch(key string, line int, want, got string) {
	d.add(line, key, "want "+want+", got "+got)
}

// mark remembers the first line that sets key, and the key on line.
func (d *decoder) mark(key string, line int) {
	if _, ok := d.lines[key]; !ok {
		d.lines[key] = line
	}
	d.keyAt[line] = key
}

// line returns the line of a node that has a position: keys, scalars and
// inline tables.
func (d *decoder) line(n *unstable.Node) int {
	return sort.SearchInts(d.lineStarts, int(n.Raw.Offset)+1)
}

// errorLine returns the line of a parser error, or 1 when it has no
// position in the document.
func (d *decoder) errorLine(err error) int {
	var perr *unstable.ParserError
	if !errors.As(err, &perr) {
		return 1
	}
	data := d.p.Data()
	// The highlight is a subslice of the document; its capacity says where.
	off := cap(data) - cap(perr.Highlight)
	if off < 0 || off > len(data) {
		return 1
	}
	return sort.SearchInts(d.lineStarts, off+1)
}

// lineOr returns the line of n, or fallback for nodes the parser gives no
// position (arrays).
func (d *decoder) lineOr(n *unstable.Node, fallback int) int {
	if n.Raw.Length == 0 {
		return fallback
	}
	return d.line(n)
}

// What each kind of value is called in messages.
const (
	wantString   = "a string"
	wantBool     = "a boolean (true or false)"
	wantInt      = "an integer"
	wantNumber   = "a number"
	wantDuration = `a duration string such as "20s"`
	wantSize     = `a size such as 1048576 or "1MiB"`
	wantStrings  = "an array of strings"
	wantPrefixes = `an array of CIDRs such as ["10.0.0.0/8"]`
)

// want describes what the key fd takes, for messages.
func want(fd field) string {
	switch fd.kind {
	case kindTable:
		return "a table ([" + fd.name + "])"
	case kindTableArray:
		return "an array of tables ([[" + fd.name + "]])"
	}
	return fd.want
}

// describe says what a value is, quoting short values so the reader can find
// them.
func describe(v *unstable.Node) string {
	const maxShown = 40
	raw := string(v.Data)
	if len(raw) > maxShown {
		raw = raw[:maxShown] + "..."
	}
	switch v.Kind {
	case unstable.String:
		return "a string (" + strconv.Quote(raw) + ")"
	case unstable.Integer:
		return "an integer (" + raw + ")"
	case unstable.Float:
		return "a float (" + raw + ")"
	case unstable.Bool:
		return "a boolean (" + raw + ")"
	case unstable.Array:
		return "an array"
	case unstable.InlineTable:
		return "a table"
	case unstable.LocalDate, unstable.LocalTime, unstable.LocalDateTime, unstable.DateTime:
		return "a date/time (" + raw + ")"
	}
	return "a " + strings.ToLower(v.Kind.String())
}

func (d *decoder) str(key string, line int, v *unstable.Node) (string, bool) {
	if v.Kind != unstable.String {
		d.mismatch(key, line, wantString, describe(v))
		return "", false
	}
	return string(v.Data), true
}

func (d *decoder) boolean(key string, line int, v *unstable.Node) (bool, bool) {
	if v.Kind != unstable.Bool {
		d.mismatch(key, line, wantBool, describe(v))
		return false, false
	}
	return string(v.Data) == "true", true
}

func (d *decoder) integer(key string, line int, v *unstable.Node) (int, bool) {
	if v.Kind != unstable.Integer {
		d.mismatch(key, line, wantInt, describe(v))
		return 0, false
	}
	n, err := parseInt(v.Data)
	if err != nil {
		d.add(line, key, fmt.Sprintf("integer %s out of range", v.Data))
		return 0, false
	}
	return int(n), true
}

func (d *decoder) number(key string, line int, v *unstable.Node) (float64, bool) {
	switch v.Kind {
	case unstable.Integer:
		// load_factor = 0 is an integer in TOML; it means the same as 0.0.
		n, err := parseInt(v.Data)
		if err != nil {
			d.add(line, key, fmt.Sprintf("number %s out of range", v.Data))
			return 0, false
		}
		return float64(n), true
	case unstable.Float:
		x, err := strconv.ParseFloat(strings.ReplaceAll(string(v.Data), "_", ""), 64)
		if err != nil {
			d.add(line, key, fmt.Sprintf("number %s out of range", v.Data))
			return 0, false
		}
		return x, true
	}
	d.mismatch(key, line, wantNumber, describe(v))
	return 0, false
}

func (d *decoder) duration(key string, line int, v *unstable.Node) (time.Duration, bool) {
	switch v.Kind {
	case unstable.String:
		t, err := time.ParseDuration(string(v.Data))
		if err != nil {
			d.add(line, key, fmt.Sprintf("invalid duration %q (want e.g. \"20s\")", v.Data))
			return 0, false
		}
		return t, true
	case unstable.Integer:
		// A bare 0 is unambiguous and SPEC.md writes "0 = off"; any other
		// number lacks a unit, and guessing one would be wrong half the time.
		if n, err := parseInt(v.Data); err == nil && n == 0 {
			return 0, true
		}
	}
	d.mismatch(key, line, wantDuration, describe(v))
	return 0, false
}

func (d *decoder) size(key string, line int, v *unstable.Node) (int64, bool) {
	switch v.Kind {
	case unstable.Integer:
		n, err := parseInt(v.Data)
		if err != nil || n < 0 {
			d.add(line, key, fmt.Sprintf("invalid size %s (want bytes, at least 0)", v.Data))
			return 0, false
		}
		return n, true
	case unstable.String:
		n, err := parseSize(string(v.Data))
		if err != nil {
			d.add(line, key, err.Error())
			return 0, false
		}
		return n, true
	}
	d.mismatch(key, line, wantSize, describe(v))
	return 0, false
}

// elems calls each for every element of the array v, with its key and line,
// and reports whether all of them were accepted.
func (d *decoder) elems(key string, line int, v *unstable.Node, want string, each func(key string, line int, e *unstable.Node) bool) bool {
	if v.Kind != unstable.Array {
		d.mismatch(key, line, want, describe(v))
		return false
	}
	ok := true
	it := v.Children()
	for i := 0; it.Next(); i++ {
		e := it.Node()
		ekey, eline := indexKey(key, i), d.lineOr(e, line)
		d.mark(ekey, eline)
		if !each(ekey, eline, e) {
			ok = false
		}
	}
	return ok
}

func (d *decoder) strs(key string, line int, v *unstable.Node) ([]string, bool) {
	var out []string
	ok := d.elems(key, line, v, wantStrings, func(key string, line int, e *unstable.Node) bool {
		s, ok := d.str(key, line, e)
		out = append(out, s)
		return ok
	})
	return out, ok
}

func (d *decoder) prefixes(key string, line int, v *unstable.Node) ([]netip.Prefix, bool) {
	var out []netip.Prefix
	ok := d.elems(key, line, v, wantPrefixes, func(key string, line int, e *unstable.Node) bool {
		s, ok := d.str(key, line, e)
		if !ok {
			return false
		}
		p, err := parsePrefix(s)
		if err != nil {
			d.add(line, key, err.Error())
			return false
		}
		out = append(out, p)
		return true
	})
	return out, ok
}
