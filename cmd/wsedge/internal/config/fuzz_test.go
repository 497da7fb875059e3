package config

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParse feeds arbitrary documents to Parse. Whatever the input, Parse
// must not panic, must return a File or Problems but not both, must place
// every problem (a key or a line inside the document), and must only accept
// what Validate accepts. The seed corpus lives in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		const name = "fuzz.toml"
		cfg, err := Parse(name, data)
		if err == nil {
			if cfg == nil {
				t.Fatal("Parse returned neither a File nor an error")
			}
			if verr := cfg.Validate(); verr != nil {
				t.Fatalf("Parse accepted a File that Validate refuses: %v", verr)
			}
			return
		}
		if cfg != nil {
			t.Fatal("Parse returned a File along with an error")
		}
		var probs Problems
		if !errors.As(err, &probs) || len(probs) == 0 {
			t.Fatalf("error %v (%T), want non-empty Problems", err, err)
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		for _, p := range probs {
			if p.File != name || (p.Key == "" && p.Line <= 0) || p.Line > lines || p.Msg == "" {
				t.Fatalf("problem without a usable place or message: %#v", p)
			}
		}
		if _, again := Parse(name, data); again == nil || again.Error() != err.Error() {
			t.Fatalf("Parse is not deterministic:\n%v\nthen:\n%v", err, again)
		}
	})
}
