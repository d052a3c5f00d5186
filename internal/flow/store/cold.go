package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/bits"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Cold segments. A segment whose partition ended more than the hot window
// (Options.HotWindow) ago keeps only a summary in memory: its time range,
// its row count and which endpoint pairs, attribute combinations and
// source ports its records use (bit sets over the store's dictionary IDs).
// A query evaluates its filter once per dictionary entry anyway, so it
// knows which pairs, attribute combinations and ports can match, and skips
// every cold segment whose summary shares none with them without reading
// it. The others are read from their file, decoded into columns for the
// query and kept in a small cache (Options.ColdCacheBytes). The summary
// is also written beside the segment (seg-N.sum) so that reopening a store
// reads summaries, not segments.

// bitset is a set of small integers.
type bitset []uint64

func (b *bitset) set(i uint32) {
	w := int(i >> 6)
	if w >= len(*b) {
		*b = append(*b, make([]uint64, w+1-len(*b))...)
	}
	(*b)[w] |= 1 << (i & 63)
}

func (b bitset) has(i uint32) bool {
	w := int(i >> 6)
	return w < len(b) && b[w]&(1<<(i&63)) != 0
}

// intersects reports whether b and o share an element.
func (b bitset) intersects(o bitset) bool {
	for i := range min(len(b), len(o)) {
		if b[i]&o[i] != 0 {
			return true
		}
	}
	return false
}

// any reports whether b holds an element ≥ n.
func (b bitset) any(n int) bool {
	w := n >> 6
	if w >= len(b) {
		return false
	}
	if b[w]>>(uint(n)&63) != 0 {
		return true
	}
	for _, x := range b[w+1:] {
		if x != 0 {
			return true
		}
	}
	return false
}

func (b bitset) count() int {
	n := 0
	for _, x := range b {
		n += bits.OnesCount64(x)
	}
	return n
}

// summary is what a segment keeps resident about its records.
type summary struct {
	rows   int
	pairs  bitset // pair IDs used
	attrs  bitset // attribute combination IDs used
	sports bitset // source ports used
	rels   int    // related links, for the size of a decoded segment
	repl   int    // rows replacing an earlier version (dead rows as many)
}

func (m *summary) add(p *columns) {
	m.rows += p.len()
	m.rels += len(p.rels)
	m.repl += p.repl
	for _, x := range p.pair {
		m.pairs.set(x)
	}
	for _, x := range p.attr {
		m.attrs.set(x)
	}
	for _, x := range p.sport {
		m.sports.set(uint32(x))
	}
}

func (m *summary) clone() summary {
	return summary{rows: m.rows, rels: m.rels, repl: m.repl, pairs: append(bitset(nil), m.pairs...),
		attrs: append(bitset(nil), m.attrs...), sports: append(bitset(nil), m.sports...)}
}

// decodedBytes estimates the heap a segment's decoded columns take.
func (m *summary) decodedBytes() int64 {
	return int64(m.rows)*90 + int64(m.rels)*24
}

const sumSuffix = ".sum"

func (s *Store) sumPath(bucket int64) string {
	return s.segPath(bucket)[:len(s.segPath(bucket))-len(segSuffix)] + sumSuffix
}

