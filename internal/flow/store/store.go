// Package store is Palisade's embedded flow store: time-partitioned,
// append-only segment files with per-segment dictionaries, held in memory
// as columns for fast scans, plus a write-ahead log of agent batches not yet
// turned into flows. It implements flow.Store.
package store

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
)

// Options tune a Store. Zero values take the defaults.
type Options struct {
	// Partition is the time span of one segment (by flow start). Default 10 min.
	Partition time.Duration
	// HotWindow is how long after its partition ended a segment's columns
	// stay in memory; older segments are cold: only their summaries stay
	// resident and queries read them from disk. Default 1 h.
	HotWindow time.Duration
	// ColdCacheBytes caps the decoded cold segments kept between queries.
	// Default 256 MiB.
	ColdCacheBytes int64
	// MaxAge drops segments whose newest flow is older. Default 0: keep.
	MaxAge time.Duration
	// MaxBytes drops the oldest segments while the segments' files are
	// larger in total. Default 0: no limit (the server sets one, see
	// DefaultMaxBytes).
	MaxBytes int64
	// NoSync skips fsync (benchmarks of the encoder only; never in production).
	NoSync bool
	Logger *slog.Logger
}

// Store is the embedded flow store. Safe for concurrent use.
type Store struct {
	dir  string
	opts Options
	log  *slog.Logger

	// wmu serialises writers (Append, retention, eviction, compaction).
	wmu sync.Mutex
	txn uint64

	// gen is held (shared) by readers for a whole query and (exclusive)
	// by compaction while it swaps the dictionary and the segments.
	gen sync.RWMutex

	// mu guards segs, done, skip and the state below.
	mu   sync.RWMutex
	segs map[int64]*segment // by bucket
	dict *dict
	done flow.Seqs
	// skip holds the transactions a crash left incomplete: their blocks
	// are ignored. Replaced, never changed in place.
	skip map[uint64]bool
	// committedTxn: every transaction up to it is complete or in skip
	// (saved with the done set).
	committedTxn uint64
	// lastRetention throttles retention checks.
	lastRetention time.Time

	cold      coldCache
	coldReads atomic.Uint64

	// colVersionSeen: column files of another version were found (logged
	// once).
	colVersionSeen atomic.Bool

	dmu        sync.Mutex
	damaged    map[*segment]bool
	colDamaged map[*colFile]bool
	// retired are column files to unmap once no query reads them (mu).
	retired []*colFile

	wal *wal

	// in is Append's scratch space (under wmu).
	in ingest
}

var _ flow.Store = (*Store)(nil)

const (
	segPrefix  = "seg-"
	segSuffix  = ".pfs"
	doneFile   = "done.state"
	dictFile   = "dict.pfd"
	dictMirror = "dict-mirror.pfd"
)

