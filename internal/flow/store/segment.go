package store

import (
	"os"
	"slices"
	"sync"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/inventory"
)

// dict holds the store's dictionaries: strings, endpoints (an IP with its
// enrichment), observation point sets, endpoint pairs (src, dst, proto,
// dst port) and attribute combinations. Records refer to them by number,
// which keeps records small, and lets a search evaluate its filter once
// per distinct pair (or attribute combination) for the whole store
// instead of once per flow. The dictionaries are append-only and live in
// their own file (dict.pfd), written and fsynced before the segment blocks
// that refer to new entries.
type dict struct {
	path string
	file *os.File
	size int64
	// mirrorPath is a second copy of the file, written and fsynced with
	// it: a dictionary damaged on disk would make every record naming a
	// lost entry unreadable.
	mirrorPath string
	mirror     *os.File

	// mu guards the slices' lengths: the writer appends under it; readers
	// take the slices under it and read without it (the prefix they see is
	// never written again). The maps and indexes are the writer's alone.
	mu     sync.RWMutex
	strs   []string
	strID  map[string]uint32
	eps    []flow.Endpoint // without Port
	epIdx  index
	pss    [][]flow.ObservationPoint
	psIdx  index
	pairs  []pair
	pairID pairIndex
	attrs  []attr
	attrID map[attr]uint32

	recent     [4]recentStr
	nextRecent int
	// epIdent finds endpoints by identity, in front of epIdx; a
	// direct-mapped cache in front of attrID.
	epIdent   identCache
	attrCache [attrCacheSize]attrCacheEntry
}

const attrCacheSize = 1024

type attrCacheEntry struct {
	a  attr
	id uint32
	ok bool
}

type recentStr struct {
	s  string
	id uint32
	ok bool
}

type pair struct {
	src, dst, proto uint32
	dport           uint16
}

// attr is the combination of a flow's low-cardinality fields.
type attr struct {
	mode, tunnel, ps uint32
	flags, reasons   uint8 // flags: flagBits plus repliedBit
}

var flagBits = []string{flow.FlagSYN, flow.FlagSYNACK, flow.FlagFIN, flow.FlagRST}

const repliedBit = 1 << 4

// dictMark is the size of each dictionary, to encode what was added since.
type dictMark struct{ str, ep, ps, pair, attr int }

func newDict(path string) *dict {
	d := &dict{path: path, strID: map[string]uint32{}, attrID: map[attr]uint32{}}
	d.str("") // ID 0 is the empty string, in every dictionary, never written
	return d
}

// entries is the number of entries of every dictionary.
func (d *dict) entries() int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return len(d.strs) + len(d.eps) + len(d.pss) + len(d.pairs) + len(d.attrs)
}

func (d *dict) mark() dictMark {
	return dictMark{len(d.strs), len(d.eps), len(d.pss), len(d.pairs), len(d.attrs)}
}

// strProbe is str without changing anything.
func (d *dict) strProbe(v string) (uint32, bool) {
	for i := range d.recent {
		if r := &d.recent[i]; r.s == v && r.ok {
			return r.id, true
		}
	}
	id, ok := d.strID[v]
	return id, ok
}

func (d *dict) str(v string) uint32 {
	// Protocols, modes and tunnel types repeat: check a few recent ones
	// before the map.
	for i := range d.recent {
		if r := &d.recent[i]; r.s == v && r.ok {
			return r.id
		}
	}
	if id, ok := d.strID[v]; ok {
		if len(v) <= 16 {
			d.recent[d.nextRecent%len(d.recent)] = recentStr{v, id, true}
			d.nextRecent++
		}
		return id
	}
	id := push(d, &d.strs, v)
	d.strID[v] = id
	return id
}

// reindex rebuilds the writer's endpoint, point-set and pair indexes
// (after a load or a rollback).
func (d *dict) reindex() {
	d.epIdx.reset()
	for i := range d.eps {
		d.epIdx.add(endpointHash(&d.eps[i]), uint32(i))
	}
	d.psIdx.reset()
	for i, ps := range d.pss {
		d.psIdx.add(pointsHash(ps), uint32(i))
	}
	d.pairID.reset()
	for i, p := range d.pairs {
		d.pairID.add(p, uint32(i))
	}
}

