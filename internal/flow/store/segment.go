package store

import (
	"os"
	"slices"
	"sync"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/inventory"
)

// segment is one time partition: the flows starting in
// [bucket, bucket+partition), in one append-only file, held in memory as
// columns. Dictionaries make the columns small and let a search evaluate
// its filter once per distinct endpoint pair (or attribute combination)
// instead of once per flow.
type segment struct {
	bucket int64 // partition start, unix ns
	path   string
	file   *os.File
	size   int64

	// mu guards the columns' lengths: writers append under it, readers
	// take a snapshot of the slices under it and read without it (the
	// prefix a snapshot covers is never written again).
	mu       sync.RWMutex
	minStart int64
	maxStart int64
	maxEnd   int64

	// Dictionaries: the position is the ID. The maps are the writer's.
	strs   []string
	strID  map[string]uint32
	eps    []flow.Endpoint // without Port
	epID   map[string]uint32
	pss    [][]flow.ObservationPoint
	psID   map[string]uint32
	pairs  []pair
	pairID map[pair]uint32
	attrs  []attr
	attrID map[attr]uint32

	cols columns
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
}

func (c *columns) len() int { return len(c.start) }

func newSegment(bucket int64, path string) *segment {
	s := &segment{bucket: bucket, path: path, minStart: 1<<63 - 1, maxStart: -1 << 63, maxEnd: -1 << 63}
	s.strID = map[string]uint32{}
	s.epID = map[string]uint32{}
	s.psID = map[string]uint32{}
	s.pairID = map[pair]uint32{}
	s.attrID = map[attr]uint32{}
	s.cols.relOff = []uint32{0}
	s.str("") // ID 0 is the empty string
	return s
}

// blockWriter encodes flows into one block, adding to the segment's
// dictionaries as it goes; the entries it added go first in the block.
type blockWriter struct {
	s                            *segment
	nStr, nEp, nPs, nPair, nAttr int // dictionary sizes before this block
	key                          []byte
	recs                         enc
	nrec                         int
	base                         int64 // µs
	labelKeys                    []string
}

func (s *segment) writer() *blockWriter {
	return &blockWriter{s: s, nStr: len(s.strs), nEp: len(s.eps), nPs: len(s.pss), nPair: len(s.pairs), nAttr: len(s.attrs)}
}

func (s *segment) str(v string) uint32 {
	if id, ok := s.strID[v]; ok {
		return id
	}
	id := uint32(len(s.strs))
	s.mu.Lock()
	s.strs = append(s.strs, v)
	s.mu.Unlock()
	s.strID[v] = id
	return id
}

// endpointKey appends the dictionary key of e (without its port) to k;
// keys is scratch space and holds e's sorted label keys afterwards.
func endpointKey(k []byte, e *flow.Endpoint, keys []string) ([]byte, []string) {
	for _, v := range [...]string{e.IP, e.Workload, e.Kind, e.Name, e.Namespace, e.Service, e.Node} {
		k = append(k, v...)
		k = append(k, 0)
	}
	if e.Owner != nil {
		k = append(k, 1)
		k = append(k, e.Owner.Kind...)
		k = append(k, 0)
		k = append(k, e.Owner.Name...)
		k = append(k, 0)
	}
	keys = keys[:0]
	for lk := range e.Labels {
		keys = append(keys, lk)
	}
	slices.Sort(keys)
	for _, lk := range keys {
		k = append(k, 2)
		k = append(k, lk...)
		k = append(k, 0)
		k = append(k, e.Labels[lk]...)
		k = append(k, 0)
	}
	return k, keys
}

func pointsKey(k []byte, ps []flow.ObservationPoint) []byte {
	for _, p := range ps {
		for _, v := range [...]string{p.Node, p.Interface, p.Kind, p.Pod} {
			k = append(k, v...)
			k = append(k, 0)
		}
	}
	return k
}

// reindex rebuilds the writer's endpoint and point-set maps after a load.
func (s *segment) reindex() {
	var k []byte
	var keys []string
	for i := range s.eps {
		k, keys = endpointKey(k[:0], &s.eps[i], keys)
		s.epID[string(k)] = uint32(i)
	}
	for i, ps := range s.pss {
		s.psID[string(pointsKey(k[:0], ps))] = uint32(i)
	}
}

