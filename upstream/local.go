package upstream

import (
	"errors"
	"syscall"
)

// LocalFailure says whether err is the proxy's own trouble rather than a
// backend's: out of descriptors, local ports, kernel buffers or memory,
// and names which ("descriptors", "ports", "buffers", "memory"); "" for
// any other error. Such a failure says nothing about the backend, so it
// never counts against its health, active or passive: a proxy under a
// burst of clients would otherwise empty its own ring.
func LocalFailure(err error) string {
	switch {
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "descriptors"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "ports"
	case errors.Is(err, syscall.ENOBUFS):
		return "buffers"
	case errors.Is(err, syscall.ENOMEM):
		return "memory"
	}
	return ""
}
