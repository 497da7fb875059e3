// Package http1 reads HTTP/1.1 message heads in place and follows the
// framing of a client's stream of requests, by one strict set of rules.
//
// An edge proxy is where request smuggling happens: two parsers that
// disagree about where a header line or a message ends let a client say
// one thing to the proxy and another to the backend. Every request head
// wsedge acts on, on the event loops and on the net/http path alike, is
// read here first, and refused unless it is well formed by RFC 9112 and
// at least as strict as Go's net/http server: a bare CR or LF, a NUL or
// other control byte in a field, obs-fold, white space before a colon, a
// name that is not a token, a malformed request line, several Host
// headers, a Content-Length that is not one number, and Content-Length
// together with Transfer-Encoding are all refused. Where these rules go
// beyond what Go's server refuses, the Error says so (BeyondGo), and the
// package's differential fuzz test holds the rest against net/http.
//
// The package does no I/O: bytes in, a decision out. It allocates nothing
// for a head of up to 64 fields.
package http1
