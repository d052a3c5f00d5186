package store

import (
	"cmp"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
)

// matcher evaluates a query over the store, conjunct by conjunct, each
// at its level: a conjunct about the source endpoint is evaluated once per
// distinct source endpoint of the store-wide dictionary, one about the
// pair once per pair, one about attributes once per attribute
// combination; the answers are kept in tables, so scanning a flow costs a
// few table lookups. Only conjuncts on per-flow fields (source port,
// counters, times, IDs) are evaluated per flow.
type matcher struct {
	q       *flow.Query
	v       *view
	scratch flow.Flow
	conj    []conjMemo
	// Conjuncts by how they are checked: pair-level ones (all, src, dst,
	// pair) combine into one answer per pair, attribute ones into one per
	// attribute combination; the rest are checked per flow.
	pairConj, attrConj, restConj []int
	pairTab, attrTab             []int8 // 0 unknown, 1 match, 2 no match
	// mask: the columns the conjuncts read for every flow.
	mask colMask
	// adopted: the tables hold the prefilter's answers (adopt).
	adopted bool
	// The per-flow conjuncts by how they are checked: numeric ones and
	// source port ones over their columns alone, a column at a time (see
	// scanChunk), the others row by row.
	numConj, sportConj, rowConj []int
	// sel: the rows of the chunk being scanned still matching.
	sel []int32
	// Top's scratch space.
	g0, g1, g2, g3 []uint64
}

type conjMemo struct {
	c       flow.Conjunct
	needIDs bool // refers to id or related.id: per-flow fill must build them
	need    fillNeed
	tab     []int8 // by ID at the conjunct's level: 0 unknown, 1 match, 2 no match
	both    map[uint64]bool
	counter int // Numeric: which counter (see counter)
	num     numTest
}

func newMatcher(q *flow.Query) *matcher {
	m := &matcher{q: q}
	if q == nil {
		return m
	}
	for k, c := range q.Conjuncts {
		need := slices.Contains(c.Filter.Fields(), "id") || slices.Contains(c.Filter.Fields(), "related.id")
		cm := conjMemo{c: c, needIDs: need, need: needOf(c.Filter.Fields())}
		if c.Numeric != nil {
			cm.counter = slices.Index(counterFields, c.Numeric.Field)
			cm.num = newNumTest(c.Numeric)
		}
		m.conj = append(m.conj, cm)
		switch c.Level {
		case flow.LevelAll, flow.LevelSrc, flow.LevelDst, flow.LevelPair:
			m.pairConj = append(m.pairConj, k)
			m.mask |= 1 << colPair
		case flow.LevelAttr:
			m.attrConj = append(m.attrConj, k)
			m.mask |= 1 << colAttr
		default:
			m.restConj = append(m.restConj, k)
			switch {
			case c.Level == flow.LevelSrcPort:
				m.mask |= 1 << colSport
				m.sportConj = append(m.sportConj, k)
			case c.Level == flow.LevelPairAttr:
				m.mask |= 1<<colPair | 1<<colAttr
				m.rowConj = append(m.rowConj, k)
			case c.Numeric != nil:
				m.mask |= counterMask(cm.counter)
				m.numConj = append(m.numConj, k)
			default:
				m.mask = maskAll
				m.rowConj = append(m.rowConj, k)
			}
		}
	}
	return m
}

// at points the matcher at a segment: its columns (of a cold segment's
// column file, those of mask checked), then the dictionaries (taken after
// the columns, so they cover every entry the columns use).
func (m *matcher) at(s *Store, seg *segment, mask colMask) *view {
	cs, dead, cf := s.columnsOf(seg, mask)
	v := s.dict.view()
	v.cs, v.dead, v.cf = cs, dead, cf
	m.v = v
	if len(m.pairConj) > 0 && len(m.pairTab) < len(v.pairs) {
		m.pairTab = append(m.pairTab, make([]int8, len(v.pairs)-len(m.pairTab))...)
	}
	if len(m.attrConj) > 0 && len(m.attrTab) < len(v.attrs) {
		m.attrTab = append(m.attrTab, make([]int8, len(v.attrs)-len(m.attrTab))...)
	}
	return v
}

