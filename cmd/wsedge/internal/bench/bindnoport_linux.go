//go:build linux

package bench

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// bindNoPort sets IP_BIND_ADDRESS_NO_PORT so that binding a source address
// does not reserve an ephemeral port until connect, when the kernel can
// reuse one port towards different destinations: otherwise every bound
// socket holds a port of its source address for all destinations and a
// few tens of thousands of connections exhaust it.
func bindNoPort(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	})
	return errors.Join(err, serr)
}
