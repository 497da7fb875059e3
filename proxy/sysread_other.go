//go:build !linux && !windows

package proxy

import "syscall"

// rawReads: a socket's readiness can be waited for without a buffer
// (syscall.RawConn.Read), then read with sysRead.
const rawReads = true

// sysRead reads from a non-blocking socket.
func sysRead(fd uintptr, p []byte) (int, error) { return syscall.Read(int(fd), p) }