func (d *dict) endpoint(e *flow.Endpoint) uint32 {
	if !identOK(e) {
		return d.endpointSlow(e)
	}
	set, tag := d.epIdent.set(e)
	if id, ok := set.find(tag, e); ok {
		return id
	}
	id := d.endpointSlow(e)
	set.add(tag, e, id)
	return id
}

// endpointProbe is endpoint without changing anything.
func (d *dict) endpointProbe(e *flow.Endpoint) (uint32, bool) {
	if identOK(e) {
		set, tag := d.epIdent.set(e)
		return set.find(tag, e)
	}
	return d.epIdx.find(endpointHash(e), func(id uint32) bool { return endpointEqual(&d.eps[id], e) })
}

func (d *dict) endpointSlow(e *flow.Endpoint) uint32 {
	h := endpointHash(e)
	if id, ok := d.epIdx.find(h, func(id uint32) bool { return endpointEqual(&d.eps[id], e) }); ok {
		return id
	}
	ep := *e
	ep.Port = 0
	ep.Labels = nil
	if len(e.Labels) > 0 {
		ep.Labels = make(map[string]string, len(e.Labels))
		for k, v := range e.Labels {
			ep.Labels[d.strs[d.str(k)]] = d.strs[d.str(v)]
		}
	}
	for _, v := range [...]*string{&ep.IP, &ep.Workload, &ep.Kind, &ep.Name, &ep.Namespace, &ep.Service, &ep.Node} {
		*v = d.strs[d.str(*v)]
	}
	if e.Owner != nil {
		ep.Owner = &inventory.Owner{Kind: d.strs[d.str(e.Owner.Kind)], Name: d.strs[d.str(e.Owner.Name)]}
	}
	id := push(d, &d.eps, ep)
	d.epIdx.add(h, id)
	return id
}

func (d *dict) points(ps []flow.ObservationPoint) uint32 {
	h := pointsHash(ps)
	if id, ok := d.psIdx.find(h, func(id uint32) bool { return pointsEqual(d.pss[id], ps) }); ok {
		return id
	}
	cp := make([]flow.ObservationPoint, len(ps))
	for i, p := range ps {
		cp[i] = flow.ObservationPoint{Node: d.strs[d.str(p.Node)], Interface: d.strs[d.str(p.Interface)],
			Kind: d.strs[d.str(p.Kind)], Pod: d.strs[d.str(p.Pod)]}
	}
	id := push(d, &d.pss, cp)
	d.psIdx.add(h, id)
	return id
}

func (d *dict) pair(p pair) uint32 {
	if id, ok := d.pairID.find(p); ok {
		return id
	}
	id := push(d, &d.pairs, p)
	d.pairID.add(p, id)
	return id
}

func (d *dict) attr(a attr) uint32 {
	ce := &d.attrCache[attrSlot(a)]
	if ce.ok && ce.a == a {
		return ce.id
	}
	id := intern(d, d.attrID, &d.attrs, a)
	*ce = attrCacheEntry{a, id, true}
	return id
}

func attrSlot(a attr) uint32 {
	h := (a.mode*0x9E3779B1 ^ a.tunnel*0x85EBCA77 ^ a.ps*0xC2B2AE3D ^ uint32(a.flags)<<8 ^ uint32(a.reasons)<<16) >> 4
	return h % attrCacheSize
}

// intern returns the ID of v in the dictionary (ids, list), adding it.
func intern[T comparable](d *dict, ids map[T]uint32, list *[]T, v T) uint32 {
	if id, ok := ids[v]; ok {
		return id
	}
	id := push(d, list, v)
	ids[v] = id
	return id
}

// push appends v to a dictionary list (under the lock readers take) and
// returns its ID.
func push[T any](d *dict, list *[]T, v T) uint32 {
	id := uint32(len(*list))
	d.mu.Lock()
	*list = append(*list, v)
	d.mu.Unlock()
	return id
}

func flagsOf(f *flow.Flow) uint8 {
	var b uint8
	for _, name := range f.Flags {
		switch name { // the order of flagBits
		case flow.FlagSYN:
			b |= 1
		case flow.FlagSYNACK:
			b |= 2
		case flow.FlagFIN:
			b |= 4
		case flow.FlagRST:
			b |= 8
		}
	}
	if f.Replied {
		b |= repliedBit
	}
	return b
}

