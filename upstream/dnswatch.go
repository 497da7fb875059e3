package upstream

import (
	"context"
	"sync"
	"time"
)

// watcher is a running goroutine that looks one DNS name up again and
// again.
type watcher struct {
	gen      uint64 // dnsEntry.watch when it started
	interval time.Duration
	resolver string
	cancel   context.CancelFunc
}

// syncWatchers starts a watcher for every DNS name that has none, and
// stops the watchers of names gone from the config. A name whose interval
// or resolver changed gets a new watcher, which looks it up at once and
// then keeps the new pace; what the name resolved to stays with the Set
// meanwhile.
func (s *Set) syncWatchers(ctx context.Context, wg *sync.WaitGroup, watchers map[string]watcher) {
	type start struct {
		key string
		w   watcher
	}
	var starts []start
	s.mu.Lock()
	for key, w := range watchers {
		if e := s.dns.entries[key]; e == nil || e.watch != w.gen || e.name.Interval != w.interval || e.name.Resolver != w.resolver {
			w.cancel()
			delete(watchers, key)
		}
	}
	for key, e := range s.dns.entries {
		if _, ok := watchers[key]; ok {
			continue
		}
		s.dns.watches++
		e.watch = s.dns.watches
		starts = append(starts, start{key, watcher{gen: e.watch, interval: e.name.Interval, resolver: e.name.Resolver}})
	}
	client := s.dns.client
	s.mu.Unlock()
	for _, st := range starts {
		wctx, cancel := context.WithCancel(ctx)
		st.w.cancel = cancel
		watchers[st.key] = st.w
		wg.Go(func() { s.watchDNS(wctx, client, st.key, st.w.gen) })
	}
}

// watchDNS looks up the name under key at once and then whenever applyDNS
// says, until ctx ends or another watcher takes over the name.
func (s *Set) watchDNS(ctx context.Context, client dnsClient, key string, gen uint64) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		e := s.dns.entries[key]
		if e == nil || e.watch != gen {
			s.mu.Unlock()
			return
		}
		n := e.name
		s.mu.Unlock()
		a, err := client.lookup(ctx, n)
		if ctx.Err() != nil {
			return
		}
		t.Reset(s.applyDNS(key, gen, a, err))
	}
}
