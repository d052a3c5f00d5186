package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/palisade-dev/palisade/internal/flow"
)

// Dictionary compaction. The dictionaries only grow as flows arrive; once
// retention has dropped the segments that used a good share of their
// entries, the store rewrites them with only the entries some segment
// still uses (endpoints, strings, point sets of those pairs and attribute
// combinations), and every segment with its records renumbered.
//
// Crash safety: the new files are written beside the old ones
// (NAME.compact) and fsynced, summaries are removed, then a marker file
// (compact.commit) is made durable and the new files renamed over the old
// ones. Open finishes the renames when the marker exists and removes any
// NAME.compact file otherwise, so a crash leaves either the old store or
// the new one, never a mix: no acknowledged flow is lost, and the agent
// records stay done (the rewritten segments carry them).

const (
	compactSuffix = ".compact"
	compactMarker = "compact.commit"
)

// compactHook lets tests stop a compaction at a stage ("written",
// "marked") as a crash would.
var compactHook func(stage string) error

// compactIfWorth compacts when at least a quarter of the endpoint pairs or
// attribute combinations is no longer used by any segment. Caller holds
// wmu.
func (s *Store) compactIfWorth() error {
	pairs, attrs := s.used()
	v := s.dict.view()
	unused := len(v.pairs) - pairs.count() + len(v.attrs) - attrs.count()
	if unused == 0 || unused*4 < len(v.pairs)+len(v.attrs) {
		return nil
	}
	return s.compact()
}

// Compact rewrites the dictionaries with only the entries in use (see
// compactIfWorth, which retention calls).
func (s *Store) Compact() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.compact()
}

// used returns the pairs and attribute combinations some segment uses.
func (s *Store) used() (pairs, attrs bitset) {
	s.mu.RLock()
	segs := s.sorted(false)
	s.mu.RUnlock()
	for _, seg := range segs {
		seg.mu.RLock()
		pairs = or(pairs, seg.sum.pairs)
		attrs = or(attrs, seg.sum.attrs)
		seg.mu.RUnlock()
	}
	return pairs, attrs
}

func or(a, b bitset) bitset {
	for len(a) < len(b) {
		a = append(a, 0)
	}
	for i, w := range b {
		a[i] |= w
	}
	return a
}