// adopt fills the pair and attribute tables from what the query's
// prefilter evaluated for every dictionary entry (once per matcher), so
// no worker evaluates the filter again for an entry.
func (m *matcher) adopt(p *prefilter) {
	if m.adopted || !p.built.Load() {
		return
	}
	m.adopted = true
	fill := func(tab []int8, n int, match bitset) []int8 {
		if len(tab) < n {
			tab = append(tab, make([]int8, n-len(tab))...)
		}
		for id := range n {
			if tab[id] == 0 {
				tab[id] = 2
				if match.has(uint32(id)) {
					tab[id] = 1
				}
			}
		}
		return tab
	}
	if p.usePairs && len(m.pairConj) > 0 {
		m.pairTab = fill(m.pairTab, p.npairs, p.pairs)
	}
	if p.useAttrs && len(m.attrConj) > 0 {
		m.attrTab = fill(m.attrTab, p.nattrs, p.attrs)
	}
}

// memo evaluates conjunct k (of level all, src or dst) for dictionary
// entry id, once.
func (m *matcher) memo(k int, id uint32) bool {
	cm := &m.conj[k]
	if int(id) >= len(cm.tab) {
		cm.tab = append(cm.tab, make([]int8, int(id)+1-len(cm.tab)+1024)...)
	}
	if r := cm.tab[id]; r != 0 {
		return r == 1
	}
	switch cm.c.Level {
	case flow.LevelSrc:
		m.scratch.Src = m.v.eps[id]
	case flow.LevelDst:
		m.scratch.Dst = m.v.eps[id]
	}
	r := cm.c.Filter.Match(&m.scratch)
	cm.tab[id] = 2
	if r {
		cm.tab[id] = 1
	}
	return r
}

// evalPair answers the pair-level conjuncts for a pair.
func (m *matcher) evalPair(pid uint32) int8 {
	p := m.v.pairs[pid]
	for _, k := range m.pairConj {
		var ok bool
		switch m.conj[k].c.Level {
		case flow.LevelSrc:
			ok = m.memo(k, p.src)
		case flow.LevelDst:
			ok = m.memo(k, p.dst)
		case flow.LevelAll:
			ok = m.memo(k, 0)
		default:
			m.v.fillPair(&m.scratch, pid)
			ok = m.conj[k].c.Filter.Match(&m.scratch)
		}
		if !ok {
			return 2
		}
	}
	return 1
}

// evalAttr answers the attribute-level conjuncts for an attribute set.
func (m *matcher) evalAttr(aid uint32) int8 {
	m.v.fillAttr(&m.scratch, aid)
	for _, k := range m.attrConj {
		if !m.conj[k].c.Filter.Match(&m.scratch) {
			return 2
		}
	}
	return 1
}

// rowRest checks the per-flow conjuncts checked row by row on record i
// of the current chunk.
func (m *matcher) rowRest(i int) bool {
	for _, k := range m.rowConj {
		cm := &m.conj[k]
		if cm.c.Level == flow.LevelPairAttr {
			if !m.pairAttr(cm, i) {
				return false
			}
			continue
		}
		m.v.fillRecord(&m.scratch, i, cm.need, cm.needIDs)
		if !cm.c.Filter.Match(&m.scratch) {
			return false
		}
	}
	return true
}

func (m *matcher) pairAttr(cm *conjMemo, i int) bool {
	c := m.v.c
	pid, aid := uint32(c.c[colPair].at(i)), uint32(c.c[colAttr].at(i))
	key := uint64(pid)<<32 | uint64(aid)
	r, seen := cm.both[key]
	if !seen {
		if cm.both == nil {
			cm.both = map[uint64]bool{}
		}
		m.v.fillPair(&m.scratch, pid)
		m.v.fillAttr(&m.scratch, aid)
		r = cm.c.Filter.Match(&m.scratch)
		cm.both[key] = r
	}
	return r
}