// writeSummary writes seg's summary beside it. Caller holds wmu, and has
// saved the done set since the segment's last commit: the agent records of
// the blocks a summary covers are not read again at open.
func (s *Store) writeSummary(seg *segment) error {
	seg.mu.RLock()
	var e enc
	e.u(3) // version
	e.u(uint64(seg.committed))
	e.u(s.txn)
	e.u(seg.txnLo)
	e.u(seg.txnHi)
	e.u(uint64(seg.sum.rows))
	e.u(uint64(seg.sum.rels))
	e.u(uint64(seg.sum.repl))
	e.i(seg.minStart)
	e.i(seg.maxStart)
	e.i(seg.maxEnd)
	for _, b := range []bitset{seg.sum.pairs, seg.sum.attrs, seg.sum.sports} {
		e.u(uint64(len(b)))
		for _, w := range b {
			e.u64(w)
		}
	}
	size := seg.committed
	seg.mu.RUnlock()
	path := s.sumPath(seg.bucket)
	tmp := path + ".tmp"
	// No fsync: a summary lost in a crash is rebuilt from the segment.
	if err := os.WriteFile(tmp, frame(e.b), 0o600); err != nil {
		return fmt.Errorf("flow store: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("flow store: %w", err)
	}
	seg.mu.Lock()
	seg.sumSize = size
	seg.mu.Unlock()
	return nil
}

// readSummary loads seg's summary file when it is whole and covers at
// most size bytes of the segment; it returns the bytes covered (0: none).
func (s *Store) readSummary(seg *segment, size int64, npairs, nattrs int) int64 {
	data, err := os.ReadFile(s.sumPath(seg.bucket))
	if err != nil {
		return 0
	}
	payload, _, ok := unframe(data)
	if !ok {
		return 0
	}
	r := &dec{b: payload}
	if r.u() != 3 {
		return 0
	}
	covered := int64(r.u())
	txn := r.u()
	txnLo, txnHi := r.u(), r.u()
	var m summary
	m.rows, m.rels, m.repl = int(r.u()), int(r.u()), int(r.u())
	minStart, maxStart, maxEnd := r.i(), r.i(), r.i()
	for _, b := range []*bitset{&m.pairs, &m.attrs, &m.sports} {
		n := r.count()
		*b = make(bitset, n)
		for i := range *b {
			(*b)[i] = r.u64()
		}
	}
	if r.err != nil || covered > size || covered <= 0 || m.pairs.any(npairs) || m.attrs.any(nattrs) {
		return 0
	}
	s.txn = max(s.txn, txn)
	seg.sum = m
	seg.minStart, seg.maxStart, seg.maxEnd = minStart, maxStart, maxEnd
	seg.sumSize = covered
	seg.txnLo, seg.txnHi = txnLo, txnHi
	return covered
}

// coldCache keeps the decoded columns of the cold segments read last, up
// to a byte budget.
type coldCache struct {
	mu   sync.Mutex
	max  int64
	used int64
	tick uint64
	m    map[*segment]*coldEntry
}

type coldEntry struct {
	size  int64 // the segment's committed length decoded
	cs    []columns
	dead  bitset
	bytes int64
	last  uint64
	at    time.Time // last use
}

func (c *coldCache) get(seg *segment, size int64) (*coldEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[seg]
	if e == nil || e.size != size {
		return nil, false
	}
	c.tick++
	e.last, e.at = c.tick, time.Now()
	return e, true
}

func (c *coldCache) put(seg *segment, size int64, e *coldEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	bytes := e.bytes
	if bytes > c.max {
		return
	}
	if c.m == nil {
		c.m = map[*segment]*coldEntry{}
	}
	if old := c.m[seg]; old != nil {
		c.used -= old.bytes
		delete(c.m, seg)
	}
	// Scan-resistant: a query scanning more cold segments than the cache
	// holds would otherwise evict each entry before the next query needs
	// it. Entries used in the last minute stay; a newcomer that finds no
	// room among the others is not kept.
	now := time.Now()
	for c.used+bytes > c.max {
		var lru *segment
		for k, e := range c.m {
			if lru == nil || e.last < c.m[lru].last {
				lru = k
			}
		}
		if lru == nil || now.Sub(c.m[lru].at) < time.Minute {
			return
		}
		c.used -= c.m[lru].bytes
		delete(c.m, lru)
	}
	c.tick++
	e.size, e.last, e.at = size, c.tick, now
	c.m[seg] = e
	c.used += bytes
}

func (c *coldCache) drop(seg *segment) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.m[seg]; e != nil {
		c.used -= e.bytes
		delete(c.m, seg)
	}
}

func (c *coldCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m, c.used = nil, 0
}

// columnsOf returns seg's records as columns: its chunks when hot; when
// cold, the columns of its column file in place (with the columns of mask
// checked: others may be read only at rows cf.verifyRow checked), else
// decoded from its row file (through the cache; cf is then nil). A cold
// segment whose row file has damaged blocks yields the whole ones; the
// damage is logged and the file repaired by the next retention pass.
func (s *Store) columnsOf(seg *segment, mask colMask) ([]chunk, bitset, *colFile) {
	seg.mu.RLock()
	if !seg.cold {
		cs, dead := seg.snapshot()
		seg.mu.RUnlock()
		return chunksOf(cs), dead, nil
	}
	size := seg.committed
	cf, lazy := seg.col, seg.colLazy
	seg.mu.RUnlock()
	if lazy {
		cf = s.openCol(seg)
	}
	s.coldReads.Add(1)
	if cf != nil && cf.covered == size {
		if cf.verifyCols(mask) {
			return cf.cs, cf.dead, cf
		}
		s.noteColDamaged(cf)
	}
	if e, ok := s.cold.get(seg, size); ok {
		return chunksOf(e.cs), e.dead, nil
	}
	cs, dead, est := s.decodeRows(seg, size)
	s.cold.put(seg, size, &coldEntry{cs: cs, dead: dead, bytes: est})
	return chunksOf(cs), dead, nil
}