// delta encodes the entries added since m, as one dict block.
func (d *dict) delta(m dictMark) []byte {
	var e enc
	e.u(uint64(len(d.strs) - m.str))
	for _, v := range d.strs[m.str:] {
		e.str(v)
	}
	e.u(uint64(len(d.eps) - m.ep))
	for i := range d.eps[m.ep:] {
		ep := &d.eps[m.ep+i]
		e.ids(d.strID[ep.IP], d.strID[ep.Workload], d.strID[ep.Kind], d.strID[ep.Name], d.strID[ep.Namespace],
			d.strID[ep.Service], d.strID[ep.Node])
		if ep.Owner != nil {
			e.byte1(1)
			e.ids(d.strID[ep.Owner.Kind], d.strID[ep.Owner.Name])
		} else {
			e.byte1(0)
		}
		e.u(uint64(len(ep.Labels)))
		for k, v := range ep.Labels {
			e.ids(d.strID[k], d.strID[v])
		}
	}
	e.u(uint64(len(d.pss) - m.ps))
	for _, ps := range d.pss[m.ps:] {
		e.u(uint64(len(ps)))
		for _, p := range ps {
			e.ids(d.strID[p.Node], d.strID[p.Interface], d.strID[p.Kind], d.strID[p.Pod])
		}
	}
	e.u(uint64(len(d.pairs) - m.pair))
	for _, p := range d.pairs[m.pair:] {
		e.ids(p.src, p.dst, p.proto)
		e.u(uint64(p.dport))
	}
	e.u(uint64(len(d.attrs) - m.attr))
	for _, a := range d.attrs[m.attr:] {
		e.ids(a.mode, a.tunnel, a.ps)
		e.byte1(a.flags)
		e.byte1(a.reasons)
	}
	return frame(e.b)
}

// apply decodes one dict block (at load; no readers yet).
func (d *dict) apply(payload []byte) error {
	r := &dec{b: payload}
	for range r.count() {
		v := r.str()
		d.strID[v] = uint32(len(d.strs))
		d.strs = append(d.strs, v)
	}
	nstr := len(d.strs)
	sid := func() string { return d.strs[r.id(nstr)] }
	for range r.count() {
		ep := flow.Endpoint{IP: sid(), Workload: sid(), Kind: sid(), Name: sid(), Namespace: sid(), Service: sid(), Node: sid()}
		if r.byte1() == 1 {
			ep.Owner = &inventory.Owner{Kind: sid(), Name: sid()}
		}
		if n := r.count(); n > 0 {
			ep.Labels = make(map[string]string, n)
			for range n {
				k := sid()
				ep.Labels[k] = sid()
			}
		}
		d.eps = append(d.eps, ep)
	}
	for range r.count() {
		ps := make([]flow.ObservationPoint, r.count())
		for i := range ps {
			ps[i] = flow.ObservationPoint{Node: sid(), Interface: sid(), Kind: sid(), Pod: sid()}
		}
		d.pss = append(d.pss, ps)
	}
	for range r.count() {
		p := pair{src: r.id(len(d.eps)), dst: r.id(len(d.eps)), proto: r.id(nstr)}
		p.dport = uint16(r.u())
		d.pairs = append(d.pairs, p)
	}
	for range r.count() {
		a := attr{mode: r.id(nstr), tunnel: r.id(nstr), ps: r.id(len(d.pss))}
		a.flags, a.reasons = r.byte1(), r.byte1()
		d.attrID[a] = uint32(len(d.attrs))
		d.attrs = append(d.attrs, a)
	}
	return r.err
}

// segment is one time partition: the flows starting in
// [bucket, bucket+partition), in one append-only file, held in memory as
// columns of numbers referring to the dictionaries.
type segment struct {
	bucket int64 // partition start, unix ns
	path   string
	file   *os.File
	size   int64

	// mu guards the columns' lengths, like dict.mu, and the fields below.
	mu       sync.RWMutex
	minStart int64
	maxStart int64
	maxEnd   int64
	// chunks hold the records, chunkRows each (the last may be partial):
	// appending never copies more than one chunk. A cold segment has none:
	// its records are read from its file when a query needs them.
	chunks []*columns
	cold   bool
	// dead marks the rows (by global index) replaced by a later version
	// of the same flow (see Store.Replace); nil when none.
	dead bitset
	// committed is the length of the file's committed blocks (size may be
	// ahead of it while a transaction is written).
	committed int64
	// sum is the segment's resident summary, kept up to date as records
	// are added; sumSize is the file length its sidecar file covers (0:
	// none written).
	sum     summary
	sumSize int64
	// txnLo and txnHi bound the transactions of the file's blocks.
	txnLo, txnHi uint64
	// col is the segment's column file when cold (nil: none yet, read the
	// row file); colSize its length.
	col     *colFile
	colSize int64
	// colLazy: a column file is on disk, not opened yet (openCol);
	// colProbed: its version was checked (probeCols).
	colLazy, colProbed bool
}

