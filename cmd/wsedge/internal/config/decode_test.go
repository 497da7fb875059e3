package config

import "testing"

func TestDecoderErrorLine(t *testing.T) {
	tests := []struct {
		give string
		want int
	}{
		{give: "a = 1\nb = \n", want: 2},
		{give: "a = 1\n\n\n[b\n", want: 4},
		{give: "a = \"x", want: 1},
		{give: "a = 1\nb = [1,\n2,\n", want: 3}, // the end of the input
	}
	for _, tt := range tests {
		d := newDecoder("p.toml", []byte(tt.give), nil)
		err := d.walk()
		if err == nil {
			t.Errorf("walk(%q) accepted broken TOML", tt.give)
			continue
		}
		if got := d.errorLine(err); got != tt.want {
			t.Errorf("errorLine for %q = %d, want %d", tt.give, got, tt.want)
		}
	}
}