// snapshot returns a hot segment's chunks as they are now (the lengths
// its readers may use). Caller holds seg.mu.
func (seg *segment) snapshot() ([]columns, bitset) {
	cs := make([]columns, len(seg.chunks))
	for i, c := range seg.chunks {
		cs[i] = *c
	}
	return cs, seg.dead
}

// noteColDamaged logs a damaged column file once; queries read the
// segment's row file instead, and the next retention pass moves the
// column file aside and writes it again.
func (s *Store) noteColDamaged(cf *colFile) {
	cf.bad.Store(true)
	s.dmu.Lock()
	defer s.dmu.Unlock()
	if s.colDamaged == nil {
		s.colDamaged = map[*colFile]bool{}
	}
	if !s.colDamaged[cf] {
		s.colDamaged[cf] = true
		s.log.Error("flow store: damaged page in a column file; reading the segment's row file instead, rewriting the column file at the next retention pass", "file", cf.path)
	}
}

// decodeRows decodes seg's row file (its first size bytes) into columns
// and marks the rows replaced by later ones; est is the heap they take.
func (s *Store) decodeRows(seg *segment, size int64) (cs []columns, dead bitset, est int64) {
	seg.mu.RLock()
	est, repl, rows := seg.sum.decodedBytes(), seg.sum.repl, seg.sum.rows
	seg.mu.RUnlock()
	data, err := readPrefix(seg.path, size)
	if err != nil {
		s.log.Error("flow store: reading a cold segment", "file", seg.path, "err", err)
		return nil, nil, 0
	}
	v := s.dict.view()
	skip := s.skipSnapshot()
	// Decoded in place into columns sized from the summary, then cut into
	// chunks without copying.
	var all columns
	all.grow(rows)
	all.relOff = append(all.relOff, 0)
	bad, tail := frames(data, func(_ int, payload []byte, _ int) {
		n0, r0 := all.len(), len(all.rels)
		if _, err := decodeBlock(payload, len(v.pairs), len(v.attrs), func(bi blockInfo) bool { return !skip[bi.txn] }, &all, nil); err != nil {
			all.truncate(n0, r0)
			s.noteDamaged(seg, err)
		}
	})
	if len(bad) > 0 || tail < len(data) {
		s.noteDamaged(seg, errCorrupt)
	}
	cs = all.split()
	if repl > 0 {
		ptrs := make([]*columns, len(cs))
		for i := range cs {
			ptrs[i] = &cs[i]
		}
		dead = markDead(ptrs)
	}
	return cs, dead, est
}

// truncate cuts c back to n rows and r related links.
func (c *columns) truncate(n, r int) {
	c.start, c.end, c.idms, c.idn = c.start[:n], c.end[:n], c.idms[:n], c.idn[:n]
	c.pair, c.attr, c.sport = c.pair[:n], c.attr[:n], c.sport[:n]
	c.fwdP, c.fwdB, c.revP, c.revB, c.conns = c.fwdP[:n], c.fwdB[:n], c.revP[:n], c.revB[:n], c.conns[:n]
	c.relOff, c.rels = c.relOff[:n+1], c.rels[:r]
}

// split cuts c into chunks of chunkRows rows sharing its memory (each
// chunk's relOff index the whole rels).
func (c *columns) split() []columns {
	var out []columns
	for lo := 0; lo < c.len(); lo += chunkRows {
		hi := min(c.len(), lo+chunkRows)
		out = append(out, columns{
			start: c.start[lo:hi:hi], end: c.end[lo:hi:hi], idms: c.idms[lo:hi:hi], idn: c.idn[lo:hi:hi],
			pair: c.pair[lo:hi:hi], attr: c.attr[lo:hi:hi], sport: c.sport[lo:hi:hi],
			fwdP: c.fwdP[lo:hi:hi], fwdB: c.fwdB[lo:hi:hi], revP: c.revP[lo:hi:hi], revB: c.revB[lo:hi:hi],
			conns: c.conns[lo:hi:hi], relOff: c.relOff[lo : hi+1 : hi+1], rels: c.rels[:len(c.rels):len(c.rels)],
		})
	}
	return out
}