// noteTxn widens the segment's transaction range. Caller holds mu (or
// owns the segment).
func (s *segment) noteTxn(txn uint64) {
	if s.txnLo == 0 || txn < s.txnLo {
		s.txnLo = txn
	}
	s.txnHi = max(s.txnHi, txn)
}

const (
	chunkBits = 16
	chunkRows = 1 << chunkBits
)

type rel struct {
	idms   int64
	idn    uint64
	reason uint8
}

// columns hold one entry per flow (rels: relOff[i]..relOff[i+1]).
type columns struct {
	start, end []int64 // unix ns
	idms       []int64 // the ID's time, unix ms
	idn        []uint64
	pair, attr []uint32
	sport      []uint16
	fwdP, fwdB []uint64
	revP, revB []uint64
	conns      []uint64
	relOff     []uint32
	rels       []rel
	// repl counts the rows that replace earlier versions (Replace).
	repl int
}

func (c *columns) len() int { return len(c.start) }

func newSegment(bucket int64, path string) *segment {
	s := &segment{bucket: bucket, path: path, minStart: 1<<63 - 1, maxStart: -1 << 63, maxEnd: -1 << 63}
	return s
}

// blockWriter encodes one segment block's records, and keeps them as
// columns to add to the segment once the block is durable (commit).
type blockWriter struct {
	d     *dict
	s     *segment
	recs  enc
	nrec  int
	base  int64 // µs
	pend  columns
	bound [3]int64 // minStart, maxStart, maxEnd
	// size0 is the segment file's size before this transaction, to cut
	// the block off again if the transaction fails.
	size0 int64
	out   []byte // the framed block (block)
}

func (s *segment) writer(d *dict) *blockWriter {
	w := &blockWriter{d: d}
	w.reset(s)
	return w
}

// reset readies w (and its buffers) for a block of segment s.
func (w *blockWriter) reset(s *segment) {
	w.s, w.size0 = s, s.size
	w.recs.b, w.nrec, w.base = w.recs.b[:0], 0, 0
	w.bound = [3]int64{1<<63 - 1, -1 << 63, -1 << 63}
	p := &w.pend
	p.start, p.end, p.idms, p.idn = p.start[:0], p.end[:0], p.idms[:0], p.idn[:0]
	p.pair, p.attr, p.sport = p.pair[:0], p.attr[:0], p.sport[:0]
	p.fwdP, p.fwdB, p.revP, p.revB, p.conns = p.fwdP[:0], p.fwdB[:0], p.revP[:0], p.revB[:0], p.conns[:0]
	p.relOff, p.rels = p.relOff[:0], p.rels[:0]
	p.repl = 0
}

// lookup returns the pair and attribute IDs of f, adding dictionary
// entries as needed; k holds what probe found already.
func (d *dict) lookup(f *flow.Flow, reasons uint8, k *known) (pid, aid uint32) {
	if k.have&haveSrc == 0 {
		k.src = d.endpoint(&f.Src)
	}
	if k.have&haveDst == 0 {
		k.dst = d.endpoint(&f.Dst)
	}
	if k.have&havePS == 0 {
		k.ps = d.points(f.Points)
	}
	p := pair{src: k.src, dst: k.dst, proto: d.str(f.Proto), dport: f.Dst.Port}
	a := attr{mode: d.str(f.Mode), tunnel: d.str(f.Tunnel), ps: k.ps, flags: flagsOf(f), reasons: reasons}
	return d.pair(p), d.attr(a)
}

// known is what probe found of a flow's dictionary entries (have: which).
type known struct {
	src, dst, ps uint32
	have         uint8
}