// Open opens (or creates) a store in dir, reloading its segments and its
// log. Blocks torn by a crash are truncated away; damaged files are moved
// aside (into dir/damaged) with a log line, and what they held intact is
// kept.
func Open(dir string, opts Options) (*Store, error) {
	if opts.Partition <= 0 {
		opts.Partition = 10 * time.Minute
	}
	if opts.HotWindow <= 0 {
		opts.HotWindow = time.Hour
	}
	if opts.ColdCacheBytes <= 0 {
		opts.ColdCacheBytes = 256 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("flow store: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("flow store: %w", err)
	}
	s := &Store{dir: dir, opts: opts, log: opts.Logger, segs: map[int64]*segment{}, done: flow.Seqs{}}
	s.cold.max = opts.ColdCacheBytes
	if err := s.finishCompaction(); err != nil {
		return nil, err
	}
	if err := s.loadDict(); err != nil {
		return nil, err
	}
	trusted, err := s.loadDone()
	if err != nil {
		return nil, err
	}
	if err := s.loadSegments(trusted); err != nil {
		return nil, err
	}
	w, err := openWAL(filepath.Join(dir, "wal"), !opts.NoSync, s.moveAside)
	if err != nil {
		return nil, err
	}
	s.wal = w
	s.wal.drop(s.done)
	s.wmu.Lock()
	s.evict(time.Now())
	s.wmu.Unlock()
	return s, nil
}

func (s *Store) segPath(bucket int64) string {
	return filepath.Join(s.dir, segPrefix+strconv.FormatInt(bucket, 10)+segSuffix)
}

// loadSegments opens every segment file. A segment with a valid summary
// file is read only past what the summary covers; hot segments are read
// whole into columns. The blocks read go through two passes: the first
// learns which transactions have all their parts, the second applies the
// blocks (records only of complete transactions). trusted says whether the
// done set and committed transaction mark were read intact: if not, every
// block is read again to rebuild them.
func (s *Store) loadSegments(trusted bool) error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("flow store: %w", err)
	}
	type block struct {
		off, end int
		info     blockInfo
	}
	type file struct {
		seg    *segment
		from   int64 // data is the file from here
		data   []byte
		blocks []block
		bad    [][2]int
		tail   int
	}
	var files []*file
	var covered [][2]uint64 // transaction ranges of what summaries cover
	colFiles := map[string]int64{}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), colSuffix) {
			if fi, err := e.Info(); err == nil {
				colFiles[e.Name()] = fi.Size()
			}
		}
	}
	parts := map[uint64]int{}
	need := map[uint64]int{}
	npairs, nattrs := len(s.dict.pairs), len(s.dict.attrs)
	edge := time.Now().Add(-s.opts.HotWindow).UnixNano()
	part := s.opts.Partition.Nanoseconds()
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, segPrefix) || !strings.HasSuffix(name, segSuffix) {
			continue
		}
		bucket, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(name, segPrefix), segSuffix), 10, 64)
		if err != nil {
			continue
		}
		path := filepath.Join(s.dir, name)
		st, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("flow store: %w", err)
		}
		seg := newSegment(bucket, path)
		f := &file{seg: seg}
		// Cold segments are only summarised, never held in columns.
		seg.cold = bucket+part <= edge
		if seg.cold && trusted {
			f.from = s.readSummary(seg, st.Size(), npairs, nattrs)
		}
		fh, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("flow store: %w", err)
		}
		f.data = make([]byte, st.Size()-f.from)
		_, err = fh.ReadAt(f.data, f.from)
		fh.Close()
		if err != nil {
			return fmt.Errorf("flow store: %w", err)
		}
		if f.from > 0 {
			covered = append(covered, [2]uint64{seg.txnLo, seg.txnHi})
		}
		f.bad, f.tail = frames(f.data, func(off int, payload []byte, end int) {
			bi := blockTxn(payload)
			f.blocks = append(f.blocks, block{off, end, bi})
			s.txn = max(s.txn, bi.txn)
			seg.noteTxn(bi.txn)
			parts[bi.txn]++
			need[bi.txn] = bi.parts
		})
		files = append(files, f)
	}
	skip := maps.Clone(s.skip)
	if skip == nil {
		skip = map[uint64]bool{}
	}
	for txn, n := range parts {
		if n == need[txn] {
			continue
		}
		// Parts not read may be in what a summary covers (complete by
		// construction: summaries cover committed transactions).
		inCovered := false
		for _, r := range covered {
			inCovered = inCovered || r[0] <= txn && txn <= r[1]
		}
		if !inCovered || txn > s.committedTxn {
			skip[txn] = true
		}
	}
	s.skip = skip
	keep := func(bi blockInfo) bool { return !skip[bi.txn] }
	rowOnly := 0
	for _, f := range files {
		seg := f.seg
		var damaged []string
		for _, b := range f.bad {
			damaged = append(damaged, fmt.Sprintf("bytes %d-%d: a damaged block", f.from+int64(b[0]), f.from+int64(b[1])))
		}
		var good []block
		// A cold segment read whole (it had no summary: it was hot when
		// the store closed) gets its column file from what is decoded here.
		var rowsOf *columns
		if seg.cold && f.from == 0 && littleEndian {
			rowsOf = &columns{relOff: []uint32{0}}
		}
		for _, b := range f.blocks {
			if err := seg.apply(f.data[b.off+blockHeader:b.end], npairs, nattrs, keep, s.done, rowsOf); err != nil {
				// Refers to dictionary entries that were lost.
				damaged = append(damaged, fmt.Sprintf("bytes %d-%d: %v (records naming dictionary entries that are gone)", f.from+int64(b.off), f.from+int64(b.end), err))
				continue
			}
			good = append(good, b)
		}
		size := f.from + int64(f.tail)
		if len(damaged) > 0 {
			// Keep the whole blocks, move the original aside.
			prefix, err := readPrefix(seg.path, f.from)
			if err != nil {
				return fmt.Errorf("flow store: %w", err)
			}
			for _, b := range good {
				prefix = append(prefix, f.data[b.off:b.end]...)
			}
			if err := s.rewrite(seg.path, prefix, strings.Join(damaged, "; ")); err != nil {
				return err
			}
			size = int64(len(prefix))
		} else if int(size) < int(f.from)+len(f.data) {
			s.log.Warn("flow store: truncating torn tail", "file", seg.path, "bytes", int64(len(f.data))-int64(f.tail))
			if err := os.Truncate(seg.path, size); err != nil {
				return fmt.Errorf("flow store: %w", err)
			}
		}
		seg.size, seg.committed = size, size
		s.segs[seg.bucket] = seg
		// A column file is opened (mapped, its header read) by the first
		// query that needs it: reading a thousand headers here would cost
		// seconds of disk reads at every start.
		if n, ok := colFiles[filepath.Base(s.colPath(seg.bucket))]; ok {
			seg.colSize = n
			seg.colLazy = seg.cold && littleEndian
		}
		if seg.cold && size > 0 && rowsOf != nil {
			seg.colLazy = false
			var dead bitset
			cs := rowsOf.split()
			if rowsOf.repl > 0 {
				dead = markDead([]*columns{rowsOf})
			}
			if cf, err := s.writeColFile(seg.bucket, cs, dead, size, ""); err == nil {
				seg.col, seg.colSize = cf, cf.size
			} else {
				s.log.Error("flow store: writing a column file; the segment is read from its row file", "file", s.colPath(seg.bucket), "err", err)
			}
		}
		if seg.cold && size > 0 && !colCurrent(seg) {
			rowOnly++
		}
	}
	if rowOnly > 0 {
		s.log.Info("flow store: cold segments without a current column file (written before the column format, or not yet written): read from their row files until retention passes write their column files", "segments", rowOnly, "perPass", convertsPerPass)
	}
	s.committedTxn = s.txn
	return s.saveDone()
}