func (s *Store) compact() error {
	pairs, attrs := s.used()
	old := s.dict
	v := old.view()
	nd := newDict(old.path)
	nd.mirrorPath = old.mirrorPath
	m0 := nd.mark()
	const none = ^uint32(0)
	pairMap := make([]uint32, len(v.pairs))
	for id, p := range v.pairs {
		pairMap[id] = none
		if pairs.has(uint32(id)) {
			np := pair{src: nd.endpointSlow(&v.eps[p.src]), dst: nd.endpointSlow(&v.eps[p.dst]), proto: nd.str(v.strs[p.proto]), dport: p.dport}
			pairMap[id] = nd.pair(np)
		}
	}
	attrMap := make([]uint32, len(v.attrs))
	for id, a := range v.attrs {
		attrMap[id] = none
		if attrs.has(uint32(id)) {
			na := attr{mode: nd.str(v.strs[a.mode]), tunnel: nd.str(v.strs[a.tunnel]), ps: nd.points(v.pss[a.ps]), flags: a.flags, reasons: a.reasons}
			attrMap[id] = nd.attr(na)
		}
	}
	dictData := nd.delta(m0)
	s.log.Info("flow store: compacting the dictionaries", "entries", old.entries(), "kept", nd.entries())

	s.mu.RLock()
	segs := s.sorted(false)
	skip := s.skip
	s.mu.RUnlock()
	// Summaries and column files name old IDs: gone before anything is
	// renamed (a cold segment's column file is replaced by its new one).
	for _, seg := range segs {
		for _, p := range []string{s.sumPath(seg.bucket), s.colPath(seg.bucket)} {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("flow store: %w", err)
			}
		}
		seg.mu.Lock()
		seg.sumSize = 0
		seg.mu.Unlock()
	}
	type rewritten struct {
		seg  *segment
		size int64
		ns   *segment // the new contents
	}
	var out []rewritten
	var written []string
	cleanup := func(err error) error {
		for _, p := range written {
			os.Remove(p)
		}
		return err
	}
	for _, seg := range segs {
		seg.mu.RLock()
		size, hot := seg.committed, !seg.cold
		seg.mu.RUnlock()
		data, err := readPrefix(seg.path, size)
		if err != nil {
			return cleanup(fmt.Errorf("flow store: compaction: %w", err))
		}
		var all columns
		obs := flow.Seqs{}
		var p columns
		var decodeErr error
		frames(data, func(_ int, payload []byte, _ int) {
			p.reset()
			kept, err := decodeBlock(payload, len(v.pairs), len(v.attrs), func(bi blockInfo) bool { return !skip[bi.txn] }, &p, obs)
			if err != nil {
				decodeErr = err
				return
			}
			if kept && p.len() > 0 {
				for i := range p.pair {
					p.pair[i], p.attr[i] = pairMap[p.pair[i]], attrMap[p.attr[i]]
				}
				all.appendCols(&p)
			}
		})
		if decodeErr != nil {
			return cleanup(fmt.Errorf("flow store: compaction: %s: %w", seg.path, decodeErr))
		}
		all = *all.live()
		// One block per chunk of records, each its own transaction; the
		// agent records go with the last.
		var file []byte
		ns := newSegment(seg.bucket, "")
		ns.cold = !hot
		for lo := 0; lo < all.len() || lo == 0; lo += chunkRows {
			hi := min(all.len(), lo+chunkRows)
			s.txn++
			ns.noteTxn(s.txn)
			var recs enc
			base := int64(0)
			if hi > lo {
				base = all.start[lo] / 1000
			}
			for i := lo; i < hi; i++ {
				x := row{all.start[i], all.end[i], all.idms[i], all.idn[i], all.pair[i], all.attr[i], all.sport[i],
					[5]uint64{all.fwdP[i], all.fwdB[i], all.revP[i], all.revB[i], all.conns[i]}}
				encodeRow(&recs, base, &x, all.end[i]/1000-all.start[i]/1000, all.rels[all.relOff[i]:all.relOff[i+1]])
			}
			e := enc{b: make([]byte, blockHeader)}
			e.u(s.txn)
			e.u(0)
			e.u(1)
			e.u(uint64(hi - lo))
			e.i(base)
			e.b = append(e.b, recs.b...)
			var o flow.Seqs
			if hi >= all.len() {
				o = obs
			}
			encodeSeqs(&e, o)
			frameInPlace(e.b)
			file = append(file, e.b...)
			if hi >= all.len() {
				break
			}
		}
		path := seg.path + compactSuffix
		if err := s.writeNew(path, file); err != nil {
			return cleanup(err)
		}
		written = append(written, path)
		if littleEndian && !hot {
			// The column file, renumbered too (renamed with the rest; a
			// hot segment's is written when it turns cold).
			if _, err := s.writeColFile(seg.bucket, all.split(), nil, int64(len(file)), compactSuffix); err != nil {
				return cleanup(err)
			}
			written = append(written, s.colPath(seg.bucket)+compactSuffix)
		}
		if all.len() > 0 {
			ns.appendRows(&all)
		}
		out = append(out, rewritten{seg, int64(len(file)), ns})
	}
	for _, p := range []string{old.path, old.mirrorPath} {
		if err := s.writeNew(p+compactSuffix, dictData); err != nil {
			return cleanup(err)
		}
		written = append(written, p+compactSuffix)
	}
	if compactHook != nil {
		if err := compactHook("written"); err != nil {
			return err // as a crash would: files left for Open to remove
		}
	}
	if err := s.writeNew(filepath.Join(s.dir, compactMarker), nil); err != nil {
		return cleanup(err)
	}
	if compactHook != nil {
		if err := compactHook("marked"); err != nil {
			return err // as a crash would: Open finishes the renames
		}
	}
	// From here the new store is the durable one.
	s.gen.Lock()
	defer s.gen.Unlock()
	if err := s.renameCompacted(); err != nil {
		return err
	}
	nf, err1 := openAppend(nd.path, int64(len(dictData)), false)
	nm, err2 := openAppend(nd.mirrorPath, int64(len(dictData)), false)
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	nd.file, nd.mirror, nd.size = nf, nm, int64(len(dictData))
	old.file.Close()
	old.mirror.Close()
	s.mu.Lock()
	s.dict = nd
	s.skip = nil
	s.mu.Unlock()
	for _, r := range out {
		seg := r.seg
		seg.mu.Lock()
		if seg.file != nil {
			seg.file.Close()
			seg.file = nil
		}
		seg.size, seg.committed, seg.sumSize = r.size, r.size, 0
		if seg.col != nil {
			seg.col.unmap() // no query runs: gen is held
		}
		seg.col, seg.colSize, seg.colLazy = nil, 0, false
		if cf, err := openColFile(s.colPath(seg.bucket)); err == nil {
			seg.col, seg.colSize = cf, cf.size
		}
		ns := r.ns
		seg.sum, seg.chunks, seg.dead, seg.txnLo, seg.txnHi = ns.sum, ns.chunks, ns.dead, ns.txnLo, ns.txnHi
		seg.minStart, seg.maxStart, seg.maxEnd = ns.minStart, ns.maxStart, ns.maxEnd
		seg.mu.Unlock()
	}
	s.cold.clear()
	s.unmapRetired(true)
	if err := s.saveDone(); err != nil {
		return err
	}
	s.log.Info("flow store: dictionaries compacted", "entries", nd.entries(), "segments", len(out))
	return nil
}