func (w *blockWriter) endpoint(e *flow.Endpoint) uint32 {
	var k []byte
	k, w.labelKeys = endpointKey(w.key[:0], e, w.labelKeys)
	w.key = k
	s := w.s
	if id, ok := s.epID[string(k)]; ok {
		return id
	}
	ep := *e
	ep.Port = 0
	if len(ep.Labels) > 0 {
		ep.Labels = make(map[string]string, len(e.Labels))
		for _, lk := range w.labelKeys {
			ep.Labels[s.strs[s.str(lk)]] = s.strs[s.str(e.Labels[lk])]
		}
	}
	for _, v := range [...]*string{&ep.IP, &ep.Workload, &ep.Kind, &ep.Name, &ep.Namespace, &ep.Service, &ep.Node} {
		*v = s.strs[s.str(*v)]
	}
	if e.Owner != nil {
		ep.Owner = &inventory.Owner{Kind: s.strs[s.str(e.Owner.Kind)], Name: s.strs[s.str(e.Owner.Name)]}
	}
	id := uint32(len(s.eps))
	s.mu.Lock()
	s.eps = append(s.eps, ep)
	s.mu.Unlock()
	s.epID[string(k)] = id
	return id
}

func (w *blockWriter) points(ps []flow.ObservationPoint) uint32 {
	k := pointsKey(w.key[:0], ps)
	w.key = k
	s := w.s
	if id, ok := s.psID[string(k)]; ok {
		return id
	}
	cp := make([]flow.ObservationPoint, len(ps))
	for i, p := range ps {
		cp[i] = flow.ObservationPoint{Node: s.strs[s.str(p.Node)], Interface: s.strs[s.str(p.Interface)],
			Kind: s.strs[s.str(p.Kind)], Pod: s.strs[s.str(p.Pod)]}
	}
	id := uint32(len(s.pss))
	s.mu.Lock()
	s.pss = append(s.pss, cp)
	s.mu.Unlock()
	s.psID[string(k)] = id
	return id
}

func (w *blockWriter) pairOf(p pair) uint32 {
	if id, ok := w.s.pairID[p]; ok {
		return id
	}
	id := uint32(len(w.s.pairs))
	w.s.mu.Lock()
	w.s.pairs = append(w.s.pairs, p)
	w.s.mu.Unlock()
	w.s.pairID[p] = id
	return id
}

func (w *blockWriter) attrOf(a attr) uint32 {
	if id, ok := w.s.attrID[a]; ok {
		return id
	}
	id := uint32(len(w.s.attrs))
	w.s.mu.Lock()
	w.s.attrs = append(w.s.attrs, a)
	w.s.mu.Unlock()
	w.s.attrID[a] = id
	return id
}

func flagsOf(f *flow.Flow) uint8 {
	var b uint8
	for i, name := range flagBits {
		if f.HasFlag(name) {
			b |= 1 << i
		}
	}
	if f.Replied {
		b |= repliedBit
	}
	return b
}

// add encodes f (its ID and related IDs already validated).
func (w *blockWriter) add(f *flow.Flow, idms int64, idn uint64, rels []rel) {
	s := w.s
	p := pair{src: w.endpoint(&f.Src), dst: w.endpoint(&f.Dst), proto: s.str(f.Proto), dport: f.Dst.Port}
	var reasons uint8
	for _, r := range rels {
		reasons |= r.reason
	}
	a := attr{mode: s.str(f.Mode), tunnel: s.str(f.Tunnel), ps: w.points(f.Points), flags: flagsOf(f), reasons: reasons}
	pid, aid := w.pairOf(p), w.attrOf(a)

	startUs, endUs := f.Start.UnixMicro(), f.End.UnixMicro()
	if w.nrec == 0 {
		w.base = startUs
	}
	w.nrec++
	r := &w.recs
	r.i(startUs - w.base)
	r.u(uint64(max(endUs-startUs, 0)))
	r.i(idms - startUs/1000)
	r.u64(idn)
	r.ids(pid, aid)
	r.u(uint64(f.Src.Port))
	r.u(f.FwdPackets)
	r.u(f.FwdBytes)
	r.u(f.RevPackets)
	r.u(f.RevBytes)
	r.u(f.Conns)
	r.u(uint64(len(rels)))
	for _, x := range rels {
		r.i(x.idms - startUs/1000)
		r.u64(x.idn)
		r.byte1(x.reason)
	}
	w.s.appendRecord(startUs*1000, max(endUs, startUs)*1000, idms, idn, pid, aid, f.Src.Port,
		[5]uint64{f.FwdPackets, f.FwdBytes, f.RevPackets, f.RevBytes, f.Conns}, rels)
}

