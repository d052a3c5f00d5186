package store

import (
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
)

// ingest is Append's scratch space, kept between calls so that a batch
// allocates (almost) nothing.
type ingest struct {
	prep    []prepared
	rels    [maxWorkers][]rel
	errs    [maxWorkers]prepErr
	buckets []int64 // distinct buckets, in order of first appearance
	bidx    map[int64]int32
	order   []int32 // flow indexes grouped by bucket (sorted)
	offs    []int32 // order[offs[k]:offs[k+1]] are bucket k's (sorted) flows
	jobs    []job
	writers []*blockWriter // one per job
	// replFrom: the flows from this index on replace stored versions
	// (Replace, AppendReplace).
	replFrom int
}

// job is one block to encode: flows idx of partition in.buckets[bucket]
// (replacements when repl).
type job struct {
	bucket int
	idx    []int32
	repl   bool
}

// prepared is what Append learns about a flow before encoding it.
type prepared struct {
	bucket   int64
	idms     int64
	idn      uint64
	pid, aid uint32
	relLo    int32 // rels[worker][relLo:relHi]
	relHi    int32
	worker   uint8
	reasons  uint8
	found    bool // pid and aid are set
	bi       int32
	known    // without found: the entries probe found
}

type prepErr struct {
	i   int
	err error
}

const (
	maxWorkers = 4
	// minPerWorker is the smallest share of a batch worth a goroutine.
	minPerWorker = 1024
)

// Append implements flow.Store: one block per partition touched (two for
// a partition with many of the batch's flows), all parts of one
// transaction; the agent records go with the last part. Each file is
// fsynced before Append returns.
//
// A batch goes through three phases: on every core, each flow's IDs are
// parsed and its dictionary entries looked up without changing the
// dictionaries; then, on one, the entries not found are added; then the
// records are encoded by partition on up to two cores, while the new
// dictionary entries are written and fsynced, and the segment blocks are
// written and fsynced (after the dictionary file).
func (s *Store) Append(flows []flow.Flow, obs flow.Seqs) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if len(flows) == 0 && len(obs) == 0 {
		return nil
	}
	s.in.replFrom = len(flows)
	return s.appendLocked(flows, obs)
}

// AppendReplace implements flow.Store: Append and Replace in one
// transaction, so a late related flow and the new version of its partner
// take one write and one fsync per file, and survive a crash together.
func (s *Store) AppendReplace(flows, updates []flow.Flow, obs flow.Seqs) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	keep := s.replaceable(updates, flows)
	if len(flows) == 0 && len(obs) == 0 && len(keep) == 0 {
		return nil
	}
	all := flows
	if len(keep) > 0 {
		all = make([]flow.Flow, 0, len(flows)+len(keep))
		all = append(append(all, flows...), keep...)
	}
	s.in.replFrom = len(flows)
	return s.appendLocked(all, obs)
}

// replaceable returns the flows of updates whose segment exists (or is
// made by flows). Caller holds wmu.
func (s *Store) replaceable(updates, flows []flow.Flow) []flow.Flow {
	part := s.opts.Partition.Nanoseconds()
	made := map[int64]bool{}
	for i := range flows {
		if ns := flows[i].Start.UnixNano(); ns >= 0 {
			made[ns/part*part] = true
		}
	}
	var keep []flow.Flow
	s.mu.RLock()
	defer s.mu.RUnlock()
	for i := range updates {
		if ns := updates[i].Start.UnixNano(); ns >= 0 && (s.segs[ns/part*part] != nil || made[ns/part*part]) {
			keep = append(keep, updates[i])
		}
	}
	return keep
}

// Replace implements flow.Store: the new versions are appended to their
// segments in blocks marked as replacements (one transaction); a search
// then sees only the last version of a flow. A flow whose segment is gone
// (retention) is not stored again.
func (s *Store) Replace(flows []flow.Flow) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	keep := s.replaceable(flows, nil)
	if len(keep) == 0 {
		return nil
	}
	s.in.replFrom = 0
	return s.appendLocked(keep, nil)
}