// noteDamaged records that seg's file has a damaged block, once.
func (s *Store) noteDamaged(seg *segment, err error) {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	if s.damaged == nil {
		s.damaged = map[*segment]bool{}
	}
	if !s.damaged[seg] {
		s.damaged[seg] = true
		s.log.Error("flow store: damaged block in a segment; serving its whole blocks, repairing it at the next retention pass", "file", seg.path, "err", err)
	}
}

func readPrefix(path string, size int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data := make([]byte, size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, err
	}
	return data, nil
}

func (c *columns) reset() {
	c.start, c.end, c.idms, c.idn = c.start[:0], c.end[:0], c.idms[:0], c.idn[:0]
	c.pair, c.attr, c.sport = c.pair[:0], c.attr[:0], c.sport[:0]
	c.fwdP, c.fwdB, c.revP, c.revB, c.conns = c.fwdP[:0], c.fwdB[:0], c.revP[:0], c.revB[:0], c.conns[:0]
	c.relOff, c.rels = c.relOff[:0], c.rels[:0]
	c.repl = 0
}

// evict makes the segments whose partition ended before now-HotWindow
// cold: their summaries and column files are written and their columns
// dropped. It also writes the column files cold segments lack (written
// before the column format, made stale by a late flow or a repair, or
// damaged), a few per pass. Caller holds wmu.
func (s *Store) evict(now time.Time) {
	edge := now.Add(-s.opts.HotWindow).UnixNano()
	part := s.opts.Partition.Nanoseconds()
	s.mu.RLock()
	segs := s.sorted(false)
	s.mu.RUnlock()
	var todo []*segment
	for _, seg := range segs {
		seg.mu.RLock()
		stale := seg.committed > 0 && seg.sumSize != seg.committed
		cold := seg.cold
		noCol := seg.committed > 0 && !colCurrent(seg)
		seg.mu.RUnlock()
		if !cold && seg.bucket+part <= edge || cold && (stale || noCol) {
			todo = append(todo, seg)
		}
	}
	if len(todo) == 0 {
		return
	}
	if err := s.saveDone(); err != nil {
		s.log.Error("flow store: eviction skipped", "err", err)
		return
	}
	converted, left := 0, 0
	for _, seg := range todo {
		seg.mu.RLock()
		stale, cold := seg.sumSize != seg.committed, seg.cold
		seg.mu.RUnlock()
		if !cold || stale {
			if err := s.writeSummary(seg); err != nil {
				s.log.Error("flow store: eviction", "err", err)
				continue
			}
		}
		seg.mu.RLock()
		need := seg.committed > 0 && !colCurrent(seg)
		seg.mu.RUnlock()
		if need && littleEndian {
			if cold && converted >= convertsPerPass {
				left++
			} else {
				if cold {
					converted++
				}
				s.writeColumns(seg)
			}
		}
		seg.mu.Lock()
		seg.cold, seg.chunks, seg.dead = true, nil, nil
		seg.mu.Unlock()
	}
	if converted > 0 {
		s.log.Info("flow store: wrote the column files of cold segments read from their row files (older format, late flows, repairs)", "segments", converted, "left", left)
	}
}

// convertsPerPass bounds the column files a retention pass makes from
// row files (≈ 15 ms of CPU each for 100,000 flows), so a store of an
// older format is converted over a few passes without holding up ingest.
const convertsPerPass = 16

// colCurrent reports whether seg has a sound column file covering all of
// its row file (or one not opened yet, presumed so). Caller holds seg.mu.
func colCurrent(seg *segment) bool {
	return seg.colLazy || seg.col != nil && seg.col.covered == seg.committed && !seg.col.bad.Load()
}

// openCol opens the column file a cold segment had on disk at start; one
// that does not cover its row file or names dictionary entries beyond the
// dictionary is left for a retention pass to write again.
func (s *Store) openCol(seg *segment) *colFile {
	v := s.dict.view()
	seg.mu.Lock()
	defer seg.mu.Unlock()
	if !seg.colLazy {
		return seg.col
	}
	seg.colLazy = false
	path := s.colPath(seg.bucket)
	cf, err := openColFile(path)
	switch {
	case errors.Is(err, errColVersion):
		s.noteColVersion(path)
		return nil
	case err != nil:
		s.log.Warn("flow store: column file unreadable; reading the segment's row file until a retention pass writes it again", "file", path, "err", err)
		return nil
	case cf.covered != seg.committed || cf.npairs > len(v.pairs) || cf.nattrs > len(v.attrs):
		cf.unmap()
		return nil
	}
	seg.col = cf
	return cf
}