const (
	haveSrc = 1 << iota
	haveDst
	havePS
)

// probe is lookup without changing the dictionaries (so it may run on
// several goroutines at once, while nothing writes them): ok is false
// when an entry is missing, and k then says which were found.
func (d *dict) probe(f *flow.Flow, reasons uint8, k *known) (pid, aid uint32, ok bool) {
	var ok1, ok2, ok3 bool
	if k.src, ok1 = d.endpointProbe(&f.Src); ok1 {
		k.have |= haveSrc
	}
	if k.dst, ok2 = d.endpointProbe(&f.Dst); ok2 {
		k.have |= haveDst
	}
	if k.ps, ok3 = d.psIdx.find(pointsHash(f.Points), func(id uint32) bool { return pointsEqual(d.pss[id], f.Points) }); ok3 {
		k.have |= havePS
	}
	proto, ok4 := d.strProbe(f.Proto)
	mode, ok5 := d.strProbe(f.Mode)
	tunnel, ok6 := d.strProbe(f.Tunnel)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return 0, 0, false
	}
	if pid, ok = d.pairID.find(pair{src: k.src, dst: k.dst, proto: proto, dport: f.Dst.Port}); !ok {
		return 0, 0, false
	}
	a := attr{mode: mode, tunnel: tunnel, ps: k.ps, flags: flagsOf(f), reasons: reasons}
	if ce := &d.attrCache[attrSlot(a)]; ce.ok && ce.a == a {
		return pid, ce.id, true
	}
	aid, ok = d.attrID[a]
	return pid, aid, ok
}

// add encodes f: its dictionary IDs, ID and related IDs already found.
func (w *blockWriter) add(f *flow.Flow, pid, aid uint32, idms int64, idn uint64, rels []rel) {
	startUs, endUs := f.Start.UnixMicro(), f.End.UnixMicro()
	if w.nrec == 0 {
		w.base = startUs
	}
	w.nrec++
	start, end := startUs*1000, max(endUs, startUs)*1000
	x := row{start, end, idms, idn, pid, aid, f.Src.Port, [5]uint64{f.FwdPackets, f.FwdBytes, f.RevPackets, f.RevBytes, f.Conns}}
	encodeRow(&w.recs, w.base, &x, endUs-startUs, rels)
	w.pend.addRow(x, rels)
	w.bound = [3]int64{min(w.bound[0], start), max(w.bound[1], start), max(w.bound[2], end)}
}

// encodeRow appends one record to a block (times relative to base, µs);
// durUs is end - start in µs as the flow gave it (negative: 0).
func encodeRow(r *enc, base int64, x *row, durUs int64, rels []rel) {
	startUs := x.start / 1000
	r.i(startUs - base)
	r.u(uint64(max(durUs, 0)))
	r.i(x.idms - startUs/1000)
	r.u64(x.idn)
	r.ids(x.pair, x.attr)
	r.u(uint64(x.sport))
	for _, n := range x.n {
		r.u(n)
	}
	r.u(uint64(len(rels)))
	for _, y := range rels {
		r.i(y.idms - startUs/1000)
		r.u64(y.idn)
		r.byte1(y.reason)
	}
}

// row is one record's fixed-size fields.
type row struct {
	start, end, idms int64
	idn              uint64
	pair, attr       uint32
	sport            uint16
	n                [5]uint64 // fwdP, fwdB, revP, revB, conns
}

// grow makes room for n more rows.
func (c *columns) grow(n int) {
	c.start = slices.Grow(c.start, n)
	c.end = slices.Grow(c.end, n)
	c.idms = slices.Grow(c.idms, n)
	c.idn = slices.Grow(c.idn, n)
	c.pair = slices.Grow(c.pair, n)
	c.attr = slices.Grow(c.attr, n)
	c.sport = slices.Grow(c.sport, n)
	c.fwdP = slices.Grow(c.fwdP, n)
	c.fwdB = slices.Grow(c.fwdB, n)
	c.revP = slices.Grow(c.revP, n)
	c.revB = slices.Grow(c.revB, n)
	c.conns = slices.Grow(c.conns, n)
	c.relOff = slices.Grow(c.relOff, n+1)
	c.rels = slices.Grow(c.rels, n/2)
}

