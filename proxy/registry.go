package proxy

import "sync"

// registry knows every live connection, by backend, because the HTTP server
// stops tracking a connection once it is hijacked: shutdown, rebalancing
// and the admin endpoints all start here. It is safe for concurrent use.
type registry struct {
	mu        sync.Mutex            // guards byBackend and each relayConn's regIdx
	byBackend map[string][]liveConn // each connection at its relayConn's regIdx
	live      sync.WaitGroup        // one count per live connection
}

func newRegistry() *registry {
	return &registry{byBackend: make(map[string][]liveConn)}
}

func (r *registry) add(c liveConn) {
	r.live.Add(1)
	rc := c.relay()
	r.mu.Lock()
	defer r.mu.Unlock()
	list := r.byBackend[rc.backend]
	rc.regIdx = int32(len(list))
	r.byBackend[rc.backend] = append(list, c)
}

func (r *registry) remove(c liveConn) {
	rc := c.relay()
	r.mu.Lock()
	list := r.byBackend[rc.backend]
	last := len(list) - 1
	moved := list[last]
	list[rc.regIdx] = moved
	moved.relay().regIdx = rc.regIdx
	list[last] = nil
	if last == 0 {
		delete(r.byBackend, rc.backend)
	} else {
		r.byBackend[rc.backend] = list[:last]
	}
	r.mu.Unlock()
	r.live.Done()
}

// sessions returns the live connections of backend, or of every backend
// when backend is empty.
func (r *registry) sessions(backend string) []liveConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	if backend != "" {
		return append([]liveConn(nil), r.byBackend[backend]...)
	}
	var out []liveConn
	for _, list := range r.byBackend {
		out = append(out, list...)
	}
	return out
}

// counts returns the number of live connections per backend.
func (r *registry) counts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.byBackend))
	for b, list := range r.byBackend {
		out[b] = len(list)
	}
	return out
}

// wait blocks until every connection has ended.
func (r *registry) wait() { r.live.Wait() }
