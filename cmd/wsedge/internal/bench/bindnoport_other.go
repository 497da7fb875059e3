//go:build !linux

package bench

import "syscall"

// bindNoPort does nothing where IP_BIND_ADDRESS_NO_PORT does not exist:
// each bound source address then holds its own ephemeral port.
func bindNoPort(network, address string, c syscall.RawConn) error { return nil }