// scan calls fn with the matching flows of the query's time range, one
// segment at a time (its view and the matches' indexes), from the newest; fn returns false to stop after the
// current segment. Segments are evaluated in parallel (one matcher per
// worker), fn is called in order from the calling goroutine.
func (s *Store) scan(q *flow.Query, fn func(v *view, hits []int32) bool) {
	segs := s.inRange(q)
	pre := &prefilter{q: q}
	type result struct {
		v    *view
		hits []int32
		done chan struct{}
	}
	res := make([]result, len(segs))
	for k := range res {
		res[k].done = make(chan struct{})
	}
	var next atomic.Int64
	var stop atomic.Bool
	workers := min(runtime.GOMAXPROCS(0), len(segs), 4)
	// Workers run at most window segments ahead of the consumer: a cold
	// segment's decoded columns are held until its results are consumed,
	// so the heap a query takes stays a few segments, not the store.
	window := 2 * workers
	tokens := make(chan struct{}, window)
	for range window {
		tokens <- struct{}{}
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := newMatcher(q)
			for {
				select {
				case <-tokens:
				case <-quit:
					return
				}
				k := int(next.Add(1) - 1)
				if k >= len(segs) {
					return
				}
				if !stop.Load() && q.Err() == nil && pre.may(s, segs[k]) {
					m.adopt(pre)
					res[k].v, res[k].hits = s.scanSegment(q, m, segs[k], nil, 0, true)
				}
				close(res[k].done)
			}
		}()
	}
	defer wg.Wait()
	defer close(quit)
	for k := range res {
		<-res[k].done
		more := len(res[k].hits) == 0 || fn(res[k].v, res[k].hits)
		res[k] = result{}
		tokens <- struct{}{}
		if !more {
			stop.Store(true)
			return
		}
	}
}

// scanSegment appends the matching records of seg to hits. It reads the
// columns the matcher needs, the times when the segment is not wholly
// inside the query's range, and the columns of extra; with rows, the
// caller materializes the hits (from a column file: their pages are
// checked first, and a damaged one makes the segment read from its row
// file instead).
func (s *Store) scanSegment(q *flow.Query, m *matcher, seg *segment, hits []int32, extra colMask, rows bool) (*view, []int32) {
	b := seg.bounds()
	inside := b.minStart >= q.From && b.maxStart <= q.To
	mask := m.mask | extra
	if !inside {
		mask |= 1<<colStart | 1<<colEnd
	}
	n0 := len(hits)
	for {
		v := m.at(s, seg, mask)
		hits = m.scanView(q, v, inside, hits)
		if v.cf == nil || !rows || v.cf.verifyHits(hits[n0:]) {
			return v, hits
		}
		s.noteColDamaged(v.cf)
		hits = hits[:n0]
	}
}

// scanView appends the matching records of v's segment to hits.
func (m *matcher) scanView(q *flow.Query, v *view, inside bool, hits []int32) []int32 {
	for ci := range v.cs {
		sel, all := m.scanChunk(q, v, ci, inside)
		g := int32(ci << chunkBits)
		if all {
			hits = slices.Grow(hits, v.cs[ci].n)
			for i := range int32(v.cs[ci].n) {
				hits = append(hits, g|i)
			}
			continue
		}
		for _, i := range sel {
			hits = append(hits, g|i)
		}
	}
	return hits
}

