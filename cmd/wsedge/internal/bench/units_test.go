package bench

import (
	"errors"
	"testing"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		give    string
		want    int
		wantErr bool
	}{
		{give: "64", want: 64},
		{give: "64B", want: 64},
		{give: "4KiB", want: 4096},
		{give: "1 MiB", want: 1 << 20},
		{give: "0", want: 0},
		{give: "4kb", wantErr: true},
		{give: "-1", wantErr: true},
		{give: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			got, err := ParseSize(tt.give)
			if tt.wantErr != (err != nil) || got != tt.want {
				t.Errorf("ParseSize = %d, %v; want %d (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseRate(t *testing.T) {
	tests := []struct {
		give    string
		want    float64
		wantErr bool
	}{
		{give: "2000/s", want: 2000},
		{give: "2000", want: 2000},
		{give: "0.5/s", want: 0.5},
		{give: "0/s", wantErr: true},
		{give: "fast", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			got, err := ParseRate(tt.give)
			if tt.wantErr != (err != nil) || got != tt.want {
				t.Errorf("ParseRate = %g, %v; want %g (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseIdlePart(t *testing.T) {
	tests := []struct {
		give    string
		want    IdlePart
		wantErr bool
	}{
		{give: "0:9000:1000", want: IdlePart{First: 0, Conns: 9000, Rate: 1000}},
		{give: "9000:9000:666.5", want: IdlePart{First: 9000, Conns: 9000, Rate: 666.5}},
		{give: "1:0:10", wantErr: true},
		{give: "1:2", wantErr: true},
		{give: "a:2:3", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			got, err := ParseIdlePart(tt.give)
			if tt.wantErr != (err != nil) || got != tt.want {
				t.Errorf("ParseIdlePart = %+v, %v; want %+v (error %v)", got, err, tt.want, tt.wantErr)
			}
			if err == nil {
				if back, _ := ParseIdlePart(got.String()); back != got {
					t.Errorf("String() %q does not parse back", got.String())
				}
			}
		})
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		give     string
		wantURL  string
		wantAddr string
		wantTLS  bool
		wantErr  error
	}{
		{give: "ws://127.0.0.1:8080/", wantURL: "ws://127.0.0.1:8080/", wantAddr: "127.0.0.1:8080"},
		{give: "ws://127.0.0.1:8080", wantURL: "ws://127.0.0.1:8080/", wantAddr: "127.0.0.1:8080"},
		{give: "ws://localhost/chat?room=1", wantURL: "ws://localhost/chat?room=1", wantAddr: "localhost:80"},
		{give: "ws://[::1]:9000/", wantURL: "ws://[::1]:9000/", wantAddr: "[::1]:9000"},
		{give: "ws://192.0.2.7:8080/", wantErr: ErrNotLoopback},
		{give: "ws://example.com/"},
		{give: "wss://127.0.0.1/", wantURL: "wss://127.0.0.1/", wantAddr: "127.0.0.1:443", wantTLS: true},
		{give: "wss://localhost:8443", wantURL: "wss://localhost:8443/", wantAddr: "localhost:8443", wantTLS: true},
		{give: "wss://192.0.2.7/", wantErr: ErrNotLoopback},
		{give: "http://127.0.0.1/"},
		{give: "https://127.0.0.1/"},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			got, err := ParseTarget(tt.give)
			if tt.wantURL == "" {
				if err == nil {
					t.Fatalf("ParseTarget = %+v, want an error", got)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || got.URL != tt.wantURL || got.Addr != tt.wantAddr || got.TLS != tt.wantTLS {
				t.Errorf("ParseTarget = %+v, %v; want %s dialing %s, TLS %v", got, err, tt.wantURL, tt.wantAddr, tt.wantTLS)
			}
		})
	}
}

func TestTargetsAlternate(t *testing.T) {
	var ts Targets
	if err := ts.Set("ws://127.0.0.1:8080/,ws://127.0.0.1:8180/"); err != nil {
		t.Fatal(err)
	}
	if err := ts.Set("ws://127.0.0.1:8280/"); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"127.0.0.1:8080", "127.0.0.1:8180", "127.0.0.1:8280", "127.0.0.1:8080"} {
		if got := ts.at(i).Addr; got != want {
			t.Errorf("at(%d) = %s, want %s", i, got, want)
		}
	}
}
