package bench

import (
	"errors"
	"testing"
)

func TestParseSources(t *testing.T) {
	tests := []struct {
		give    string
		want    []string // the first addresses, in order
		wantLen int
	}{
		{give: "127.0.0.2", want: []string{"127.0.0.2"}, wantLen: 1},
		{give: "127.0.0.2-127.0.0.4", want: []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}, wantLen: 3},
		{
			// .0 and .255 are skipped; /24s alternate.
			give:    "127.0.0.254-127.0.2.1",
			want:    []string{"127.0.0.254", "127.0.1.1", "127.0.2.1", "127.0.1.2", "127.0.1.3"},
			wantLen: 1 + 254 + 1,
		},
		{give: "127.0.0.2-127.0.15.254", want: []string{"127.0.0.2", "127.0.1.1", "127.0.2.1"}, wantLen: 253 + 15*254},
		{give: "127.0.0.2, 127.0.5.9", want: []string{"127.0.0.2", "127.0.5.9"}, wantLen: 2},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			s, err := ParseSources(tt.give)
			if err != nil {
				t.Fatal(err)
			}
			if s.Len() != tt.wantLen {
				t.Errorf("Len() = %d, want %d", s.Len(), tt.wantLen)
			}
			for i, w := range tt.want {
				if got := s.At(i).String(); got != w {
					t.Errorf("At(%d) = %s, want %s", i, got, w)
				}
			}
			if s.At(s.Len()) != s.At(0) {
				t.Errorf("At(Len()) = %s, want a wrap to %s", s.At(s.Len()), s.At(0))
			}
		})
	}
}

func TestParseSourcesRejects(t *testing.T) {
	tests := []struct {
		give    string
		wantErr error
	}{
		{give: "10.0.0.1", wantErr: ErrNotLoopback},
		{give: "127.0.0.2-192.168.1.1", wantErr: ErrNotLoopback},
		{give: "127.0.0.9-127.0.0.3"},
		{give: "::1"},
		{give: "localhost"},
		{give: "127.0.0.0"}, // only a network address: nothing usable
		{give: ""},
		{give: "127.0.0.1-127.2.0.0"}, // too many
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			_, err := ParseSources(tt.give)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestNilSourcesLetTheKernelChoose(t *testing.T) {
	var s *Sources
	if s.Len() != 0 || s.At(7).IsValid() {
		t.Errorf("nil Sources: Len %d, At(7) %v; want 0 and the zero Addr", s.Len(), s.At(7))
	}
}