// Log implements flow.Store.
func (s *Store) Log(b *flow.Batch) error { return s.wal.append(b) }

// Pending implements flow.Store.
func (s *Store) Pending() ([]flow.Batch, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.wal.pending(s.done)
}

// Done implements flow.Store.
func (s *Store) Done(agent string, seq uint64) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.done.Has(agent, seq)
}

func (s *Store) doneSnapshot() flow.Seqs {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := flow.Seqs{}
	out.Merge(s.done)
	return out
}

// segment returns the segment of bucket, creating its file if needed.
func (s *Store) segment(bucket int64) (*segment, error) {
	s.mu.RLock()
	seg := s.segs[bucket]
	s.mu.RUnlock()
	if seg == nil {
		seg = newSegment(bucket, s.segPath(bucket))
		s.mu.Lock()
		s.segs[bucket] = seg
		s.mu.Unlock()
	}
	if seg.file == nil {
		_, statErr := os.Stat(seg.path)
		f, err := os.OpenFile(seg.path, os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, fmt.Errorf("flow store: %w", err)
		}
		seg.file = f
		if statErr != nil && !s.opts.NoSync {
			if err := syncDir(s.dir); err != nil {
				return nil, err
			}
		}
	}
	return seg, nil
}

// writeFile appends block at *size, and fsyncs if sync is set; *size
// grows on success.
func (s *Store) writeFile(f *os.File, path string, size *int64, block []byte, sync bool) error {
	if _, err := f.WriteAt(block, *size); err != nil {
		return fmt.Errorf("flow store: write %s: %w", path, err)
	}
	if sync {
		if err := s.syncFile(f, path); err != nil {
			return err
		}
	}
	*size += int64(len(block))
	return nil
}

// syncFile fsyncs f (unless the store runs without fsync).
func (s *Store) syncFile(f *os.File, path string) error {
	if !s.opts.NoSync {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("flow store: sync %s: %w", path, err)
		}
	}
	return nil
}

