package affinity

import (
	"github.com/cespare/xxhash/v2"
)

// A route token is tokenVersion followed by 16 lowercase hex digits of
// xxhash(tokenDomain + addr). The version lets a later format coexist with
// this one in cookies already handed out; the domain keeps token hashes
// apart from key hashes, so a token is never the hash of any routing key.
const (
	tokenVersion = '1'
	tokenDomain  = "wsedge-route\x00"
	tokenLen     = 1 + 16
)

// Token returns the route-cookie token naming the backend at addr. It is
// opaque (the address is not in clear), 17 bytes of [0-9a-f] that are safe
// in a cookie value without quoting, and the same in every process and
// every version of the binary, so any proxy of a cluster honours a cookie
// set by another. It is not a secret: anyone who knows a backend's address
// can compute its token, which only lets them pick a backend that is in
// the ring anyway.
func Token(addr string) string {
	var buf [tokenLen]byte
	buf[0] = tokenVersion
	h := tokenHash(addr)
	const hexDigits = "0123456789abcdef"
	for i := tokenLen - 1; i > 0; i-- {
		buf[i] = hexDigits[h&0xf]
		h >>= 4
	}
	return string(buf[:])
}

// tokenHash is the hash a token carries for addr.
func tokenHash(addr string) uint64 {
	d := xxhash.New()
	_, _ = d.WriteString(tokenDomain) // a Digest never fails to write
	_, _ = d.WriteString(addr)
	return d.Sum64()
}

// ByToken returns the index of the member a route token names. It returns
// false for anything that is not a token Token produced for a current
// member: empty, wrong length or version, upper-case or non-hex digits, or
// a backend that has left the ring. It never panics and allocates nothing,
// because it runs on every request carrying the cookie, forged or not.
func (r *Ring) ByToken(tok string) (int, bool) {
	if r == nil || len(tok) != tokenLen || tok[0] != tokenVersion {
		return -1, false
	}
	var h uint64
	for i := 1; i < tokenLen; i++ {
		c := tok[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		default:
			// Upper case is refused too: one canonical spelling per
			// backend keeps cookies comparable byte for byte.
			return -1, false
		}
		h = h<<4 | uint64(d)
	}
	lo, hi := 0, len(r.tokens)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if r.tokens[mid].hash < h {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == len(r.tokens) || r.tokens[lo].hash != h {
		return -1, false
	}
	return int(r.tokens[lo].member), true
}