// colProbesPerPass bounds the column files a retention pass checks the
// version of (a read of a few bytes each).
const colProbesPerPass = 256

// probeCols reads the version of the column files that cold segments
// had on disk at start and no query opened yet (a few per pass): one of
// another version (written by an older release) is treated as absent, so
// that this and the next passes write it again. A query that opens one
// first does the same. Caller holds wmu.
func (s *Store) probeCols() {
	s.mu.RLock()
	segs := s.sorted(false)
	s.mu.RUnlock()
	probed := 0
	for _, seg := range segs {
		if probed == colProbesPerPass {
			return
		}
		seg.mu.RLock()
		probe := seg.cold && seg.colLazy && !seg.colProbed
		seg.mu.RUnlock()
		if !probe {
			continue
		}
		probed++
		path := s.colPath(seg.bucket)
		v := colFileVersion(path)
		seg.mu.Lock()
		seg.colProbed = true
		old := v != colVersion && seg.colLazy
		if old {
			seg.colLazy = false
		}
		seg.mu.Unlock()
		if old {
			s.noteColVersion(path)
		}
	}
}

// noteColVersion logs, once, that column files of another version were
// found.
func (s *Store) noteColVersion(path string) {
	if s.colVersionSeen.CompareAndSwap(false, true) {
		s.log.Info("flow store: column files of another version (an older release): the segments are read from their row files until retention passes write them again", "first", path, "perPass", convertsPerPass)
	}
}

// writeColumns writes seg's column file, from its chunks when hot, else
// from its row file, moving a damaged one aside first. Caller holds wmu.
func (s *Store) writeColumns(seg *segment) {
	seg.mu.RLock()
	size, hot, old := seg.committed, !seg.cold, seg.col
	var cs []columns
	var dead bitset
	if hot {
		cs, dead = seg.snapshot()
	}
	seg.mu.RUnlock()
	if old != nil && old.bad.Load() {
		if err := s.moveAside(old.path, "damaged page in a column file (found by a query)"); err != nil {
			s.log.Error("flow store: column file", "err", err)
		}
	}
	if !hot {
		cs, dead, _ = s.decodeRows(seg, size)
	}
	cf, err := s.writeColFile(seg.bucket, cs, dead, size, "")
	if err != nil {
		s.log.Error("flow store: writing a column file; the segment is read from its row file", "file", s.colPath(seg.bucket), "err", err)
		return
	}
	seg.mu.Lock()
	seg.col, seg.colSize, seg.colLazy = cf, cf.size, false
	seg.mu.Unlock()
	if old != nil {
		s.retire(old)
		s.dmu.Lock()
		delete(s.colDamaged, old)
		s.dmu.Unlock()
	}
}

// retire unmaps a column file no query will read again, once no query
// runs (queries hold gen while they read mapped columns).
func (s *Store) retire(cf *colFile) {
	s.mu.Lock()
	s.retired = append(s.retired, cf)
	s.mu.Unlock()
}

// unmapRetired unmaps the retired column files if no query runs now
// (else a later call does). With locked, the caller holds gen.
func (s *Store) unmapRetired(locked bool) {
	if !locked {
		if !s.gen.TryLock() {
			return
		}
		defer s.gen.Unlock()
	}
	s.mu.Lock()
	todo := s.retired
	s.retired = nil
	s.mu.Unlock()
	for _, cf := range todo {
		cf.unmap()
	}
}

// moveAside moves a damaged file into the store's damaged/ directory,
// keeping it for inspection, and logs it.
func (s *Store) moveAside(path, why string) error {
	dir := filepath.Join(s.dir, "damaged")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("flow store: %w", err)
	}
	dst := filepath.Join(dir, fmt.Sprintf("%s.%d", filepath.Base(path), time.Now().UnixNano()))
	if err := os.Rename(path, dst); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("flow store: moving %s aside: %w", path, err)
	}
	s.log.Warn("flow store: moved a damaged file aside", "file", path, "to", dst, "why", why)
	return nil
}

// rewrite replaces path's contents with data (atomically), after moving the
// original aside.
func (s *Store) rewrite(path string, data []byte, why string) error {
	tmp := path + ".repair"
	if err := writeSync(tmp, data); err != nil {
		return fmt.Errorf("flow store: %w", err)
	}
	if err := s.moveAside(path, why); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("flow store: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// skipSnapshot returns the set of transactions whose blocks are ignored.
func (s *Store) skipSnapshot() map[uint64]bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.skip
}
