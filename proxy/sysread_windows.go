package proxy

import "syscall"

// rawReads: Windows sockets are not non-blocking, so a burst reader reads
// through the connection, holding its buffer while it waits.
const rawReads = false

// sysRead is not used on Windows.
func sysRead(uintptr, []byte) (int, error) { return 0, syscall.EWINDOWS }
