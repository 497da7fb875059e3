package upstream

import (
	"errors"
	"net/http"
	"strconv"
)

// ErrRunning is returned by Run when the Set is already running.
var ErrRunning = errors.New("upstream: set is already running")

// ErrPlaintextGossip is returned by New and NewAgent for a gossip bind
// address reachable beyond this host with no key and AllowPlaintext unset.
// Callers add how their users set the key or the opt-out.
var ErrPlaintextGossip = errors.New("reachable beyond this host without a key, so anyone who reaches it " +
	"could join and put backends in the ring; create a key with `head -c 32 /dev/urandom | base64 > gossip.key` " +
	"and give every node the same, or allow plaintext gossip on purpose")

// CheckError is a failed health check.
type CheckError struct {
	Type string // CheckHTTP, CheckWebSocket or CheckTCP
	Addr string // the backend checked
	Err  error  // what went wrong: a network error, a *StatusError, ...
}

func (e *CheckError) Error() string {
	return e.Type + " check " + e.Addr + ": " + e.Err.Error()
}

func (e *CheckError) Unwrap() error { return e.Err }

// StatusError is an HTTP status a check did not accept: anything but 2xx
// for http, anything but 101 for websocket.
type StatusError struct {
	Code int
}

func (e *StatusError) Error() string {
	return "status " + strconv.Itoa(e.Code) + " " + http.StatusText(e.Code)
}
