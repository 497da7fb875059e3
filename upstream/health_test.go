package upstream

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// feed applies results to h, one letter each: p an active pass, f an active
// failure, x a failure the proxy reported, o a success it reported. It
// returns the ring membership after each result, "1" in and "0" out.
func feed(h *health, results string, rise, fall int) string {
	var b strings.Builder
	for _, r := range results {
		switch r {
		case 'p':
			h.pass(rise)
		case 'f':
			h.fail(fall, "check failed")
		case 'x':
			h.passiveFail(fall, "dial failed")
		case 'o':
			h.passiveOK()
		}
		if h.up {
			b.WriteByte('1')
		} else {
			b.WriteByte('0')
		}
	}
	return b.String()
}

func TestHealthRiseFall(t *testing.T) {
	tests := []struct {
		name      string
		trusted   bool // starts in the ring, as a static backend at start
		rise      int
		fall      int
		give      string
		want      string
		wantState State
	}{
		{"new backend enters after rise passes", false, 2, 3, "pp", "01", StateHealthy},
		{"new backend is rising until a failure", false, 3, 3, "pp", "00", StateRising},
		{"a failure restarts the run of passes", false, 2, 3, "pfpp", "0001", StateHealthy},
		{"a failure before entering makes it unhealthy", false, 2, 3, "pf", "00", StateUnhealthy},
		{"trusted backend leaves after fall failures", true, 2, 3, "fff", "110", StateUnhealthy},
		{"a pass restarts the run of failures", true, 2, 3, "ffpfff", "111110", StateUnhealthy},
		{"back in after rise passes", true, 2, 3, "fffpp", "11001", StateHealthy},
		{"alternating never leaves", true, 2, 3, "fpfpfpfpfpfp", "111111111111", StateHealthy},
		{"alternating never enters", false, 2, 3, "pfpfpfpfpfpf", "000000000000", StateUnhealthy},
		{"two failures of three are not enough", true, 2, 3, "ffpffpffp", "111111111", StateHealthy},
		{"rise and fall of one follow every check", true, 1, 1, "fpfp", "0101", StateHealthy},
		{"passive failures take it out at once", true, 2, 3, "xxx", "110", StateUnhealthy},
		{"a good upgrade ends a run of passive failures", true, 2, 3, "xxoxxoxx", "11111111", StateHealthy},
		{"active passes do not end a run of passive failures", true, 2, 3, "xxpx", "1110", StateUnhealthy},
		{"only active checks bring it back", true, 2, 3, "xxxoopp", "1100001", StateHealthy},
		{"passive failures while out change nothing", false, 2, 3, "xxxxpp", "000001", StateHealthy},
		{"active and passive runs count apart", true, 2, 3, "fxfxpp", "111111", StateHealthy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := rising()
			if tt.trusted {
				h = trusted()
			}
			if got := feed(&h, tt.give, tt.rise, tt.fall); got != tt.want {
				t.Errorf("ring membership after %q = %s, want %s", tt.give, got, tt.want)
			}
			if got := h.state(); got != tt.wantState {
				t.Errorf("state = %s, want %s", got, tt.wantState)
			}
		})
	}
}

func TestHealthLastError(t *testing.T) {
	h := trusted()
	h.fail(3, "refused")
	if h.lastErr != "refused" {
		t.Errorf("lastErr = %q, want the failure that did not yet take it out", h.lastErr)
	}
	feed(&h, "ff", 2, 3)
	h.fail(3, "timeout")
	if h.lastErr != "timeout" {
		t.Errorf("lastErr = %q, want the latest failure", h.lastErr)
	}
	feed(&h, "pp", 2, 3)
	if h.lastErr != "" {
		t.Errorf("lastErr = %q after entering, want none", h.lastErr)
	}
}

// Whatever the sequence, every entry follows rise passes in a row and every
// exit fall failures in a row, and the state changes at most once between
// two ring changes.
func TestHealthFlappingNeverOutpacesRiseFall(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		rise, fall := 1+r.IntN(4), 1+r.IntN(4)
		pFail := r.Float64()
		results := make([]byte, 200)
		for i := range results {
			results[i] = 'p'
			if r.Float64() < pFail {
				results[i] = 'f'
			}
		}
		h := health{up: r.IntN(2) == 0}
		if !h.up {
			h = rising()
		}
		wasUp, state := h.up, h.state()
		stateChanges := 0
		for i, c := range results {
			feed(&h, string(c), rise, fall)
			if st := h.state(); st != state {
				stateChanges++
				state = st
			}
			if h.up == wasUp {
				continue
			}
			stateChanges = 0
			want, n := byte('p'), rise
			if !h.up {
				want, n = 'f', fall
			}
			if i+1 < n || strings.Count(string(results[i+1-n:i+1]), string(want)) != n {
				t.Fatalf("rise %d fall %d: changed sides (up=%v) at %d after %q", rise, fall, h.up, i, results[max(0, i+1-n):i+1])
			}
			wasUp = h.up
		}
		if stateChanges > 1 {
			t.Fatalf("rise %d fall %d: state changed %d times without a ring change", rise, fall, stateChanges)
		}
	}
}
