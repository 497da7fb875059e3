//go:build !unix

package main

import "os"

// upgradeSignals: there is no SIGUSR2 here, and no upgrade to ask for.
func upgradeSignals() []os.Signal { return nil }