// loadDict reads the dictionary, from whichever of its two copies is
// whole (the longer one when both are), repairs the other, and opens both
// for appending.
func (s *Store) loadDict() error {
	d := newDict(filepath.Join(s.dir, dictFile))
	d.mirrorPath = filepath.Join(s.dir, dictMirror)
	var datas [2][]byte
	var goods [2]int
	var damaged [2]bool
	for i, path := range []string{d.path, d.mirrorPath} {
		data, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("flow store: %w", err)
		}
		datas[i] = data
		// Entries are numbered by position: only the whole prefix counts.
		good := 0
		for rest := data; ; {
			_, next, ok := unframe(rest)
			if !ok {
				break
			}
			good = len(data) - len(next)
			rest = next
		}
		goods[i] = good
		bad, _ := frames(data[good:], nil)
		_, tail := frames(data[good:], nil)
		damaged[i] = len(bad) > 0 || tail > 0 // whole blocks behind a damaged one
	}
	use := 0
	if goods[1] > goods[0] {
		use = 1
	}
	data := datas[use][:goods[use]]
	for rest := data; len(rest) > 0; {
		payload, next, _ := unframe(rest)
		if err := d.apply(payload); err != nil {
			return fmt.Errorf("flow store: %s: %w", d.path, err)
		}
		rest = next
	}
	d.size = int64(len(data))
	d.reindex()
	for i, path := range []string{d.path, d.mirrorPath} {
		switch {
		case datas[i] == nil && data == nil:
		case damaged[i] || goods[i] < len(data) || i != use && !bytes.Equal(datas[i][:goods[i]], data):
			if err := s.rewrite(path, data, fmt.Sprintf("dictionary copy damaged or short (%d whole bytes of %d, the other copy has %d)", goods[i], len(datas[i]), len(data))); err != nil {
				return err
			}
		case len(datas[i]) > len(data):
			s.log.Warn("flow store: truncating torn tail", "file", path, "bytes", len(datas[i])-len(data))
		}
	}
	var err error
	if d.file, err = openAppend(d.path, d.size, datas[0] == nil && !s.opts.NoSync); err != nil {
		return err
	}
	if d.mirror, err = openAppend(d.mirrorPath, d.size, datas[1] == nil && !s.opts.NoSync); err != nil {
		d.file.Close()
		return err
	}
	s.dict = d
	return nil
}

// openAppend opens path for writing at size, cutting anything past it.
func openAppend(path string, size int64, syncParent bool) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("flow store: %w", err)
	}
	if syncParent {
		if err := syncDir(filepath.Dir(path)); err != nil {
			f.Close()
			return nil, err
		}
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, fmt.Errorf("flow store: %w", err)
	}
	return f, nil
}

// Retain applies the retention options now, makes segments past the hot
// window cold, repairs damaged segments and compacts the dictionaries when
// enough of them is no longer referenced.
func (s *Store) Retain(now time.Time) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.retainLocked(now)
}

func (s *Store) retainLocked(now time.Time) {
	dropped := s.dropOld(now)
	s.repairDamaged()
	s.probeCols()
	s.evict(now)
	if dropped {
		if err := s.compactIfWorth(); err != nil {
			s.log.Error("flow store: dictionary compaction", "err", err)
		}
	}
	s.unmapRetired(false)
}

// dropOld removes the oldest segments past MaxAge or MaxBytes.
func (s *Store) dropOld(now time.Time) bool {
	if s.opts.MaxAge <= 0 && s.opts.MaxBytes <= 0 {
		return false
	}
	s.mu.RLock()
	segs := s.sorted(false)
	s.mu.RUnlock()
	var total int64
	for _, seg := range segs {
		total += seg.size + seg.colSize
	}
	var drop []*segment
	for _, seg := range segs { // oldest first
		maxEnd := seg.bounds().maxEnd
		old := s.opts.MaxAge > 0 && maxEnd < now.Add(-s.opts.MaxAge).UnixNano() && seg.bucket+s.opts.Partition.Nanoseconds() < now.Add(-s.opts.MaxAge).UnixNano()
		big := s.opts.MaxBytes > 0 && total > s.opts.MaxBytes
		if !old && !big {
			break
		}
		drop = append(drop, seg)
		total -= seg.size + seg.colSize
	}
	if len(drop) == 0 {
		return false
	}
	// The records these segments marked done must stay done.
	if err := s.saveDone(); err != nil {
		s.log.Error("flow store: retention skipped", "err", err)
		return false
	}
	s.mu.Lock()
	for _, seg := range drop {
		delete(s.segs, seg.bucket)
	}
	s.mu.Unlock()
	for _, seg := range drop {
		if seg.file != nil {
			seg.file.Close()
		}
		s.cold.drop(seg)
		if seg.col != nil {
			s.retire(seg.col)
		}
		for _, p := range []string{seg.path, s.sumPath(seg.bucket), s.colPath(seg.bucket)} {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				s.log.Error("flow store: retention", "err", err)
			}
		}
	}
	s.log.Info("flow store: retention dropped segments", "segments", len(drop), "oldest", time.Unix(0, drop[0].bucket).UTC())
	return true
}