// scanChunk returns the rows of chunk ci of v that match, in order (all:
// every row, sel unset). The
// conjuncts are checked a column at a time, each over the rows the ones
// before kept: the per-flow numeric conditions first, then the times
// (when the segment is not wholly inside the query's range), the
// endpoint pair and the attribute combination (a table lookup per row:
// each pair and combination is evaluated once), the source port (one per
// port value); then the replaced rows and the conjuncts checked row by
// row. Each pass is a loop instantiated for its column's width.
func (m *matcher) scanChunk(q *flow.Query, v *view, ci int, inside bool) (sel []int32, all bool) {
	c := &v.cs[ci]
	v.c = c
	if c.n == 0 {
		return nil, false
	}
	if cap(m.sel) < c.n {
		m.sel = make([]int32, 0, max(c.n, 1024))
	}
	sel, all = m.sel[:0], true
	for _, k := range m.numConj {
		cm := &m.conj[k]
		a, b := counterCols(cm.counter)
		if b < 0 {
			sel = c.c[a].numSel(cm.num, sel, all)
		} else {
			sel = numSel2Of(&c.c[a], &c.c[b], cm.num, sel, all)
		}
		if all = false; len(sel) == 0 {
			return sel, false
		}
	}
	if !inside {
		sel = c.c[colStart].rangeSel(math.MinInt64, q.To, sel, all)
		sel = c.c[colEnd].rangeSel(q.From, math.MaxInt64, sel, false)
		if all = false; len(sel) == 0 {
			return sel, false
		}
	}
	if len(m.pairConj) > 0 {
		if sel, all = dictSel(&c.c[colPair], m.pairTab, m.evalPair, sel, all), false; len(sel) == 0 {
			return sel, false
		}
	}
	if len(m.attrConj) > 0 {
		if sel, all = dictSel(&c.c[colAttr], m.attrTab, m.evalAttr, sel, all), false; len(sel) == 0 {
			return sel, false
		}
	}
	for _, k := range m.sportConj {
		cm := &m.conj[k]
		if len(cm.tab) == 0 {
			cm.tab = make([]int8, 1<<16)
		}
		port := func(p uint32) int8 {
			m.scratch.Src.Port = uint16(p)
			if cm.c.Filter.Match(&m.scratch) {
				return 1
			}
			return 2
		}
		if sel, all = dictSel(&c.c[colSport], cm.tab, port, sel, all), false; len(sel) == 0 {
			return sel, false
		}
	}
	if v.dead == nil && len(m.rowConj) == 0 {
		return sel, all
	}
	if all {
		sel = sel[:c.n]
		for i := range sel {
			sel[i] = int32(i)
		}
	}
	k := 0
	for _, i := range sel {
		if v.dead != nil && v.dead.has(uint32(ci<<chunkBits|int(i))) {
			continue
		}
		if len(m.rowConj) > 0 && !m.rowRest(int(i)) {
			continue
		}
		sel[k] = i
		k++
	}
	return sel[:k], false
}

// dictSel keeps the rows whose ID in column cl (a pair, an attribute
// combination, a port) has tab[ID] == 1; an ID not evaluated yet (0) is
// evaluated by eval (1 match, 2 no match) and the answer kept in tab.
func dictSel(cl *col, tab []int8, eval func(id uint32) int8, sel []int32, all bool) []int32 {
	base := cl.base
	return cl.tabSel(tab[base:], sel, all, func(x uint64) int8 {
		id := uint32(base + x)
		r := eval(id)
		tab[id] = r
		return r
	})
}

