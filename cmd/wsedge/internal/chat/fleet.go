package chat

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Fleet is several servers of one room in one process, as `wsedge demo`
// runs them, any of which can be killed and revived on its address. The
// zero value is an empty fleet; Start fills it. It is safe for concurrent
// use.
type Fleet struct {
	mu      sync.Mutex // guards members
	members []*fleetMember
}

type fleetMember struct {
	cfg    Config  // as started the first time, on the address it got
	srv    *Server // nil while killed
	killed time.Time
}

// Start starts one server per config, in order; on failure it stops those
// already started.
func (f *Fleet) Start(cfgs []Config) error {
	for _, cfg := range cfgs {
		s, err := Start(cfg)
		if err != nil {
			f.Close()
			return err
		}
		cfg.Addr = s.Addr() // a revived server comes back where it was
		f.mu.Lock()
		f.members = append(f.members, &fleetMember{cfg: cfg, srv: s})
		f.mu.Unlock()
	}
	return nil
}

// Servers returns the running servers.
func (f *Fleet) Servers() []*Server {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*Server
	for _, m := range f.members {
		if m.srv != nil {
			out = append(out, m.srv)
		}
	}
	return out
}

// Kill kills the named server (see Server.Kill).
func (f *Fleet) Kill(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, err := f.find(name)
	if err != nil {
		return err
	}
	if m.srv == nil {
		return fmt.Errorf("%s is not running", name)
	}
	m.srv.Kill()
	m.srv, m.killed = nil, time.Now()
	return nil
}

// Revive starts the named server again on its address, as a restarted
// process: no clients, no history.
func (f *Fleet) Revive(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, err := f.find(name)
	if err != nil {
		return err
	}
	if m.srv != nil {
		return fmt.Errorf("%s is running", name)
	}
	s, err := Start(m.cfg)
	if err != nil {
		return err
	}
	m.srv = s
	return nil
}

func (f *Fleet) find(name string) (*fleetMember, error) {
	i := slices.IndexFunc(f.members, func(m *fleetMember) bool { return m.cfg.Name == name })
	if i < 0 {
		return nil, fmt.Errorf("no server %q", name)
	}
	return f.members[i], nil
}

// Close stops every server politely (1001 to their clients).
func (f *Fleet) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.members {
		if m.srv != nil {
			m.srv.Close(2 * time.Second)
			m.srv = nil
		}
	}
}

// BackendStatus is one server as the demo page lists it.
type BackendStatus struct {
	Name    string `json:"name"`
	Addr    string `json:"addr"`
	Running bool   `json:"running"`
	Broker  string `json:"broker"`
	Stats
}

// Status lists the servers in the order they were started.
func (f *Fleet) Status() []BackendStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]BackendStatus, 0, len(f.members))
	for _, m := range f.members {
		st := BackendStatus{Name: m.cfg.Name, Addr: m.cfg.Addr, Running: m.srv != nil, Broker: m.cfg.Broker.String()}
		if m.srv != nil {
			st.Stats = m.srv.Stats()
		}
		out = append(out, st)
	}
	return out
}

// ServeHTTP serves the fleet's controls: GET /demo/backends lists the
// servers; POST /demo/kill?backend=NAME and POST /demo/revive?backend=NAME
// kill and revive one. Cross-site requests are refused, so that a page of
// another site cannot kill a backend through a visitor's browser.
func (f *Fleet) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("backend")
	switch r.URL.Path {
	case "/demo/backends":
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(f.Status())
		return
	case "/demo/kill":
	case "/demo/revive":
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		http.Error(w, "cross-site request refused", http.StatusForbidden)
		return
	}
	if r.URL.Path == "/demo/kill" {
		// The request may have come through the server to be killed:
		// answer before it dies with the connection.
		if err := f.check(name); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		_ = http.NewResponseController(w).Flush()
		_ = f.Kill(name) // losing a race with another kill ends the same way
		return
	}
	if err := f.Revive(name); err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// check says whether the named server exists and runs.
func (f *Fleet) check(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, err := f.find(name)
	if err != nil {
		return err
	}
	if m.srv == nil {
		return fmt.Errorf("%s is not running", name)
	}
	return nil
}
