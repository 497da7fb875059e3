package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/wsedge/wsedge/cmd/wsedge/internal/config"
)

// check validates a config file and lists every problem in it.
func check(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check", stderr)
	path := fs.String("config", defaultConfigPath, "config file to validate")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		*path = fs.Arg(0)
	}
	f, err := config.Load(*path)
	if err == nil {
		_, err = proxyConfig(f)
	}
	if err == nil {
		// The certificate files must load too, or serve would refuse to start.
		err = (&certificate{}).load(f.TLS)
	}
	if err == nil && f.AdminTokenFile != "" {
		// So must the admin token, or serve would refuse to start.
		_, err = readAdminToken(f.AdminTokenFile)
	}
	if err != nil {
		var probs config.Problems
		if errors.As(err, &probs) {
			for _, p := range probs {
				fmt.Fprintln(stderr, p.Error())
			}
			fmt.Fprintf(stderr, "%s: %d problem(s)\n", *path, len(probs))
			return errQuiet
		}
		return err
	}
	fmt.Fprintf(stdout, "%s: ok (listen %s, %d static backend(s), %d DNS name(s), affinity by %s)\n",
		f.Path, f.Listen, len(staticBackends(f)), len(dnsNames(f)), f.Affinity.Key)
	return nil
}