// appendLocked is Append, Replace or both (the flows from in.replFrom on
// replace stored versions: in blocks of their own). Caller holds wmu.
func (s *Store) appendLocked(flows []flow.Flow, obs flow.Seqs) error {
	in := &s.in
	if err := s.prepare(flows); err != nil {
		return err
	}
	d := s.dict
	mark := d.mark()
	dictSize := d.size
	for i := range flows {
		if p := &in.prep[i]; !p.found {
			p.pid, p.aid = d.lookup(&flows[i], p.reasons, &p.known)
		}
	}
	in.group(flows)
	part := s.opts.Partition.Nanoseconds()
	if len(in.buckets) == 0 {
		// Observations that made no flow still need marking done: write an
		// empty block in the newest segment (or a new one for now).
		in.buckets = append(in.buckets, time.Now().UnixNano()/part*part)
		in.offs = append(in.offs[:0], 0, 0)
	}
	// Jobs: a partition's flows go in one block, or in two (encoded on
	// two cores) when there are enough of them; the blocks of a partition
	// are consecutive parts of the transaction, in batch order.
	workers := min(2, runtime.GOMAXPROCS(0))
	in.jobs = in.jobs[:0]
	for k := range in.buckets {
		idx := in.order[in.offs[k]:in.offs[k+1]] // in batch order
		cut := len(idx)
		for cut > 0 && int(idx[cut-1]) >= in.replFrom {
			cut--
		}
		idx, repl := idx[:cut], idx[cut:]
		if n := len(idx); workers > 1 && n >= 2*minPerWorker {
			in.jobs = append(in.jobs, job{k, idx[:n/2], false}, job{k, idx[n/2:], false})
		} else if n > 0 || len(repl) == 0 {
			in.jobs = append(in.jobs, job{k, idx, false})
		}
		if len(repl) > 0 {
			// After the partition's new flows: a replaced flow may be one
			// of them, and the last version of a flow wins.
			in.jobs = append(in.jobs, job{k, repl, true})
		}
	}
	s.txn++
	txn := s.txn
	for len(in.writers) < len(in.jobs) {
		in.writers = append(in.writers, &blockWriter{d: d})
	}
	writers := in.writers[:len(in.jobs)]
	used := 0
	var dictErr error
	fail := func(err error) error {
		d.rollback(mark)
		if d.size != dictSize {
			_ = d.file.Truncate(dictSize)
			_ = d.mirror.Truncate(dictSize)
			d.size = dictSize
		}
		// Cut off the parts already written: their records refer to
		// dictionary entries just rolled back. A part that cannot be cut
		// off is ignored from now on (and at the next open).
		for _, w := range writers[:used] {
			if w.s.file != nil && w.s.size != w.size0 {
				if w.s.file.Truncate(w.size0) != nil {
					s.mu.Lock()
					s.skip = maps.Clone(s.skip)
					if s.skip == nil {
						s.skip = map[uint64]bool{}
					}
					s.skip[txn] = true
					s.mu.Unlock()
				}
				w.s.size = w.size0
			}
		}
		return err
	}
	for j, jb := range in.jobs {
		var seg *segment
		if j > 0 && in.jobs[j-1].bucket == jb.bucket {
			seg = writers[j-1].s
		} else {
			var err error
			if seg, err = s.segment(in.buckets[jb.bucket]); err != nil {
				return fail(err)
			}
		}
		writers[j].reset(seg)
		used++
	}
	// Dictionary entries first: segment blocks refer to them. Their write
	// and fsync overlap the encoding of the records.
	var dictDone sync.WaitGroup
	if d.mark() != mark {
		dictDone.Add(1)
		go func() {
			defer dictDone.Done()
			block := d.delta(mark)
			size := d.size
			dictErr = errors.Join(s.writeFile(d.file, d.path, &d.size, block, true),
				s.writeFile(d.mirror, d.mirrorPath, &size, block, true))
		}()
	}
	s.encode(flows, txn, obs)
	dictDone.Wait()
	if dictErr != nil {
		return fail(dictErr)
	}
	// One write and one fsync per segment file.
	for j := 0; j < len(writers); {
		w := writers[j]
		k := j
		for ; k < len(writers) && writers[k].s == w.s; k++ {
			if err := s.writeFile(w.s.file, w.s.path, &w.s.size, writers[k].out, false); err != nil {
				return fail(err)
			}
		}
		if err := s.syncFile(w.s.file, w.s.path); err != nil {
			return fail(err)
		}
		j = k
	}
	for _, w := range writers {
		w.commit(txn)
	}
	if len(obs) > 0 {
		s.mu.Lock()
		s.done.Merge(obs)
		s.mu.Unlock()
		s.wal.drop(s.doneSnapshot())
	}
	if time.Since(s.lastRetention) > 10*time.Second {
		s.lastRetention = time.Now()
		s.retainLocked(time.Now())
	}
	return nil
}

// encode fills the writers' blocks (part j of the transaction from job
// j), on up to two goroutines.
func (s *Store) encode(flows []flow.Flow, txn uint64, obs flow.Seqs) {
	in := &s.in
	jobs, writers := in.jobs, in.writers[:len(in.jobs)]
	var next atomic.Int32
	run := func() {
		for {
			j := int(next.Add(1)) - 1
			if j >= len(jobs) {
				return
			}
			w := writers[j]
			w.pend.grow(len(jobs[j].idx))
			for _, i := range jobs[j].idx {
				p := &in.prep[i]
				w.add(&flows[i], p.pid, p.aid, p.idms, p.idn, in.rels[p.worker][p.relLo:p.relHi])
			}
			if jobs[j].repl {
				w.pend.repl = w.nrec
			}
			var o flow.Seqs
			if j == len(jobs)-1 {
				o = obs // the agent records go with the last part
			}
			w.out = w.block(w.out, txn, j, len(jobs), o)
		}
	}
	if len(jobs) == 1 || runtime.GOMAXPROCS(0) == 1 {
		run()
		return
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		run()
	}()
	run()
	wg.Wait()
}