// Search implements flow.Store.
func (s *Store) Search(q flow.Query) ([]flow.Flow, error) {
	s.gen.RLock()
	defer s.gen.RUnlock()
	limit := q.Limit
	if limit <= 0 {
		limit = 1000
	}
	var out []flow.Flow
	// Segments are partitions by start, newest first: a segment's flows
	// are all newer than the next one's, so each segment's matches are
	// sorted on their own (stable: flows starting at the same time keep
	// the file's order, hot or cold) and taken until the limit.
	s.scan(&q, func(v *view, hits []int32) bool {
		if q.Err() != nil {
			return false
		}
		keys := make([]hitKey, len(hits))
		var tmp []uint64
		runs(hits, v.cs, func(ci int, idx []int32, lo int) {
			c := &v.cs[ci]
			n := c.n
			if idx != nil {
				n = len(idx)
			}
			tmp = growU64(tmp, n)
			c.c[colStart].gather(idx, tmp)
			for j, t := range tmp[:n] {
				keys[lo+j] = hitKey{int64(t), hits[lo+j]}
			}
		})
		// Newest first, ties in the file's order: hits are in row order,
		// so this total order is the stable sort by start, at the cost of
		// an unstable one.
		slices.SortFunc(keys, func(a, b hitKey) int {
			if c := cmp.Compare(b.start, a.start); c != 0 {
				return c
			}
			return cmp.Compare(a.g, b.g)
		})
		for _, k := range keys[:min(len(keys), limit-len(out))] {
			out = append(out, v.flowAt(int(k.g)))
		}
		return len(out) < limit
	})
	if err := q.Err(); err != nil {
		return nil, err
	}
	if out == nil {
		out = []flow.Flow{}
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
	s.gen.RLock()
	defer s.gen.RUnlock()
	s.mu.RLock()
	segs := s.sorted(true)
	s.mu.RUnlock()
	for _, seg := range segs {
		if seg.bounds().minStart > t.Add(time.Millisecond).UnixNano() || seg.bucket+s.opts.Partition.Nanoseconds() < t.Add(-idLookback).UnixNano() {
			continue
		}
	again:
		cs, dead, cf := s.columnsOf(seg, 1<<colIDms|1<<colIDn|1<<colStart)
		for ci := range cs {
			c := &cs[ci]
			for i := c.c[colIDn].findEq(n, 0); i >= 0; i = c.c[colIDn].findEq(n, i+1) {
				if c.idms(i) == ms && !dead.has(uint32(ci<<chunkBits|i)) {
					if cf != nil && !cf.verifyRow(ci<<chunkBits|i) {
						s.noteColDamaged(cf)
						goto again
					}
					v := s.dict.view()
					v.cs = cs
					return v.flowAt(ci<<chunkBits | i), true, nil
				}
			}
		}
	}
	return flow.Flow{}, false, nil
}

// Top implements flow.Store: counts are summed per pair (and per attribute
// combination when the filter needs it) and mapped to keys at the end.
func (s *Store) Top(q flow.Query, by string, n int) ([]flow.TopEntry, error) {
	type acc struct{ flows, conns, bytes uint64 }
	s.gen.RLock()
	defer s.gen.RUnlock()
	segs := s.inRange(&q)
	pre := &prefilter{q: &q}
	// Workers count per pair over their share of the segments.
	workers := max(1, min(runtime.GOMAXPROCS(0), len(segs), 4))
	pers := make([][]acc, workers)
	views := make([]*view, workers)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := newMatcher(&q)
			var per []acc
			var hits []int32
			for {
				k := int(next.Add(1) - 1)
				if k >= len(segs) || q.Err() != nil {
					break
				}
				if !pre.may(s, segs[k]) {
					continue
				}
				m.adopt(pre)
				var v *view
				v, hits = s.scanSegment(&q, m, segs[k], hits[:0], 1<<colPair|1<<colConns|1<<colFwdB|1<<colRevB, false)
				if len(per) < len(v.pairs) {
					per = append(per, make([]acc, len(v.pairs)-len(per))...)
				}
				runs(hits, v.cs, func(ci int, idx []int32, _ int) {
					c := &v.cs[ci]
					n := c.n
					if idx != nil {
						n = len(idx)
					}
					m.g0, m.g1 = growU64(m.g0, n), growU64(m.g1, n)
					m.g2, m.g3 = growU64(m.g2, n), growU64(m.g3, n)
					c.c[colPair].gather(idx, m.g0)
					c.c[colConns].gather(idx, m.g1)
					c.c[colFwdB].gather(idx, m.g2)
					c.c[colRevB].gather(idx, m.g3)
					for j, p := range m.g0[:n] {
						a := &per[p]
						a.flows++
						a.conns += m.g1[j]
						a.bytes += m.g2[j] + m.g3[j]
					}
				})
				views[w] = v
			}
			pers[w] = per
		}()
	}
	wg.Wait()
	if err := q.Err(); err != nil {
		return nil, err
	}
	var per []acc
	var last *view
	for w := range workers {
		if views[w] != nil && (last == nil || len(views[w].pairs) > len(last.pairs)) {
			last = views[w]
		}
		if len(pers[w]) > len(per) {
			per = append(per, make([]acc, len(pers[w])-len(per))...)
		}
		for p, a := range pers[w] {
			per[p].flows += a.flows
			per[p].conns += a.conns
			per[p].bytes += a.bytes
		}
	}
	groups := map[string]*flow.TopEntry{}
	var f flow.Flow
	if last == nil {
		return []flow.TopEntry{}, nil
	}
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
	return flow.RankTop(out, n), nil
}

