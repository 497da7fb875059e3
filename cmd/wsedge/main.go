// Command wsedge is an edge reverse proxy for WebSocket applications.
package main

import (
	"errors"
	"fmt"
	"os"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, errQuiet) {
			fmt.Fprintln(os.Stderr, "wsedge:", err)
		}
		os.Exit(1)
	}
}