// appendCols appends p's rows to c.
func (c *columns) appendCols(p *columns) {
	if len(c.relOff) == 0 {
		c.relOff = append(c.relOff, 0)
	}
	base := uint32(len(c.rels))
	c.start = append(c.start, p.start...)
	c.end = append(c.end, p.end...)
	c.idms = append(c.idms, p.idms...)
	c.idn = append(c.idn, p.idn...)
	c.pair = append(c.pair, p.pair...)
	c.attr = append(c.attr, p.attr...)
	c.sport = append(c.sport, p.sport...)
	c.fwdP = append(c.fwdP, p.fwdP...)
	c.fwdB = append(c.fwdB, p.fwdB...)
	c.revP = append(c.revP, p.revP...)
	c.revB = append(c.revB, p.revB...)
	c.conns = append(c.conns, p.conns...)
	c.rels = append(c.rels, p.rels...)
	for _, off := range p.relOff[1:] {
		c.relOff = append(c.relOff, base+off)
	}
	c.repl += p.repl
}

// live returns c without the rows a later row of the same flow replaces.
func (c *columns) live() *columns {
	if c.repl == 0 {
		return c
	}
	dead := markDead([]*columns{c})
	out := &columns{relOff: []uint32{0}}
	for i := range c.idn {
		if dead.has(uint32(i)) {
			continue
		}
		out.addRow(row{c.start[i], c.end[i], c.idms[i], c.idn[i], c.pair[i], c.attr[i], c.sport[i],
			[5]uint64{c.fwdP[i], c.fwdB[i], c.revP[i], c.revB[i], c.conns[i]}}, c.rels[c.relOff[i]:c.relOff[i+1]])
	}
	return out
}

