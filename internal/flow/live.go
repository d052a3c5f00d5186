package flow

import (
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Flows are searchable within a flush period (1 s) of the agent's report,
// not only once their dedup window has closed: every flush publishes the
// flows still pending in the pipeline, and those emitted but not yet
// stored, as provisional records (with the IDs they will be stored
// under). A provisional record is rebuilt when more observation points or
// related flows join it, and replaced by the stored flow once its window
// closes. Followers (Follow) receive each flow when it first appears.

// live is the published set of provisional flows.
type live struct {
	flows []Flow
	byID  map[string]int
	// pending: flows[:pending] are the pipeline's (never stored); the rest
	// were emitted and are being (or failed to be) stored, or are updates
	// of stored flows.
	pending int
}

// liveState is the Service's provisional set and its followers.
type liveState struct {
	cur atomic.Pointer[live]

	mu        sync.Mutex
	announced map[string]bool // IDs sent to followers, still provisional
	followers map[*Follower]struct{}
	// latency: from the arrival of a flow's first observation (the
	// agent's report) to its publication, the last latencyKeep flows.
	latency []time.Duration
	next    int
}

const latencyKeep = 10000

// noteLatency records a report → searchable latency. Caller holds mu.
func (l *liveState) noteLatency(d time.Duration) {
	if len(l.latency) < latencyKeep {
		l.latency = append(l.latency, d)
		return
	}
	l.latency[l.next] = d
	l.next = (l.next + 1) % latencyKeep
}

// ResetSearchableLatency forgets the latencies recorded so far.
func (s *Service) ResetSearchableLatency() {
	s.live.mu.Lock()
	defer s.live.mu.Unlock()
	s.live.latency, s.live.next = nil, 0
}

// SearchableLatency returns the 50th and 99th percentiles of the time
// from an agent's report of a flow to the flow being searchable, over the
// last 10,000 flows (zeros before any).
func (s *Service) SearchableLatency() (p50, p99 time.Duration) {
	s.live.mu.Lock()
	d := slices.Clone(s.live.latency)
	s.live.mu.Unlock()
	if len(d) == 0 {
		return 0, 0
	}
	slices.Sort(d)
	return d[len(d)/2], d[int(0.99*float64(len(d)-1))]
}

// Follower receives flows as they appear (see Service.Follow).
type Follower struct {
	q       Query
	C       chan Flow
	dropped atomic.Uint64
}

// Dropped is the number of flows not delivered because C was full.
func (f *Follower) Dropped() uint64 { return f.dropped.Load() }

// publish replaces the provisional set with the pipeline's pending flows
// and unstored, and hands new ones to the followers. Caller holds s.mu.
func (s *Service) publish(unstored []Emitted) {
	flows, created := s.pipe.provisional()
	pending := len(flows)
	for _, e := range unstored {
		flows = append(flows, e.Flows...)
		flows = append(flows, e.Updates...)
	}
	l := &live{flows: flows, byID: make(map[string]int, len(flows)), pending: pending}
	for i := range flows {
		l.byID[flows[i].ID] = i
	}
	s.live.cur.Store(l)

	s.live.mu.Lock()
	defer s.live.mu.Unlock()
	if s.live.announced == nil {
		s.live.announced = map[string]bool{}
	}
	for id := range s.live.announced {
		if _, ok := l.byID[id]; !ok {
			delete(s.live.announced, id)
		}
	}
	var fresh []int
	now := s.opts.Now()
	for i := range flows {
		if !s.live.announced[flows[i].ID] {
			s.live.announced[flows[i].ID] = true
			fresh = append(fresh, i)
			if i < len(created) {
				s.live.noteLatency(now.Sub(created[i]))
			}
		}
	}
	if len(fresh) == 0 || len(s.live.followers) == 0 {
		return
	}
	sort.Slice(fresh, func(a, b int) bool { return flows[fresh[a]].Start.Before(flows[fresh[b]].Start) })
	for f := range s.live.followers {
		for _, i := range fresh {
			if f.q.Filter != nil && !f.q.Filter.Match(&flows[i]) {
				continue
			}
			select {
			case f.C <- flows[i]:
			default:
				f.dropped.Add(1)
			}
		}
	}
}

// Follow subscribes to the flows matching filter as they appear, until
// Unfollow. A follower that does not keep up loses flows (counted by
// Dropped), it never slows ingest.
func (s *Service) Follow(filter string) (*Follower, error) {
	q, err := NewQuery(filter, 0, 0, 0)
	if err != nil {
		return nil, err
	}
	f := &Follower{q: q, C: make(chan Flow, 4096)}
	s.live.mu.Lock()
	defer s.live.mu.Unlock()
	if s.live.followers == nil {
		s.live.followers = map[*Follower]struct{}{}
	}
	s.live.followers[f] = struct{}{}
	return f, nil
}

// Unfollow ends a subscription.
func (s *Service) Unfollow(f *Follower) {
	s.live.mu.Lock()
	defer s.live.mu.Unlock()
	delete(s.live.followers, f)
}

// provisional returns the provisional flows of q, newest first.
func (s *Service) provisional(q *Query) []Flow {
	l := s.live.cur.Load()
	if l == nil {
		return nil
	}
	var out []Flow
	for i := range l.flows {
		f := &l.flows[i]
		if f.Start.UnixNano() > q.To || f.End.UnixNano() < q.From {
			continue
		}
		if q.Filter != nil && !q.Filter.Match(f) {
			continue
		}
		out = append(out, *f)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.After(out[j].Start) })
	return out
}

// mergeLive merges the provisional flows of q into stored (both newest
// first): a flow both stored and provisional (stored a moment ago, or
// updated with a late link) is taken from the provisional set, the newer.
func (s *Service) mergeLive(q *Query, stored []Flow) []Flow {
	prov := s.provisional(q)
	if len(prov) == 0 {
		return stored
	}
	have := make(map[string]bool, len(prov))
	for i := range prov {
		have[prov[i].ID] = true
	}
	out := make([]Flow, 0, min(len(stored)+len(prov), max(q.Limit, 1)))
	i, j := 0, 0
	for len(out) < q.Limit && (i < len(stored) || j < len(prov)) {
		if i < len(stored) && have[stored[i].ID] {
			i++
			continue
		}
		if j >= len(prov) || i < len(stored) && !stored[i].Start.Before(prov[j].Start) {
			out = append(out, stored[i])
			i++
		} else {
			out = append(out, prov[j])
			j++
		}
	}
	return out
}

// liveGet returns a provisional flow by ID.
func (s *Service) liveGet(id string) (Flow, bool) {
	l := s.live.cur.Load()
	if l == nil {
		return Flow{}, false
	}
	i, ok := l.byID[id]
	if !ok {
		return Flow{}, false
	}
	return l.flows[i], true
}
