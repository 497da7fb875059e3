package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// errHandoffEncoding is wrapped by every reason a hand-over message is
// refused as malformed.
var errHandoffEncoding = errors.New("malformed hand-over message")

// wireWriter appends the fixed-width, big-endian fields of a hand-over
// message. Every value has one encoding, so that a decoder can hold what
// it accepts to being written back byte for byte.
type wireWriter struct{ b []byte }

func (w *wireWriter) u8(v uint8)   { w.b = append(w.b, v) }
func (w *wireWriter) u16(v uint16) { w.b = binary.BigEndian.AppendUint16(w.b, v) }
func (w *wireWriter) u32(v uint32) { w.b = binary.BigEndian.AppendUint32(w.b, v) }
func (w *wireWriter) u64(v uint64) { w.b = binary.BigEndian.AppendUint64(w.b, v) }
func (w *wireWriter) i64(v int64)  { w.u64(uint64(v)) }
func (w *wireWriter) f64(v float64) {
	w.u64(math.Float64bits(v))
}

func (w *wireWriter) boolean(v bool) {
	if v {
		w.u8(1)
	} else {
		w.u8(0)
	}
}

// str writes a string of at most 65535 bytes; longer ones are cut, which
// the callers' limits never let happen.
func (w *wireWriter) str(s string) {
	s = s[:min(len(s), math.MaxUint16)]
	w.u16(uint16(len(s)))
	w.b = append(w.b, s...)
}

// blob8 writes up to 255 bytes, blob32 any number.
func (w *wireWriter) blob8(p []byte) {
	w.u8(uint8(len(p)))
	w.b = append(w.b, p...)
}

func (w *wireWriter) blob32(p []byte) {
	w.u32(uint32(len(p)))
	w.b = append(w.b, p...)
}

// wireReader reads what a wireWriter wrote. The first problem sticks: the
// reads after it return zero values, and err says what it was.
type wireReader struct {
	b   []byte
	err error
}

func (r *wireReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: "+format, append([]any{errHandoffEncoding}, args...)...)
	}
}

func (r *wireReader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.fail("cut short")
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

func (r *wireReader) u8() uint8 {
	if p := r.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (r *wireReader) u16() uint16 {
	if p := r.take(2); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (r *wireReader) u32() uint32 {
	if p := r.take(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (r *wireReader) u64() uint64 {
	if p := r.take(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

func (r *wireReader) i64() int64 { return int64(r.u64()) }

// f64 reads a finite number.
func (r *wireReader) f64() float64 {
	v := math.Float64frombits(r.u64())
	if math.IsNaN(v) || math.IsInf(v, 0) {
		r.fail("number %v", v)
		return 0
	}
	return v
}

// nonNegative reads an int64 that may not be below zero: a time, a size,
// a duration.
func (r *wireReader) nonNegative(what string) int64 {
	v := r.i64()
	if v < 0 {
		r.fail("negative %s", what)
		return 0
	}
	return v
}

func (r *wireReader) boolean() bool {
	switch v := r.u8(); v {
	case 0:
		return false
	case 1:
		return true
	default:
		r.fail("boolean %d", v)
		return false
	}
}

// str reads a string of at most limit bytes.
func (r *wireReader) str(limit int, what string) string {
	n := int(r.u16())
	if n > limit {
		r.fail("%s of %d bytes", what, n)
		return ""
	}
	return string(r.take(n))
}

func (r *wireReader) blob8() []byte { return r.take(int(r.u8())) }

// blob32 reads at most limit bytes; none is nil.
func (r *wireReader) blob32(limit int, what string) []byte {
	n := r.u32()
	if uint64(n) > uint64(limit) {
		r.fail("%s of %d bytes", what, n)
		return nil
	}
	if n == 0 {
		return nil
	}
	return r.take(int(n))
}

// end reports an error unless everything was read.
func (r *wireReader) end() error {
	if r.err == nil && len(r.b) > 0 {
		r.fail("%d bytes too many", len(r.b))
	}
	return r.err
}