// writeNew writes a file durably.
func (s *Store) writeNew(path string, data []byte) error {
	if s.opts.NoSync {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return fmt.Errorf("flow store: %w", err)
		}
		return nil
	}
	if err := writeSync(path, data); err != nil {
		return fmt.Errorf("flow store: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// renameCompacted moves every NAME.compact over NAME, then removes the
// marker.
func (s *Store) renameCompacted() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("flow store: %w", err)
	}
	for _, e := range entries {
		if name := e.Name(); strings.HasSuffix(name, compactSuffix) {
			if err := os.Rename(filepath.Join(s.dir, name), filepath.Join(s.dir, strings.TrimSuffix(name, compactSuffix))); err != nil {
				return fmt.Errorf("flow store: %w", err)
			}
		}
	}
	if err := syncDir(s.dir); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(s.dir, compactMarker)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("flow store: %w", err)
	}
	return syncDir(s.dir)
}

// finishCompaction completes or undoes a compaction a crash interrupted.
func (s *Store) finishCompaction() error {
	if _, err := os.Stat(filepath.Join(s.dir, compactMarker)); err == nil {
		s.log.Warn("flow store: finishing an interrupted dictionary compaction")
		return s.renameCompacted()
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("flow store: %w", err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), compactSuffix) {
			if err := os.Remove(filepath.Join(s.dir, e.Name())); err != nil {
				return fmt.Errorf("flow store: %w", err)
			}
		}
	}
	return nil
}

// repairDamaged rewrites the segments in which a query met a damaged
// block, keeping their whole blocks (the original is moved aside). Caller
// holds wmu.
func (s *Store) repairDamaged() {
	s.dmu.Lock()
	todo := s.damaged
	s.damaged = nil
	s.dmu.Unlock()
	for seg := range todo {
		if err := s.repair(seg); err != nil {
			s.log.Error("flow store: repairing a segment", "file", seg.path, "err", err)
		}
	}
}

func (s *Store) repair(seg *segment) error {
	s.mu.RLock()
	live := s.segs[seg.bucket] == seg
	skip := s.skip
	s.mu.RUnlock()
	if !live {
		return nil
	}
	seg.mu.RLock()
	size, hot := seg.committed, !seg.cold
	seg.mu.RUnlock()
	data, err := readPrefix(seg.path, size)
	if err != nil {
		return err
	}
	v := s.dict.view()
	ns := newSegment(seg.bucket, seg.path)
	ns.cold = !hot
	var good []byte
	var p columns
	bad, _ := frames(data, func(off int, payload []byte, end int) {
		p.reset()
		kept, err := decodeBlock(payload, len(v.pairs), len(v.attrs), func(bi blockInfo) bool { return !skip[bi.txn] }, &p, nil)
		if err != nil {
			return
		}
		good = append(good, data[off:end]...)
		ns.noteTxn(blockTxn(payload).txn)
		if kept && p.len() > 0 {
			ns.appendRows(&p)
		}
	})
	if len(good) == len(data) && len(bad) == 0 {
		return nil
	}
	s.gen.Lock()
	defer s.gen.Unlock()
	if err := s.rewrite(seg.path, good, "damaged blocks in a segment (found by a query)"); err != nil {
		return err
	}
	os.Remove(s.sumPath(seg.bucket))
	seg.mu.Lock()
	if seg.file != nil {
		seg.file.Close()
		seg.file = nil
	}
	seg.size, seg.committed, seg.sumSize = int64(len(good)), int64(len(good)), 0
	if seg.col != nil {
		seg.col.unmap() // stale (no query runs: gen is held); written again by evict
	}
	seg.col, seg.colLazy = nil, false
	seg.sum, seg.chunks, seg.dead, seg.txnLo, seg.txnHi = ns.sum, ns.chunks, ns.dead, ns.txnLo, ns.txnHi
	seg.minStart, seg.maxStart, seg.maxEnd = ns.minStart, ns.maxStart, ns.maxEnd
	seg.mu.Unlock()
	s.cold.drop(seg)
	return nil
}
