package store

import (
	"sort"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
)

// matcher evaluates a query over the store. A filter that only refers to
// endpoint/pair fields is evaluated once per distinct pair (store-wide
// dictionary), one that only refers to attribute fields once per attribute
// combination, one referring to both once per (pair, attribute) seen; only
// filters on per-flow fields (source port, counters, times, IDs) are
// evaluated per flow.
type matcher struct {
	q       *flow.Query
	v       *view
	scratch flow.Flow
	byPair  []int8 // 0 unknown, 1 match, 2 no match
	byAttr  []int8
	byBoth  map[uint64]bool
}

func newMatcher(q *flow.Query) *matcher { return &matcher{q: q} }

// at points the matcher at a segment: its columns, then the dictionaries
// (taken after the columns, so they cover every entry the columns use).
func (m *matcher) at(s *Store, seg *segment) *view {
	c, _, _ := seg.snapshot()
	v := s.dict.view()
	v.c = c
	m.v = v
	return v
}

func (m *matcher) match(i int) bool {
	q := m.q
	if q.Filter == nil {
		return true
	}
	c := &m.v.c
	pair, attr, rec := q.Has(flow.ClassPair), q.Has(flow.ClassAttr), q.Has(flow.ClassRecord)
	switch {
	case rec || !pair && !attr:
		m.v.fill(&m.scratch, i)
		return q.Match(&m.scratch)
	case pair && !attr:
		return m.memo(&m.byPair, c.pair[i], func() { m.v.fillPair(&m.scratch, c.pair[i]) })
	case attr && !pair:
		return m.memo(&m.byAttr, c.attr[i], func() { m.v.fillAttr(&m.scratch, c.attr[i]) })
	}
	k := uint64(c.pair[i])<<32 | uint64(c.attr[i])
	if r, ok := m.byBoth[k]; ok {
		return r
	}
	if m.byBoth == nil {
		m.byBoth = map[uint64]bool{}
	}
	m.v.fillPair(&m.scratch, c.pair[i])
	m.v.fillAttr(&m.scratch, c.attr[i])
	r := q.Match(&m.scratch)
	m.byBoth[k] = r
	return r
}

func (m *matcher) memo(tab *[]int8, id uint32, fill func()) bool {
	if int(id) >= len(*tab) {
		*tab = append(*tab, make([]int8, int(id)+1-len(*tab)+64)...)
	}
	switch (*tab)[id] {
	case 1:
		return true
	case 2:
		return false
	}
	fill()
	r := m.q.Match(&m.scratch)
	(*tab)[id] = 2
	if r {
		(*tab)[id] = 1
	}
	return r
}

type hit struct {
	v     *view
	i     int
	start int64
}

// scan calls fn for each flow of the query's time range that matches,
// segment by segment from the newest; fn returns false to stop after the
// current segment.
func (s *Store) scan(q *flow.Query, fn func(v *view, i int) bool) {
	s.mu.RLock()
	segs := s.sorted(true)
	s.mu.RUnlock()
	m := newMatcher(q)
	for _, seg := range segs {
		_, minStart, maxEnd := seg.snapshot()
		if minStart > q.To || maxEnd < q.From {
			continue
		}
		v := m.at(s, seg)
		c := &v.c
		more := true
		for i, n := 0, c.len(); i < n; i++ {
			if c.start[i] > q.To || c.end[i] < q.From || !m.match(i) {
				continue
			}
			if !fn(v, i) {
				more = false
			}
		}
		if !more {
			return
		}
	}
}

// Search implements flow.Store.
func (s *Store) Search(q flow.Query) ([]flow.Flow, error) {
	var hits []hit
	limit := q.Limit
	if limit <= 0 {
		limit = 1000
	}
	s.scan(&q, func(v *view, i int) bool {
		hits = append(hits, hit{v, i, v.c.start[i]})
		// Segments are partitions by start: once a whole segment gave
		// enough, older ones cannot hold newer flows.
		return len(hits) < limit
	})
	sort.Slice(hits, func(i, j int) bool { return hits[i].start > hits[j].start })
	if len(hits) > limit {
		hits = hits[:limit]
	}
	out := make([]flow.Flow, len(hits))
	for i, h := range hits {
		out[i] = h.v.flowAt(h.i)
	}
	return out, nil
}

// idLookback is how much earlier than its ID's time a flow may start (its
// start moves earlier when observations join after its ID was fixed).
const idLookback = 10 * time.Minute

// Get implements flow.Store.
func (s *Store) Get(id string) (flow.Flow, bool, error) {
	t, n, err := flow.ParseID(id)
	if err != nil {
		return flow.Flow{}, false, err
	}
	ms := t.UnixMilli()
	s.mu.RLock()
	segs := s.sorted(true)
	s.mu.RUnlock()
	for _, seg := range segs {
		c, minStart, _ := seg.snapshot()
		if c.len() == 0 || minStart > t.Add(time.Millisecond).UnixNano() || seg.bucket+s.opts.Partition.Nanoseconds() < t.Add(-idLookback).UnixNano() {
			continue
		}
		for i := range c.idn {
			if c.idn[i] == n && c.idms[i] == ms {
				return newMatcher(nil).at(s, seg).flowAt(i), true, nil
			}
		}
	}
	return flow.Flow{}, false, nil
}

// Top implements flow.Store: counts are summed per pair (and per attribute
// combination when the filter needs it) and mapped to keys at the end.
func (s *Store) Top(q flow.Query, by string, n int) ([]flow.TopEntry, error) {
	type acc struct{ flows, conns, bytes uint64 }
	var per []acc // by pair
	var last *view
	s.scan(&q, func(v *view, i int) bool {
		last = v
		p := int(v.c.pair[i])
		if p >= len(per) {
			per = append(per, make([]acc, len(v.pairs)-len(per))...)
		}
		a := &per[p]
		a.flows++
		a.conns += v.c.conns[i]
		a.bytes += v.c.fwdB[i] + v.c.revB[i]
		return true
	})
	groups := map[string]*flow.TopEntry{}
	var f flow.Flow
	for pid, a := range per {
		if a.flows == 0 {
			continue
		}
		last.fillPair(&f, uint32(pid))
		k := flow.TopKey(&f, by)
		g := groups[k]
		if g == nil {
			g = &flow.TopEntry{Key: k}
			groups[k] = g
		}
		g.Flows += a.flows
		g.Conns += a.conns
		g.Bytes += a.bytes
	}
	out := make([]flow.TopEntry, 0, len(groups))
	for _, g := range groups {
		out = append(out, *g)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Flows != out[j].Flows {
			return out[i].Flows > out[j].Flows
		}
		return out[i].Key < out[j].Key
	})
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out, nil
}