func (c *columns) addRow(r row, rels []rel) {
	if len(c.relOff) == 0 {
		c.relOff = append(c.relOff, 0)
	}
	c.start = append(c.start, r.start)
	c.end = append(c.end, r.end)
	c.idms = append(c.idms, r.idms)
	c.idn = append(c.idn, r.idn)
	c.pair = append(c.pair, r.pair)
	c.attr = append(c.attr, r.attr)
	c.sport = append(c.sport, r.sport)
	c.fwdP = append(c.fwdP, r.n[0])
	c.fwdB = append(c.fwdB, r.n[1])
	c.revP = append(c.revP, r.n[2])
	c.revB = append(c.revB, r.n[3])
	c.conns = append(c.conns, r.n[4])
	c.rels = append(c.rels, rels...)
	c.relOff = append(c.relOff, uint32(len(c.rels)))
}

// appendRows adds p's records to the segment's summary and (unless the
// segment is cold) to its chunks, a chunk's worth of rows at a time.
// Caller holds mu.
func (s *segment) appendRows(p *columns) {
	s.sum.add(p)
	for i := range p.start {
		s.minStart = min(s.minStart, p.start[i])
		s.maxStart = max(s.maxStart, p.start[i])
		s.maxEnd = max(s.maxEnd, p.end[i])
	}
	if !s.cold {
		s.chunks = appendChunks(s.chunks, p)
		if p.repl > 0 {
			s.dead = markDead(s.chunks)
		}
	}
}

// appendChunks adds p's records to chunks.
func appendChunks(chunks []*columns, p *columns) []*columns {
	for lo, n := 0, p.len(); lo < n; {
		if len(chunks) == 0 || chunks[len(chunks)-1].len() == chunkRows {
			chunks = append(chunks, &columns{relOff: []uint32{0}})
		}
		c := chunks[len(chunks)-1]
		hi := min(n, lo+chunkRows-c.len())
		if need := c.len() + hi - lo; need > cap(c.start) {
			// Double (append grows big slices by only 1.25×), up to a chunk.
			// (Taking a segment's later chunks whole saved no measurable
			// time and cost up to a chunk, 6 MB, per segment: +0.9 GB of
			// heap over 10 M flows in 144 segments.)
			c.grow(min(chunkRows, max(need, 2*cap(c.start), 1024)) - c.len())
		}
		c.start = append(c.start, p.start[lo:hi]...)
		c.end = append(c.end, p.end[lo:hi]...)
		c.idms = append(c.idms, p.idms[lo:hi]...)
		c.idn = append(c.idn, p.idn[lo:hi]...)
		c.pair = append(c.pair, p.pair[lo:hi]...)
		c.attr = append(c.attr, p.attr[lo:hi]...)
		c.sport = append(c.sport, p.sport[lo:hi]...)
		c.fwdP = append(c.fwdP, p.fwdP[lo:hi]...)
		c.fwdB = append(c.fwdB, p.fwdB[lo:hi]...)
		c.revP = append(c.revP, p.revP[lo:hi]...)
		c.revB = append(c.revB, p.revB[lo:hi]...)
		c.conns = append(c.conns, p.conns[lo:hi]...)
		base := uint32(len(c.rels)) - p.relOff[lo]
		c.rels = append(c.rels, p.rels[p.relOff[lo]:p.relOff[hi]]...)
		for _, off := range p.relOff[lo+1 : hi+1] {
			c.relOff = append(c.relOff, base+off)
		}
		lo = hi
	}
	return chunks
}

// commit adds the block's records to the segment.
func (w *blockWriter) commit(txn uint64) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	w.s.noteTxn(txn)
	w.s.appendRows(&w.pend)
	w.s.committed = w.s.size
}

// block returns the encoded segment block, framed, in buf's memory. The
// records are applied to the segment's columns only once the block is
// durable (commit).
func (w *blockWriter) block(buf []byte, txn uint64, part, parts int, obs flow.Seqs) []byte {
	e := enc{b: append(buf[:0], make([]byte, blockHeader)...)}
	e.u(txn)
	e.u(uint64(part))
	if w.pend.repl > 0 {
		parts |= replFlag
	}
	e.u(uint64(parts))
	e.u(uint64(w.nrec))
	e.i(w.base)
	e.b = append(e.b, w.recs.b...)
	encodeSeqs(&e, obs)
	frameInPlace(e.b)
	return e.b
}