func (s *segment) appendRecord(start, end, idms int64, idn uint64, pid, aid uint32, sport uint16, n [5]uint64, rels []rel) {
	s.mu.Lock()
	c := &s.cols
	c.start = append(c.start, start)
	c.end = append(c.end, end)
	c.idms = append(c.idms, idms)
	c.idn = append(c.idn, idn)
	c.pair = append(c.pair, pid)
	c.attr = append(c.attr, aid)
	c.sport = append(c.sport, sport)
	c.fwdP = append(c.fwdP, n[0])
	c.fwdB = append(c.fwdB, n[1])
	c.revP = append(c.revP, n[2])
	c.revB = append(c.revB, n[3])
	c.conns = append(c.conns, n[4])
	c.rels = append(c.rels, rels...)
	c.relOff = append(c.relOff, uint32(len(c.rels)))
	s.minStart = min(s.minStart, start)
	s.maxStart = max(s.maxStart, start)
	s.maxEnd = max(s.maxEnd, end)
	s.mu.Unlock()
}

// block returns the encoded block: header fields, the dictionary entries
// added since the writer was made, the records, and the transaction part.
func (w *blockWriter) block(txn uint64, part, parts int, obs flow.Seqs) []byte {
	s := w.s
	var e enc
	e.b = make([]byte, 0, len(w.recs.b)+1024)
	e.u(txn)
	e.u(uint64(part))
	e.u(uint64(parts))
	e.u(uint64(len(s.strs) - w.nStr))
	for _, v := range s.strs[w.nStr:] {
		e.str(v)
	}
	e.u(uint64(len(s.eps) - w.nEp))
	for i := range s.eps[w.nEp:] {
		ep := &s.eps[w.nEp+i]
		e.ids(s.strID[ep.IP], s.strID[ep.Workload], s.strID[ep.Kind], s.strID[ep.Name], s.strID[ep.Namespace],
			s.strID[ep.Service], s.strID[ep.Node])
		if ep.Owner != nil {
			e.byte1(1)
			e.ids(s.strID[ep.Owner.Kind], s.strID[ep.Owner.Name])
		} else {
			e.byte1(0)
		}
		e.u(uint64(len(ep.Labels)))
		for k, v := range ep.Labels {
			e.ids(s.strID[k], s.strID[v])
		}
	}
	e.u(uint64(len(s.pss) - w.nPs))
	for _, ps := range s.pss[w.nPs:] {
		e.u(uint64(len(ps)))
		for _, p := range ps {
			e.ids(s.strID[p.Node], s.strID[p.Interface], s.strID[p.Kind], s.strID[p.Pod])
		}
	}
	e.u(uint64(len(s.pairs) - w.nPair))
	for _, p := range s.pairs[w.nPair:] {
		e.ids(p.src, p.dst, p.proto)
		e.u(uint64(p.dport))
	}
	e.u(uint64(len(s.attrs) - w.nAttr))
	for _, a := range s.attrs[w.nAttr:] {
		e.ids(a.mode, a.tunnel, a.ps)
		e.byte1(a.flags)
		e.byte1(a.reasons)
	}
	e.u(uint64(w.nrec))
	e.i(w.base)
	e.b = append(e.b, w.recs.b...)
	encodeSeqs(&e, obs)
	return frame(e.b)
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

// blockInfo is what load learns about a block before applying it.
type blockInfo struct {
	txn         uint64
	part, parts int
}

// apply decodes one block into the segment. Records are kept only when
// keep(txn) says the block's transaction completed; dictionary entries are
// kept always (later blocks refer to them). obs receives the block's
// agent records when kept.
func (s *segment) apply(payload []byte, keep func(blockInfo) bool, obs flow.Seqs) error {
	d := &dec{b: payload}
	info := blockInfo{txn: d.u(), part: int(d.u()), parts: int(d.u())}
	for range d.count() {
		v := d.str()
		if _, dup := s.strID[v]; !dup {
			s.strID[v] = uint32(len(s.strs))
		}
		s.strs = append(s.strs, v)
	}
	nstr := len(s.strs)
	sid := func() string { return s.strs[d.id(nstr)] }
	for range d.count() {
		ep := flow.Endpoint{IP: sid(), Workload: sid(), Kind: sid(), Name: sid(), Namespace: sid(), Service: sid(), Node: sid()}
		if d.byte1() == 1 {
			ep.Owner = &inventory.Owner{Kind: sid(), Name: sid()}
		}
		if n := d.count(); n > 0 {
			ep.Labels = make(map[string]string, n)
			for range n {
				k := sid()
				ep.Labels[k] = sid()
			}
		}
		s.eps = append(s.eps, ep)
	}
	for range d.count() {
		ps := make([]flow.ObservationPoint, d.count())
		for i := range ps {
			ps[i] = flow.ObservationPoint{Node: sid(), Interface: sid(), Kind: sid(), Pod: sid()}
		}
		s.pss = append(s.pss, ps)
	}
	for range d.count() {
		p := pair{src: d.id(len(s.eps)), dst: d.id(len(s.eps)), proto: d.id(nstr)}
		p.dport = uint16(d.u())
		s.pairID[p] = uint32(len(s.pairs))
		s.pairs = append(s.pairs, p)
	}
	for range d.count() {
		a := attr{mode: d.id(nstr), tunnel: d.id(nstr), ps: d.id(len(s.pss))}
		a.flags, a.reasons = d.byte1(), d.byte1()
		s.attrID[a] = uint32(len(s.attrs))
		s.attrs = append(s.attrs, a)
	}
	n := d.count()
	base := d.i()
	kept := keep(info)
	var rels []rel
	for range n {
		startUs := base + d.i()
		endUs := startUs + int64(d.u())
		idms := startUs/1000 + d.i()
		idn := d.u64()
		pid, aid := d.id(len(s.pairs)), d.id(len(s.attrs))
		sport := uint16(d.u())
		var c [5]uint64
		for i := range c {
			c[i] = d.u()
		}
		rels = rels[:0]
		for range d.count() {
			rels = append(rels, rel{idms: startUs/1000 + d.i(), idn: d.u64(), reason: d.byte1()})
		}
		if d.err != nil {
			return d.err
		}
		if kept {
			s.appendRecord(startUs*1000, endUs*1000, idms, idn, pid, aid, sport, c, rels)
		}
	}
	if kept {
		decodeSeqs(d, obs)
	}
	return d.err
}

// blockTxn reads only a block's transaction header.
func blockTxn(payload []byte) blockInfo {
	d := &dec{b: payload}
	return blockInfo{txn: d.u(), part: int(d.u()), parts: int(d.u())}
}

// snapshot returns the columns as they are now; safe to read without the
// lock afterwards.
func (s *segment) snapshot() (columns, int64, int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cols, s.minStart, s.maxEnd
}

// dicts returns the dictionaries as they are now (append-only, like the
// columns).
func (s *segment) dicts() (eps []flow.Endpoint, pairs []pair, attrs []attr, pss [][]flow.ObservationPoint, strs []string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.eps, s.pairs, s.attrs, s.pss, s.strs
}

// view materializes flows of a segment snapshot.
type view struct {
	c     columns
	eps   []flow.Endpoint
	pairs []pair
	attrs []attr
	pss   [][]flow.ObservationPoint
	strs  []string
}

func (s *segment) view() *view {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return &view{c: s.cols, eps: s.eps, pairs: s.pairs, attrs: s.attrs, pss: s.pss, strs: s.strs}
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
func (v *view) fill(f *flow.Flow, i int) {
	c := &v.c
	v.fillPair(f, c.pair[i])
	v.fillAttr(f, c.attr[i])
	f.Src.Port = c.sport[i]
	f.ID = flow.MakeID(time.UnixMilli(c.idms[i]), c.idn[i])
	f.Start = time.Unix(0, c.start[i]).UTC()
	f.End = time.Unix(0, c.end[i]).UTC()
	f.FwdPackets, f.FwdBytes = c.fwdP[i], c.fwdB[i]
	f.RevPackets, f.RevBytes = c.revP[i], c.revB[i]
	f.Conns = c.conns[i]
	rs := c.rels[c.relOff[i]:c.relOff[i+1]]
	f.Related = f.Related[:0]
	for _, r := range rs {
		f.Related = append(f.Related, flow.Related{ID: flow.MakeID(time.UnixMilli(r.idms), r.idn), Reason: reasonName(r.reason)})
	}
}

func reasonName(bit uint8) string {
	for i, r := range flow.Reasons {
		if bit == 1<<i {
			return r
		}
	}
	return ""
}

// flowAt returns a fresh, caller-owned copy of record i.
func (v *view) flowAt(i int) flow.Flow {
	var f flow.Flow
	v.fill(&f, i)
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
