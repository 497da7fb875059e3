package chat

import "syscall"

// Signals that freeze and thaw a process, for a Redis that hangs.
const (
	sigStop = syscall.SIGSTOP
	sigCont = syscall.SIGCONT
)
