package config

import (
	"net/netip"
	"testing"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		give    string
		want    int64
		wantErr bool
	}{
		{give: "0", want: 0},
		{give: "512", want: 512},
		{give: "512B", want: 512},
		{give: "16KiB", want: 16 << 10},
		{give: "1MiB", want: 1 << 20},
		{give: "2GiB", want: 2 << 30},
		{give: "1kB", want: 1000},
		{give: "16KB", want: 16000},
		{give: "1MB", want: 1_000_000},
		{give: "2GB", want: 2_000_000_000},
		{give: "8589934591GiB", want: 8589934591 << 30},
		{give: "8589934592GiB", wantErr: true}, // 2^63 bytes
		{give: "", wantErr: true},
		{give: "MiB", wantErr: true},
		{give: "1.5MiB", wantErr: true},
		{give: "-1", wantErr: true},
		{give: "1 MiB", wantErr: true},
		{give: "1mib", wantErr: true},
		{give: "1MiBB", wantErr: true},
		{give: "1_000", wantErr: true},
		{give: "0x10", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.give)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, error %v", tt.give, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestCheckHostPort(t *testing.T) {
	tests := []struct {
		give     string
		listener bool
		wantErr  string
	}{
		{give: "127.0.0.1:9001"},
		{give: "[::1]:9001"},
		{give: "[fe80::1%eth0]:9001"},
		{give: "app-1.internal:443"},
		{give: "app_1:8080"},
		{give: "localhost.:80"},
		{give: ":8080", listener: true},
		{give: ":8080", wantErr: `missing host in ":8080" (want host:port, e.g. "127.0.0.1:9001")`},
		{give: "127.0.0.1", wantErr: `invalid address "127.0.0.1" (want host:port, e.g. "127.0.0.1:9001")`},
		{give: "::1:80", wantErr: `invalid address "::1:80" (want host:port, e.g. "127.0.0.1:9001")`},
		{give: "127.0.0.1:0", wantErr: `invalid port "0" in "127.0.0.1:0" (want 1..65535)`},
		{give: "127.0.0.1:0", listener: true},
		{give: "127.0.0.1:-1", listener: true, wantErr: `invalid port "-1" in "127.0.0.1:-1" (want 0..65535)`},
		{give: "127.0.0.1:65536", wantErr: `invalid port "65536" in "127.0.0.1:65536" (want 1..65535)`},
		{give: "127.0.0.1:+80", wantErr: `invalid port "+80" in "127.0.0.1:+80" (want 1..65535)`},
		{give: "127.0.0.1:", wantErr: `invalid port "" in "127.0.0.1:" (want 1..65535)`},
		{give: "[10.0.0.1]:80", wantErr: `invalid IPv6 address "10.0.0.1" in "[10.0.0.1]:80"`},
		{give: "10.0.0.256:80", wantErr: `invalid host "10.0.0.256" in "10.0.0.256:80" (want an IP address or a DNS name)`},
		{give: "-app:80", wantErr: `invalid host "-app" in "-app:80" (want an IP address or a DNS name)`},
		{give: "a..b:80", wantErr: `invalid host "a..b" in "a..b:80" (want an IP address or a DNS name)`},
		{give: "http://app:80", wantErr: `invalid address "http://app:80" (want host:port, e.g. "127.0.0.1:9001")`},
	}
	for _, tt := range tests {
		err := checkHostPort(tt.give, tt.listener)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.wantErr {
			t.Errorf("checkHostPort(%q, %v) = %q, want %q", tt.give, tt.listener, got, tt.wantErr)
		}
	}
}

func TestParsePrefix(t *testing.T) {
	tests := []struct {
		give    string
		want    netip.Prefix
		wantErr bool
	}{
		{give: "10.0.0.0/8", want: netip.MustParsePrefix("10.0.0.0/8")},
		{give: "10.9.8.7/8", want: netip.MustParsePrefix("10.0.0.0/8")},
		{give: "192.0.2.1", want: netip.MustParsePrefix("192.0.2.1/32")},
		{give: "2001:db8::1", want: netip.MustParsePrefix("2001:db8::1/128")},
		{give: "2001:db8::/32", want: netip.MustParsePrefix("2001:db8::/32")},
		{give: "0.0.0.0/0", want: netip.MustParsePrefix("0.0.0.0/0")},
		{give: "10.0.0.0/33", wantErr: true},
		{give: "fe80::1%eth0", wantErr: true},
		{give: "10.0.0.0/", wantErr: true},
		{give: "example.com", wantErr: true},
		{give: "", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parsePrefix(tt.give)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parsePrefix(%q) = %v, %v; want %v, error %v", tt.give, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestIsToken(t *testing.T) {
	tests := []struct {
		give string
		want bool
	}{
		{"wsedge_route", true},
		{"X-Session-ID", true},
		{"a!#$%&'*+-.^_`|~z", true},
		{"", false},
		{"my route", false},
		{"route;id", false},
		{"a=b", false},
		{`"quoted"`, false},
		{"ünï", false},
	}
	for _, tt := range tests {
		if got := isToken(tt.give); got != tt.want {
			t.Errorf("isToken(%q) = %v, want %v", tt.give, got, tt.want)
		}
	}
}

func TestCheckOrigin(t *testing.T) {
	tests := []struct {
		give string
		want bool // valid
	}{
		{"https://example.com", true},
		{"http://localhost:3000", true},
		{"https://[::1]:8443", true},
		{"https://example.com/", false},
		{"https://example.com/app", false},
		{"https://example.com?x", false},
		{"example.com", false},
		{"*", false},
		{"", false},
		{"https://user@example.com", false},
	}
	for _, tt := range tests {
		if got := checkOrigin(tt.give) == nil; got != tt.want {
			t.Errorf("checkOrigin(%q) valid = %v, want %v", tt.give, got, tt.want)
		}
	}
}
