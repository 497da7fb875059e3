package http1

// tokenChars marks the characters of a token (RFC 9110 section 5.6.2):
// what methods and header names are made of.
var tokenChars = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isToken(b []byte) bool {
	for _, c := range b {
		if !tokenChars[c] {
			return false
		}
	}
	return true
}

// isValueByte reports whether c may appear in a header value (RFC 9110
// section 5.5): visible characters, space, tab and obs-text; no control
// character.
func isValueByte(c byte) bool { return c == '\t' || c >= ' ' && c != 0x7f }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// equalFold reports whether b equals s, ignoring ASCII case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// hasToken reports whether v holds token between separators (space,
// comma, tab) or its ends, case-insensitively: how Go's server reads
// Expect, which this package must not refuse where Go would not.
func hasToken(v []byte, token string) bool {
	for i := 0; i+len(token) <= len(v); i++ {
		if i > 0 && !isSeparator(v[i-1]) {
			continue
		}
		if end := i + len(token); end < len(v) && !isSeparator(v[end]) {
			continue
		}
		if equalFold(v[i:i+len(token)], token) {
			return true
		}
	}
	return false
}

func isSeparator(c byte) bool { return c == ' ' || c == ',' || c == '\t' }