func needOf(fields []string) fillNeed {
	var n fillNeed
	for _, f := range fields {
		switch flow.ClassOf(f) {
		case flow.ClassSrc, flow.ClassDst, flow.ClassPair:
			n.pair = true
		case flow.ClassAttr:
			n.attr = true
		}
		if f == "start" || f == "end" || f == "duration" {
			n.times = true
		}
	}
	return n
}

// numTest is a flow.NumericCond with its operator decoded once (Holds
// compares the operator's text for every flow).
type numTest struct {
	op  uint8 // index in numOps
	n   float64
	not bool
}

var numOps = []string{"=", "!=", "<", "<=", ">", ">="}

func newNumTest(c *flow.NumericCond) numTest {
	op := slices.Index(numOps, c.Op)
	if op < 0 {
		op = 5 // Holds' default
	}
	return numTest{uint8(op), c.N, c.Not}
}

// holds is flow.NumericCond.Holds.
func (t *numTest) holds(v uint64) bool {
	x := float64(v)
	var r bool
	switch t.op {
	case 0:
		r = x == t.n
	case 1:
		r = x != t.n
	case 2:
		r = x < t.n
	case 3:
		r = x <= t.n
	case 4:
		r = x > t.n
	default:
		r = x >= t.n
	}
	return r != t.not
}

// counterFields are the counters a flow.NumericCond may name.
var counterFields = []string{"bytes", "packets", "fwd.bytes", "fwd.packets", "rev.bytes", "rev.packets", "conns"}

// counterCols are the columns counter k sums (b < 0: a alone).
func counterCols(k int) (a, b int) {
	switch k {
	case 0:
		return colFwdB, colRevB
	case 1:
		return colFwdP, colRevP
	case 2:
		return colFwdB, -1
	case 3:
		return colFwdP, -1
	case 4:
		return colRevB, -1
	case 5:
		return colRevP, -1
	}
	return colConns, -1
}

// counterMask is the columns counter k reads.
func counterMask(k int) colMask {
	switch k {
	case 0:
		return 1<<colFwdB | 1<<colRevB
	case 1:
		return 1<<colFwdP | 1<<colRevP
	case 2:
		return 1 << colFwdB
	case 3:
		return 1 << colFwdP
	case 4:
		return 1 << colRevB
	case 5:
		return 1 << colRevP
	}
	return 1 << colConns
}

// hitKey is a hit (global row index) and its start, to sort by.
type hitKey struct {
	start int64
	g     int32
}