// prepare fills in.prep for flows, on up to maxWorkers goroutines: the
// partition, the parsed IDs, and the dictionary IDs when every entry is
// known already. It changes no dictionary, so it needs no rollback.
func (s *Store) prepare(flows []flow.Flow) error {
	in := &s.in
	if cap(in.prep) < len(flows) {
		in.prep = make([]prepared, len(flows))
	}
	in.prep = in.prep[:len(flows)]
	workers := min(maxWorkers, runtime.GOMAXPROCS(0), max(1, len(flows)/minPerWorker))
	per := (len(flows) + workers - 1) / workers
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*per, min(len(flows), (w+1)*per)
		if w == workers-1 {
			s.prepareRange(flows, lo, hi, w)
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.prepareRange(flows, lo, hi, w)
		}()
	}
	wg.Wait()
	for w := range workers {
		if e := in.errs[w]; e.err != nil {
			return fmt.Errorf("flow %d: %w", e.i, e.err)
		}
	}
	return nil
}

func (s *Store) prepareRange(flows []flow.Flow, lo, hi, w int) {
	in := &s.in
	d := s.dict
	part := s.opts.Partition.Nanoseconds()
	rels := in.rels[w][:0]
	in.errs[w] = prepErr{}
	defer func() { in.rels[w] = rels }()
	for i := lo; i < hi; i++ {
		f := &flows[i]
		p := &in.prep[i]
		ns := f.Start.UnixNano()
		if ns < 0 {
			in.errs[w] = prepErr{i, fmt.Errorf("start %v before 1970", f.Start)}
			return
		}
		idms, idn, err := parseID(f.ID)
		if err != nil {
			in.errs[w] = prepErr{i, err}
			return
		}
		*p = prepared{bucket: ns / part * part, idms: idms, idn: idn, worker: uint8(w), relLo: int32(len(rels))}
		for _, r := range f.Related {
			rms, rn, err := parseID(r.ID)
			bit := flow.ReasonBit(r.Reason)
			if err != nil || bit == 0 {
				in.errs[w] = prepErr{i, fmt.Errorf("related %q (%s): bad ID or reason", r.ID, r.Reason)}
				return
			}
			rels = append(rels, rel{idms: rms, idn: rn, reason: bit})
			p.reasons |= bit
		}
		p.relHi = int32(len(rels))
		p.pid, p.aid, p.found = d.probe(f, p.reasons, &p.known)
	}
}

// group sorts the flows by partition: in.buckets in ascending order,
// in.order and in.offs listing each one's flows (in batch order).
func (in *ingest) group(flows []flow.Flow) {
	in.buckets = in.buckets[:0]
	if in.bidx == nil {
		in.bidx = map[int64]int32{}
	}
	clear(in.bidx)
	last, lastK := int64(0), int32(-1)
	for i := range flows {
		p := &in.prep[i]
		if lastK < 0 || p.bucket != last {
			k, ok := in.bidx[p.bucket]
			if !ok {
				k = int32(len(in.buckets))
				in.bidx[p.bucket] = k
				in.buckets = append(in.buckets, p.bucket)
			}
			last, lastK = p.bucket, k
		}
		p.bi = lastK
	}
	// Rank the buckets by time.
	sorted := slices.Clone(in.buckets)
	slices.Sort(sorted)
	rank := make([]int32, len(in.buckets))
	for r, b := range sorted {
		rank[in.bidx[b]] = int32(r)
	}
	in.buckets = sorted
	in.offs = append(in.offs[:0], make([]int32, len(sorted)+1)...)
	for i := range flows {
		p := &in.prep[i]
		p.bi = rank[p.bi]
		in.offs[p.bi+1]++
	}
	for k := range sorted {
		in.offs[k+1] += in.offs[k]
	}
	if cap(in.order) < len(flows) {
		in.order = make([]int32, len(flows))
	}
	in.order = in.order[:len(flows)]
	next := slices.Clone(in.offs[:len(sorted)])
	for i := range flows {
		k := in.prep[i].bi
		in.order[next[k]] = int32(i)
		next[k]++
	}
}

// parseID is flow.ParseID returning the ID's time as unix ms, by table
// (the hot path of Append; flow.ParseID makes the error).
func parseID(id string) (ms int64, n uint64, err error) {
	if len(id) != 28 {
		_, _, err = flow.ParseID(id)
		return 0, 0, err
	}
	var t, bad uint64
	for i := range 12 {
		v := uint64(hexVal[id[i]])
		bad |= v
		t = t<<4 | v
	}
	for i := 12; i < 28; i++ {
		v := uint64(hexVal[id[i]])
		bad |= v
		n = n<<4 | v&15
	}
	if bad > 15 {
		_, _, err = flow.ParseID(id)
		return 0, 0, err
	}
	return int64(t), n, nil
}

// hexVal is the value of a hex digit, 0xff for other bytes.
var hexVal = func() (t [256]uint8) {
	for i := range t {
		t[i] = 0xff
	}
	for i, c := range "0123456789abcdef" {
		t[c] = uint8(i)
	}
	for i, c := range "ABCDEF" {
		t[c] = uint8(10 + i)
	}
	return t
}()
