// Package store is Palisade's embedded flow store: time-partitioned,
// append-only segment files with per-segment dictionaries, held in memory
// as columns for fast scans, plus a write-ahead log of agent batches not yet
// turned into flows. It implements flow.Store.
package store

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
)

// Options tune a Store. Zero values take the defaults.
type Options struct {
	// Partition is the time span of one segment (by flow start). Default 10 min.
	Partition time.Duration
	// MaxAge drops segments whose newest flow is older. Default 0: keep.
	MaxAge time.Duration
	// MaxBytes drops the oldest segments while the segments' files are
	// larger in total. Default 0: no limit.
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

	// wmu serialises writers (Append, retention).
	wmu sync.Mutex
	txn uint64

	// mu guards segs, done and the state below.
	mu   sync.RWMutex
	segs map[int64]*segment // by bucket
	dict *dict
	done flow.Seqs
	// lastRetention throttles retention checks.
	lastRetention time.Time

	wal *wal

	// in is Append's scratch space (under wmu).
	in ingest
}

var _ flow.Store = (*Store)(nil)

const (
	segPrefix = "seg-"
	segSuffix = ".pfs"
	doneFile  = "done.state"
	dictFile  = "dict.pfd"
)

// Open opens (or creates) a store in dir, reloading its segments and its
// log. Blocks torn by a crash are truncated away.
func Open(dir string, opts Options) (*Store, error) {
	if opts.Partition <= 0 {
		opts.Partition = 10 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("flow store: %w", err)
	}
	s := &Store{dir: dir, opts: opts, log: opts.Logger, segs: map[int64]*segment{}, done: flow.Seqs{}}
	if err := s.loadDict(); err != nil {
		return nil, err
	}
	if err := s.loadDone(); err != nil {
		return nil, err
	}
	if err := s.loadSegments(); err != nil {
		return nil, err
	}
	w, err := openWAL(filepath.Join(dir, "wal"), !opts.NoSync)
	if err != nil {
		return nil, err
	}
	s.wal = w
	s.wal.drop(s.done)
	return s, nil
}

func (s *Store) segPath(bucket int64) string {
	return filepath.Join(s.dir, segPrefix+strconv.FormatInt(bucket, 10)+segSuffix)
}

// loadSegments reads every segment file in two passes: the first learns
// which transactions have all their parts, the second applies the blocks
// (records only of complete transactions).
func (s *Store) loadSegments() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("flow store: %w", err)
	}
	type file struct {
		bucket int64
		data   []byte
		good   int // bytes of whole blocks
	}
	var files []file
	parts := map[uint64]int{}
	need := map[uint64]int{}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, segPrefix) || !strings.HasSuffix(name, segSuffix) {
			continue
		}
		bucket, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(name, segPrefix), segSuffix), 10, 64)
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join(s.dir, name))
		if err != nil {
			return fmt.Errorf("flow store: %w", err)
		}
		f := file{bucket: bucket, data: data}
		for rest := data; ; {
			payload, next, ok := unframe(rest)
			if !ok {
				break
			}
			bi := blockTxn(payload)
			parts[bi.txn]++
			need[bi.txn] = bi.parts
			s.txn = max(s.txn, bi.txn)
			f.good += len(rest) - len(next)
			rest = next
		}
		files = append(files, f)
	}
	keep := func(bi blockInfo) bool { return parts[bi.txn] == need[bi.txn] }
	for _, f := range files {
		path := s.segPath(f.bucket)
		if f.good < len(f.data) {
			s.log.Warn("flow store: truncating torn tail", "file", path, "bytes", len(f.data)-f.good)
			if err := os.Truncate(path, int64(f.good)); err != nil {
				return fmt.Errorf("flow store: %w", err)
			}
		}
		seg := newSegment(f.bucket, path)
		good := 0
		for rest := f.data[:f.good]; len(rest) > 0; {
			payload, next, _ := unframe(rest)
			if err := seg.apply(payload, s.dict, keep, s.done); err != nil {
				// Refers to dictionary entries that never became durable.
				s.log.Warn("flow store: truncating at a bad block", "file", path, "err", err)
				if err := os.Truncate(path, int64(good)); err != nil {
					return fmt.Errorf("flow store: %w", err)
				}
				break
			}
			good += len(rest) - len(next)
			rest = next
		}
		seg.size = int64(good)
		s.segs[f.bucket] = seg
	}
	return nil
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
		f, err := os.OpenFile(seg.path, os.O_CREATE|os.O_WRONLY, 0o640)
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

