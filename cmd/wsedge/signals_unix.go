//go:build unix

package main

import (
	"os"
	"syscall"
)

// upgradeSignals are the signals that ask the running proxy to upgrade
// its binary, as nginx's users know them.
func upgradeSignals() []os.Signal { return []os.Signal{syscall.SIGUSR2} }
