package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/wsedge/wsedge/affinity"
	"github.com/wsedge/wsedge/proxy"
)

// routeCmd prints which backend a key routes to, and why: from the running
// proxy's admin endpoint when it answers, else from the config's static
// backends.
func routeCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("route", stderr)
	path := fs.String("config", defaultConfigPath, "config file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("route: want exactly one KEY (a client IP, a header value or a route token)")
	}
	key := fs.Arg(0)
	f, _, err := loadConfig(*path)
	if err != nil {
		return err
	}
	source := "the running proxy at " + f.AdminListen
	ex, err := liveRoute(f.AdminListen, f.AdminTokenFile, key)
	if err != nil {
		pc, cerr := proxyConfig(f)
		if cerr != nil {
			return cerr
		}
		var members []affinity.Member
		for _, b := range staticBackends(f) {
			members = append(members, affinity.Member{Addr: b.Addr, Weight: b.Weight})
		}
		source = fmt.Sprintf("the static backends of %s (no running proxy answered: %v)", f.Path, err)
		if n := len(dnsNames(f)); n > 0 {
			source += fmt.Sprintf("; the backends of its %d DNS name(s) are known to a running proxy only", n)
		}
		if ex, err = proxy.Explain(pc, affinity.NewRing(members, f.Ring.VNodes), key); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "%s -> %s\n  %s\n  from %s\n", ex.Key, ex.Backend, ex.Why, source)
	return nil
}

// liveRoute asks a running proxy's admin endpoint, with the admin token
// when the config names one.
func liveRoute(admin, tokenFile, key string) (proxy.Explanation, error) {
	var ex proxy.Explanation
	if admin == "" {
		return ex, errors.New("no admin_listen configured")
	}
	token := ""
	if tokenFile != "" {
		var err error
		if token, err = readAdminToken(tokenFile); err != nil {
			return ex, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	u := "http://" + admin + "/debug/ring?key=" + url.QueryEscape(key)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return ex, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return ex, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(res.Body, 1024))
		return ex, fmt.Errorf("%s: %s", res.Status, body)
	}
	return ex, json.NewDecoder(res.Body).Decode(&ex)
}
