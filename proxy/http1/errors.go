package http1

// Error is why a message was refused, and how to answer it.
type Error struct {
	Status int    // the HTTP status to answer with: 400, 405, 417, 431, 501 or 505
	Reason string // said in the answer's body and in the log
	// BeyondGo marks a rule Go's net/http server does not apply: it would
	// accept some messages this one refuses. Every other refusal is one Go
	// makes too, which the differential fuzz test holds this package to.
	BeyondGo bool
}

func (e *Error) Error() string { return e.Reason }

// The refusals. Each names the rule of RFC 9112 (or 9110) it applies.
var (
	// ErrBareLF: a line ended by LF alone (RFC 9112 section 2.2 lets a
	// recipient accept it; a proxy that did would read a header line its
	// backend may split in two). Go's server accepts it.
	ErrBareLF = &Error{Status: 400, Reason: "bare LF in the message head", BeyondGo: true}
	// ErrBareCR: a CR not followed by LF (RFC 9112 section 2.2).
	ErrBareCR = &Error{Status: 400, Reason: "bare CR in the message head"}
	// ErrObsFold: a header line continued on the next line (RFC 9112
	// section 5.2); Go's server joins the lines.
	ErrObsFold = &Error{Status: 400, Reason: "obsolete line folding", BeyondGo: true}
	// ErrFieldName: a header name that is empty, holds a character that
	// is not a token character (white space before the colon included),
	// or a line without a colon (RFC 9112 section 5.1).
	ErrFieldName = &Error{Status: 400, Reason: "invalid header name"}
	// ErrFieldValue: a control character (NUL, DEL, ...) in a header value
	// (RFC 9110 section 5.5).
	ErrFieldValue = &Error{Status: 400, Reason: "invalid header value"}
	// ErrRequestLine: not "method SP request-target SP HTTP/d.d" (RFC 9112
	// section 3).
	ErrRequestLine = &Error{Status: 400, Reason: "malformed request line"}
	// ErrTarget: a request target that is not a URI Go's URL parser takes,
	// or holds a control character (RFC 9112 section 3.2).
	ErrTarget = &Error{Status: 400, Reason: "invalid request target"}
	// ErrConnect: a CONNECT request. An edge proxy in front of app servers
	// tunnels nothing; Go's server would pass it to the handler.
	ErrConnect = &Error{Status: 405, Reason: "CONNECT is not served", BeyondGo: true}
	// ErrVersion: a major version other than 1.
	ErrVersion = &Error{Status: 505, Reason: "HTTP version not supported"}
	// ErrPreface: HTTP/2's connection preface in clear text, which Go's
	// server hands to its handler; the proxy speaks HTTP/1 on this port.
	ErrPreface = &Error{Status: 505, Reason: "HTTP/2 is not served here", BeyondGo: true}
	// ErrHost: no Host in an HTTP/1.1 request, several, or a malformed one
	// (RFC 9112 section 3.2).
	ErrHost = &Error{Status: 400, Reason: "missing, repeated or malformed Host header"}
	// ErrContentLength: a Content-Length that is not a number, or several
	// that differ (RFC 9112 section 6.3).
	ErrContentLength = &Error{Status: 400, Reason: "invalid Content-Length"}
	// ErrRepeatedLength: the same Content-Length given more than once,
	// which Go's server takes as one.
	ErrRepeatedLength = &Error{Status: 400, Reason: "repeated Content-Length", BeyondGo: true}
	// ErrLengthAndChunked: Content-Length and Transfer-Encoding together,
	// the shape of a request smuggling attempt (RFC 9112 section 6.1); Go's
	// server lets Transfer-Encoding win and reads on.
	ErrLengthAndChunked = &Error{Status: 400, Reason: "both Content-Length and Transfer-Encoding", BeyondGo: true}
	// ErrTransferEncoding: a transfer coding other than chunked alone
	// (RFC 9112 section 6.1).
	ErrTransferEncoding = &Error{Status: 501, Reason: "unsupported Transfer-Encoding"}
	// ErrEncodingHTTP10: Transfer-Encoding in an HTTP/1.0 request, whose
	// framing is then faulty (RFC 9112 section 6.1); Go's server ignores
	// the header and reads the body as the next request.
	ErrEncodingHTTP10 = &Error{Status: 400, Reason: "Transfer-Encoding in an HTTP/1.0 request", BeyondGo: true}
	// ErrExpect: an expectation other than 100-continue (RFC 9110 section
	// 10.1.1).
	ErrExpect = &Error{Status: 417, Reason: "unsupported expectation"}
	// ErrTooLarge: a head longer than allowed.
	ErrTooLarge = &Error{Status: 431, Reason: "request head too large"}
	// ErrChunk: a chunked body whose framing is broken (RFC 9112 section
	// 7.1). It is found mid-message, so it ends the connection rather than
	// getting an answer.
	ErrChunk = &Error{Status: 400, Reason: "malformed chunked body"}
	// ErrChunkExtension: a control character in a chunk extension, which
	// Go's chunked reader skips unread.
	ErrChunkExtension = &Error{Status: 400, Reason: "invalid chunk extension", BeyondGo: true}
	// ErrStatusLine: a response that does not start "HTTP/1.x DDD".
	ErrStatusLine = &Error{Status: 502, Reason: "malformed status line"}
)
