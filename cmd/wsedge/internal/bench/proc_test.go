package bench

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		give    string // file in testdata/proc
		want    uint64
		wantErr bool
	}{
		// The command name holds spaces and parentheses.
		{give: "stat-parens", want: 1234 + 567},
		{give: "stat-short", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "proc", tt.give))
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseStat(b)
			if tt.wantErr {
				if !errors.Is(err, ErrProcFormat) {
					t.Fatalf("err = %v, want ErrProcFormat", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("parseStat = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

func TestReadCPUConvertsTicks(t *testing.T) {
	got, err := readCPU(filepath.Join("testdata", "proc", "stat-parens"))
	if err != nil {
		t.Fatal(err)
	}
	if want := 18010 * time.Millisecond; got != want {
		t.Errorf("readCPU = %v, want %v (1801 ticks of 10ms)", got, want)
	}
}

func TestParseRSS(t *testing.T) {
	tests := []struct {
		give    string
		want    int64
		wantErr bool
	}{
		{give: "status", want: 17804 * 1024},
		{give: "status-kthread", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			got, err := readRSS(filepath.Join("testdata", "proc", tt.give))
			if tt.wantErr != (err != nil) || got != tt.want {
				t.Errorf("readRSS = %d, %v; want %d (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestPIDsOfThisProcess(t *testing.T) {
	p := PIDs{os.Getpid(), os.Getpid()}
	rss, err := p.RSS()
	if err != nil {
		t.Fatal(err)
	}
	one, _ := PIDs{os.Getpid()}.RSS()
	if rss < 1<<20 || rss < 2*one-(1<<20) {
		t.Errorf("RSS of this process listed twice = %d, want about twice %d", rss, one)
	}
	before, err := p.CPU()
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(60 * time.Millisecond); time.Now().Before(end); {
	}
	after, err := p.CPU()
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 40*time.Millisecond {
		t.Errorf("CPU grew %v over a 60ms busy loop counted twice, want at least 40ms", after-before)
	}
}

func TestPIDsOfAnExitedProcessFail(t *testing.T) {
	// PID numbers wrap well below this on Linux (pid_max is at most 2^22).
	gone := PIDs{1 << 23}
	if _, err := gone.CPU(); err == nil {
		t.Error("CPU of a missing process: no error")
	}
	if _, err := gone.RSS(); err == nil {
		t.Error("RSS of a missing process: no error")
	}
}

func TestParsePIDs(t *testing.T) {
	tests := []struct {
		give    string
		want    string
		wantErr bool
	}{
		{give: "", want: ""},
		{give: "12", want: "12"},
		{give: "12, 34,56", want: "12,34,56"},
		{give: "12,x", wantErr: true},
		{give: "-3", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			got, err := ParsePIDs(tt.give)
			if tt.wantErr != (err != nil) || got.String() != tt.want {
				t.Errorf("ParsePIDs = %v, %v; want %q (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}
