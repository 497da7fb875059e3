package proxy

import "sync"

// registry knows every live session, by backend, because the HTTP server
// stops tracking a connection once it is hijacked: shutdown, rebalancing
// and the admin endpoints all start here. It is safe for concurrent use.
type registry struct {
	mu        sync.Mutex // guards byBackend
	byBackend map[string]map[liveConn]struct{}
	live      sync.WaitGroup // one count per live session
}

func newRegistry() *registry {
	return &registry{byBackend: make(map[string]map[liveConn]struct{})}
}

func (r *registry) add(c liveConn) {
	r.live.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	backend := c.relay().rt.backend
	set := r.byBackend[backend]
	if set == nil {
		set = make(map[liveConn]struct{})
		r.byBackend[backend] = set
	}
	set[c] = struct{}{}
}

func (r *registry) remove(c liveConn) {
	backend := c.relay().rt.backend
	r.mu.Lock()
	set := r.byBackend[backend]
	delete(set, c)
	if len(set) == 0 {
		delete(r.byBackend, backend)
	}
	r.mu.Unlock()
	r.live.Done()
}

// sessions returns the live sessions of backend, or of every backend when
// backend is empty.
func (r *registry) sessions(backend string) []liveConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []liveConn
	for b, set := range r.byBackend {
		if backend != "" && b != backend {
			continue
		}
		for s := range set {
			out = append(out, s)
		}
	}
	return out
}

// counts returns the number of live sessions per backend.
func (r *registry) counts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.byBackend))
	for b, set := range r.byBackend {
		out[b] = len(set)
	}
	return out
}

// wait blocks until every session has ended.
func (r *registry) wait() { r.live.Wait() }
