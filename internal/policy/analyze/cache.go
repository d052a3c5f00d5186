package analyze

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/palisade-dev/palisade/internal/inventory"
)

// LiveResolver is a Resolver for recent flows (live analysis): it keeps,
// per address, the workload version holding it now, and answers from it
// for any flow that started at or after that version began. Any change
// of the inventory (Invalidate, wired to inventory.Subscribe) drops the
// cache, so an answer is always the version in force at the flow's time;
// flows from before the cached version fall through to the inventory.
type LiveResolver struct {
	R   Resolver
	Now func() time.Time // default time.Now

	gen   atomic.Uint64
	mu    sync.Mutex
	cache map[string]liveEntry
	at    uint64 // generation the cache holds
}

type liveEntry struct {
	w *inventory.Workload
}

// maxLive bounds the cache.
const maxLive = 1 << 18

// Invalidate drops every cached answer (call it on every inventory change).
func (l *LiveResolver) Invalidate() { l.gen.Add(1) }

// WorkloadAt implements Resolver.
func (l *LiveResolver) WorkloadAt(ip string, t time.Time) (*inventory.Workload, bool) {
	g := l.gen.Load()
	l.mu.Lock()
	if l.cache == nil || l.at != g || len(l.cache) >= maxLive {
		l.cache, l.at = map[string]liveEntry{}, g
	}
	e, ok := l.cache[ip]
	l.mu.Unlock()
	if !ok {
		now := time.Now
		if l.Now != nil {
			now = l.Now
		}
		w, held := l.R.WorkloadAt(ip, now())
		if held && l.gen.Load() == g {
			e = liveEntry{w: w}
			if w.Kind == inventory.KindNode && !slices.Contains(w.IPs, ip) {
				// A node's bridge address (inventory.BridgeAddrs): the
				// node holds it only where no workload does, so holding
				// it now says nothing of the time before; the inventory
				// answers every time.
				e.w = nil
			}
			l.mu.Lock()
			if l.at == g {
				l.cache[ip] = e
			}
			l.mu.Unlock()
			ok = true
		}
	}
	// The current version is the version at t when t is not before it
	// began (and it holds the address now, so it has held it since).
	if ok && e.w != nil && !t.Before(e.w.Updated) && e.w.Alive(t) {
		return e.w, true
	}
	return l.R.WorkloadAt(ip, t)
}

// ServiceFor implements Resolver.
func (l *LiveResolver) ServiceFor(ip string, port uint16, proto string, t time.Time) (*inventory.Workload, bool) {
	return l.R.ServiceFor(ip, port, proto, t)
}