// runs calls fn with each run of hits (global row indexes of the chunks
// cs, ascending) in one chunk: the chunk, the rows' indexes in it (nil:
// every row of the chunk) and the run's position in hits. idx is valid
// during the call.
func runs(hits []int32, cs []chunk, fn func(ci int, idx []int32, lo int)) {
	var idx []int32
	for lo := 0; lo < len(hits); {
		ci := hits[lo] >> chunkBits
		n := cs[ci].n
		if hits[lo]&(chunkRows-1) == 0 && lo+n <= len(hits) && hits[lo+n-1] == ci<<chunkBits|int32(n-1) {
			fn(int(ci), nil, lo) // ascending and distinct: every row
			lo += n
			continue
		}
		hi := lo
		idx = idx[:0]
		for hi < len(hits) && hits[hi]>>chunkBits == ci {
			idx = append(idx, hits[hi]&(chunkRows-1))
			hi++
		}
		fn(int(ci), idx, lo)
		lo = hi
	}
}

// growU64 is b with room for n values.
func growU64(b []uint64, n int) []uint64 {
	if cap(b) < n {
		return make([]uint64, n)
	}
	return b[:n]
}

// inRange returns the segments whose flows may overlap q's time range,
// newest first.
func (s *Store) inRange(q *flow.Query) []*segment {
	s.mu.RLock()
	all := s.sorted(true)
	s.mu.RUnlock()
	var segs []*segment
	for _, seg := range all {
		if b := seg.bounds(); b.minStart <= q.To && b.maxEnd >= q.From {
			segs = append(segs, seg)
		}
	}
	return segs
}

// prefilter says, from a cold segment's summary, whether any of its
// records may match a query: it evaluates the query's pair-level,
// attribute-level and source-port conjuncts once per dictionary entry
// (once per query, on first need) and checks whether the segment uses a
// matching entry of each. Hot segments are scanned without it: their
// columns are in memory already.
type prefilter struct {
	q    *flow.Query
	once sync.Once
	// What matches, by ID; n* are the dictionary sizes evaluated (a
	// segment using a newer entry may match).
	pairs, attrs, sports bitset
	npairs, nattrs       int
	usePairs, useAttrs   bool
	useSports            bool
	built                atomic.Bool
}

func (p *prefilter) may(s *Store, seg *segment) bool {
	seg.mu.RLock()
	cold := seg.cold
	seg.mu.RUnlock()
	if !cold || p.q == nil || len(p.q.Conjuncts) == 0 {
		return true
	}
	p.once.Do(func() { p.build(s) })
	seg.mu.RLock()
	defer seg.mu.RUnlock()
	m := &seg.sum
	if p.usePairs && !m.pairs.intersects(p.pairs) && !m.pairs.any(p.npairs) {
		return false
	}
	if p.useAttrs && !m.attrs.intersects(p.attrs) && !m.attrs.any(p.nattrs) {
		return false
	}
	if p.useSports && !m.sports.intersects(p.sports) {
		return false
	}
	return true
}

func (p *prefilter) build(s *Store) {
	defer p.built.Store(true)
	m := newMatcher(p.q)
	m.v = s.dict.view()
	v := m.v
	if len(m.pairConj) > 0 {
		p.usePairs, p.npairs = true, len(v.pairs)
		for pid := range v.pairs {
			if m.evalPair(uint32(pid)) == 1 {
				p.pairs.set(uint32(pid))
			}
		}
	}
	if len(m.attrConj) > 0 {
		p.useAttrs, p.nattrs = true, len(v.attrs)
		for aid := range v.attrs {
			if m.evalAttr(uint32(aid)) == 1 {
				p.attrs.set(uint32(aid))
			}
		}
	}
	for _, k := range m.restConj {
		cm := &m.conj[k]
		if cm.c.Level != flow.LevelSrcPort {
			continue
		}
		ports := make(bitset, 1<<16/64)
		for port := range 1 << 16 {
			m.scratch.Src.Port = uint16(port)
			if cm.c.Filter.Match(&m.scratch) {
				ports.set(uint32(port))
			}
		}
		if p.useSports {
			for i := range p.sports {
				p.sports[i] &= ports[i]
			}
		} else {
			p.sports, p.useSports = ports, true
		}
	}
}