func encodeSeqs(e *enc, obs flow.Seqs) {
	e.u(uint64(len(obs)))
	for agent, set := range obs {
		e.str(agent)
		rs := set.Ranges()
		e.u(uint64(len(rs)))
		for _, r := range rs {
			e.u(r.Lo)
			e.u(r.Hi - r.Lo)
		}
	}
}

func decodeSeqs(d *dec, into flow.Seqs) {
	n := d.count()
	for range n {
		agent := d.str()
		m := d.count()
		for range m {
			lo := d.u()
			hi := lo + d.u()
			if d.err != nil {
				return
			}
			set := into[agent]
			if set == nil {
				set = &flow.SeqSet{}
				into[agent] = set
			}
			set.AddRange(flow.SeqRange{Lo: lo, Hi: hi})
		}
	}
}

// blockInfo is a segment block's transaction header.
type blockInfo struct {
	txn         uint64
	part, parts int
	repl        bool // replacements (replFlag)
}

// apply decodes one segment block into the segment's columns. Records are
// kept only when keep says the block's transaction completed; obs (when
// not nil) then receives the block's agent records, and into (when not
// nil) the records too. npairs and nattrs are the dictionaries' sizes: a
// record referring beyond them is corrupt.
func (s *segment) apply(payload []byte, npairs, nattrs int, keep func(blockInfo) bool, obs flow.Seqs, into *columns) error {
	var p columns
	kept, err := decodeBlock(payload, npairs, nattrs, keep, &p, obs)
	if err != nil {
		return err
	}
	if kept && into != nil && p.len() > 0 {
		into.appendCols(&p)
	}
	if kept && p.len() > 0 {
		s.mu.Lock()
		s.appendRows(&p)
		s.mu.Unlock()
	}
	return nil
}

// decodeBlock decodes a segment block's records into p (when keep says
// so) and its agent records into obs (when not nil).
func decodeBlock(payload []byte, npairs, nattrs int, keep func(blockInfo) bool, p *columns, obs flow.Seqs) (bool, error) {
	r := &dec{b: payload}
	info := readBlockInfo(r)
	n := r.count()
	base := r.i()
	kept := keep(info)
	var rels []rel
	for range n {
		startUs := base + r.i()
		endUs := startUs + int64(r.u())
		x := row{start: startUs * 1000, end: endUs * 1000, idms: startUs/1000 + r.i(), idn: r.u64()}
		x.pair, x.attr = r.id(npairs), r.id(nattrs)
		x.sport = uint16(r.u())
		for i := range x.n {
			x.n[i] = r.u()
		}
		rels = rels[:0]
		for range r.count() {
			rels = append(rels, rel{idms: startUs/1000 + r.i(), idn: r.u64(), reason: r.byte1()})
		}
		if r.err != nil {
			return false, r.err
		}
		if kept {
			p.addRow(x, rels)
		}
	}
	if kept && info.repl {
		p.repl += n
	}
	if kept && obs != nil {
		decodeSeqs(r, obs)
	}
	return kept, r.err
}

// blockTxn reads only a block's transaction header.
func blockTxn(payload []byte) blockInfo { return readBlockInfo(&dec{b: payload}) }

// replFlag marks, in a block's parts count, a block of replacements: its
// records replace the earlier records of the same flows in the segment.
// (A reader that does not know the flag sees an incomplete transaction
// and ignores the block.)
const replFlag = 1 << 20

func readBlockInfo(r *dec) blockInfo {
	bi := blockInfo{txn: r.u(), part: int(r.u())}
	parts := r.u()
	bi.repl = parts&replFlag != 0
	bi.parts = int(parts &^ replFlag)
	return bi
}

// markDead returns the rows of chunks that a later row of the same flow
// replaces.
func markDead(chunks []*columns) bitset {
	last := map[[2]uint64]uint32{}
	for ci, c := range chunks {
		for i := range c.idn {
			last[[2]uint64{uint64(c.idms[i]), c.idn[i]}] = uint32(ci<<chunkBits | i)
		}
	}
	var dead bitset
	for ci, c := range chunks {
		for i := range c.idn {
			if g := uint32(ci<<chunkBits | i); last[[2]uint64{uint64(c.idms[i]), c.idn[i]}] != g {
				dead.set(g)
			}
		}
	}
	return dead
}

