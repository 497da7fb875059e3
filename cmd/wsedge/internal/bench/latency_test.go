package bench

import (
	"sync"
	"testing"
	"time"
)

func TestRecorderPercentiles(t *testing.T) {
	r := newRecorder()
	var wg sync.WaitGroup
	// 1..10000 µs, recorded from 8 goroutines into different shards.
	for w := range 8 {
		wg.Go(func() {
			for v := w + 1; v <= 10000; v += 8 {
				r.record(w, time.Duration(v)*time.Microsecond)
			}
		})
	}
	wg.Wait()
	got := r.latency()
	tests := []struct {
		name string
		give time.Duration
		want time.Duration
	}{
		{"p50", got.P50, 5000 * time.Microsecond},
		{"p90", got.P90, 9000 * time.Microsecond},
		{"p99", got.P99, 9900 * time.Microsecond},
		{"p99.9", got.P999, 9990 * time.Microsecond},
		{"max", got.Max, 10000 * time.Microsecond},
	}
	for _, tt := range tests {
		// Three significant digits: within 0.1%, plus a bucket's width.
		if diff := tt.give - tt.want; diff < -tt.want/500 || diff > tt.want/500 {
			t.Errorf("%s = %v, want %v", tt.name, tt.give, tt.want)
		}
	}
	if got.Count != 10000 {
		t.Errorf("Count = %d, want 10000", got.Count)
	}
}

func TestRecorderClampsOutliers(t *testing.T) {
	r := newRecorder()
	r.record(0, 0)
	r.record(1, 2*time.Hour)
	got := r.latency()
	if got.Count != 2 {
		t.Errorf("Count = %d, want 2: outliers are clamped, not dropped", got.Count)
	}
	if got.Max < 59*time.Second {
		t.Errorf("Max = %v, want the 60s ceiling", got.Max)
	}
}

func TestEmptyRecorder(t *testing.T) {
	if got := newRecorder().latency(); got != (Latency{}) {
		t.Errorf("latency of nothing = %+v, want zero", got)
	}
}