// sorted returns the segments by bucket (newest first if desc). Caller
// holds mu.
func (s *Store) sorted(desc bool) []*segment {
	out := make([]*segment, 0, len(s.segs))
	for _, seg := range s.segs {
		out = append(out, seg)
	}
	sort.Slice(out, func(i, j int) bool {
		if desc {
			return out[i].bucket > out[j].bucket
		}
		return out[i].bucket < out[j].bucket
	})
	return out
}

// Stats describes the store's contents and limits.
type Stats struct {
	Segments       int    `json:"segments"`
	HotSegments    int    `json:"hotSegments"`
	Flows          int    `json:"flows"`
	Bytes          int64  `json:"bytes"`
	DictEntries    int    `json:"dictEntries"`
	ColdReads      uint64 `json:"coldReads"`
	ColdCacheBytes int64  `json:"coldCacheBytes"`
	// ColdRowOnly counts the cold segments without a column file yet
	// (older format, or not written yet): they are read from their row
	// file until a retention pass writes one.
	ColdRowOnly int `json:"coldRowOnly"`
	// Retention: MaxAge ("0s": none) and MaxBytes (0: none).
	MaxAge    string `json:"maxAge"`
	MaxBytes  int64  `json:"maxBytes"`
	HotWindow string `json:"hotWindow"`
}

// Stats returns the store's size.
func (s *Store) Stats() Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := Stats{MaxAge: s.opts.MaxAge.String(), MaxBytes: s.opts.MaxBytes, HotWindow: s.opts.HotWindow.String(), ColdReads: s.coldReads.Load()}
	for _, seg := range s.segs {
		seg.mu.RLock()
		st.Segments++
		if !seg.cold {
			st.HotSegments++
		}
		st.Flows += seg.sum.rows - seg.sum.repl
		st.Bytes += seg.size + seg.colSize
		if seg.cold && seg.committed > 0 && !colCurrent(seg) {
			st.ColdRowOnly++
		}
		seg.mu.RUnlock()
	}
	st.DictEntries = s.dict.entries()
	s.cold.mu.Lock()
	st.ColdCacheBytes = s.cold.used
	s.cold.mu.Unlock()
	return st
}

// Close closes the store's files.
func (s *Store) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.gen.Lock()
	defer s.gen.Unlock()
	s.unmapRetired(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, seg := range s.segs {
		if seg.file != nil {
			errs = append(errs, seg.file.Close())
			seg.file = nil
		}
		if seg.col != nil {
			seg.col.unmap()
			seg.col = nil
		}
	}
	errs = append(errs, s.wal.close(), s.dict.file.Close(), s.dict.mirror.Close())
	return errors.Join(errs...)
}

// saveDone writes the done set, the committed transaction mark and the
// incomplete transactions atomically (before segments that hold part of
// the done set are dropped or summarised).
func (s *Store) saveDone() error {
	var e enc
	encodeSeqs(&e, s.doneSnapshot())
	s.mu.RLock()
	e.u(s.txn)
	e.u(uint64(len(s.skip)))
	for txn := range s.skip {
		e.u(txn)
	}
	s.mu.RUnlock()
	tmp := filepath.Join(s.dir, doneFile+".tmp")
	if err := writeSync(tmp, frame(e.b)); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, doneFile)); err != nil {
		return err
	}
	if !s.opts.NoSync {
		return syncDir(s.dir)
	}
	return nil
}

// loadDone reads the done set. A damaged file is moved aside: trusted is
// then false, and the done set is rebuilt from every segment block.
func (s *Store) loadDone() (trusted bool, err error) {
	path := filepath.Join(s.dir, doneFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("flow store: %w", err)
	}
	payload, _, ok := unframe(data)
	d := &dec{b: payload}
	if ok {
		decodeSeqs(d, s.done)
		if len(d.b) > 0 { // written since the committed mark was added
			s.committedTxn = d.u()
			skip := map[uint64]bool{}
			for range d.count() {
				skip[d.u()] = true
			}
			s.skip = skip
		}
	}
	if !ok || d.err != nil {
		s.done, s.committedTxn, s.skip = flow.Seqs{}, 0, nil
		if err := s.moveAside(path, "done set damaged: rebuilding it from every segment"); err != nil {
			return false, err
		}
		return false, nil
	}
	s.txn = s.committedTxn
	return true, nil
}

func writeSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