// segBounds are a segment's time bounds (unix ns).
type segBounds struct{ minStart, maxStart, maxEnd int64 }

func (s *segment) bounds() segBounds {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return segBounds{s.minStart, s.maxStart, s.maxEnd}
}

// rows counts the records of a snapshot.
func rows(cs []columns) int {
	n := 0
	for i := range cs {
		n += cs[i].len()
	}
	return n
}

// view is a consistent snapshot of the dictionaries (and of one segment's
// columns when c is set) for reading without locks.
type view struct {
	cs    []chunk  // the segment's chunks
	dead  bitset   // rows replaced by a later version
	cf    *colFile // when cs are a column file's (in place)
	c     *chunk   // the chunk being scanned
	eps   []flow.Endpoint
	pairs []pair
	attrs []attr
	pss   [][]flow.ObservationPoint
	strs  []string
}

// view takes the dictionaries; the columns are set per segment.
func (d *dict) view() *view {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return &view{eps: d.eps, pairs: d.pairs, attrs: d.attrs, pss: d.pss, strs: d.strs}
}

// fillPair sets the pair-class fields of f.
func (v *view) fillPair(f *flow.Flow, pid uint32) {
	p := v.pairs[pid]
	f.Src = v.eps[p.src]
	f.Dst = v.eps[p.dst]
	f.Proto = v.strs[p.proto]
	f.Dst.Port = p.dport
}

// fillAttr sets the attribute-class fields of f.
func (v *view) fillAttr(f *flow.Flow, aid uint32) {
	a := v.attrs[aid]
	f.Mode = v.strs[a.mode]
	f.Tunnel = v.strs[a.tunnel]
	f.Points = v.pss[a.ps]
	f.Flags = f.Flags[:0]
	for i, name := range flagBits {
		if a.flags&(1<<i) != 0 {
			f.Flags = append(f.Flags, name)
		}
	}
	f.Replied = a.flags&repliedBit != 0
	f.Related = f.Related[:0]
	for i, r := range flow.Reasons {
		if a.reasons&(1<<i) != 0 {
			// Reason only: the related IDs are filled by fill.
			f.Related = append(f.Related, flow.Related{Reason: r})
		}
	}
}

// fill materializes record i entirely.
func (v *view) fill(f *flow.Flow, i int) { v.fillRecord(f, i, fillNeed{true, true, true}, true) }

// at selects the chunk of global record index g and returns g's index in it.
func (v *view) at(g int) int {
	v.c = &v.cs[g>>chunkBits]
	return g & (chunkRows - 1)
}

// fillNeed says which dictionary-level parts of a flow a fill must set.
type fillNeed struct{ pair, attr, times bool }

// fillRecord materializes record i of the current chunk; without ids,
// the flow's ID and its related flows' IDs are left empty (they cost
// most).
func (v *view) fillRecord(f *flow.Flow, i int, need fillNeed, ids bool) {
	v.fillChunk(f, v.c, i, need, ids)
}

func reasonName(bit uint8) string {
	for i, r := range flow.Reasons {
		if bit == 1<<i {
			return r
		}
	}
	return ""
}

// flowAt returns a fresh, caller-owned copy of record g (global index).
func (v *view) flowAt(g int) flow.Flow {
	var f flow.Flow
	v.fill(&f, v.at(g))
	f.Points = slices.Clone(f.Points)
	f.Src.Labels = cloneMap(f.Src.Labels)
	f.Dst.Labels = cloneMap(f.Dst.Labels)
	return f
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// rollback forgets the entries added since m (their write failed).
func (d *dict) rollback(m dictMark) {
	for _, v := range d.strs[m.str:] {
		delete(d.strID, v)
	}
	d.recent = [4]recentStr{}
	d.epIdent = identCache{}
	d.attrCache = [len(d.attrCache)]attrCacheEntry{}
	for _, a := range d.attrs[m.attr:] {
		delete(d.attrID, a)
	}
	d.mu.Lock()
	d.strs, d.eps, d.pss = d.strs[:m.str], d.eps[:m.ep], d.pss[:m.ps]
	d.pairs, d.attrs = d.pairs[:m.pair], d.attrs[:m.attr]
	d.mu.Unlock()
	d.reindex()
}