// loadDict reads the dictionary file, truncating a torn tail, and opens it
// for appending.
func (s *Store) loadDict() error {
	d := newDict(filepath.Join(s.dir, dictFile))
	data, err := os.ReadFile(d.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("flow store: %w", err)
	}
	rest := data
	for {
		payload, next, ok := unframe(rest)
		if !ok {
			break
		}
		if err := d.apply(payload); err != nil {
			return fmt.Errorf("flow store: %s: %w", d.path, err)
		}
		rest = next
	}
	d.size = int64(len(data) - len(rest))
	d.reindex()
	f, err := os.OpenFile(d.path, os.O_CREATE|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("flow store: %w", err)
	}
	if data == nil && !s.opts.NoSync {
		if err := syncDir(s.dir); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Truncate(d.size); err != nil {
		f.Close()
		return fmt.Errorf("flow store: %w", err)
	}
	d.file = f
	s.dict = d
	return nil
}

// Retain applies the retention options now.
func (s *Store) Retain(now time.Time) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.retainLocked(now)
}

func (s *Store) retainLocked(now time.Time) {
	if s.opts.MaxAge <= 0 && s.opts.MaxBytes <= 0 {
		return
	}
	s.mu.RLock()
	segs := s.sorted(false)
	s.mu.RUnlock()
	var total int64
	for _, seg := range segs {
		total += seg.size
	}
	var drop []*segment
	for _, seg := range segs { // oldest first
		_, _, maxEnd := seg.snapshot()
		old := s.opts.MaxAge > 0 && maxEnd < now.Add(-s.opts.MaxAge).UnixNano() && seg.bucket+s.opts.Partition.Nanoseconds() < now.Add(-s.opts.MaxAge).UnixNano()
		big := s.opts.MaxBytes > 0 && total > s.opts.MaxBytes
		if !old && !big {
			break
		}
		drop = append(drop, seg)
		total -= seg.size
	}
	if len(drop) == 0 {
		return
	}
	// The records these segments marked done must stay done.
	if err := s.saveDone(); err != nil {
		s.log.Error("flow store: retention skipped", "err", err)
		return
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
		if err := os.Remove(seg.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Error("flow store: retention", "err", err)
		}
	}
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

// Stats describes the store's contents.
type Stats struct {
	Segments int   `json:"segments"`
	Flows    int   `json:"flows"`
	Bytes    int64 `json:"bytes"`
}

// Stats returns the store's size.
func (s *Store) Stats() Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var st Stats
	for _, seg := range s.segs {
		cs, _, _ := seg.snapshot()
		st.Segments++
		st.Flows += rows(cs)
		st.Bytes += seg.size
	}
	return st
}

// Close closes the store's files.
func (s *Store) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, seg := range s.segs {
		if seg.file != nil {
			errs = append(errs, seg.file.Close())
			seg.file = nil
		}
	}
	errs = append(errs, s.wal.close(), s.dict.file.Close())
	return errors.Join(errs...)
}

// saveDone writes the done set atomically (used before segments that hold
// part of it are dropped).
func (s *Store) saveDone() error {
	var e enc
	encodeSeqs(&e, s.doneSnapshot())
	tmp := filepath.Join(s.dir, doneFile+".tmp")
	if err := writeSync(tmp, frame(e.b)); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(s.dir, doneFile))
}

func (s *Store) loadDone() error {
	data, err := os.ReadFile(filepath.Join(s.dir, doneFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("flow store: %w", err)
	}
	payload, _, ok := unframe(data)
	if !ok {
		return fmt.Errorf("flow store: %s is corrupt", doneFile)
	}
	d := &dec{b: payload}
	decodeSeqs(d, s.done)
	return d.err
}

func writeSync(path string, data []byte) error {
	f, err := os.Create(path)
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
