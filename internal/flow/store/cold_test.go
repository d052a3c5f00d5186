package store

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/flow/flowgen"
)

// syncBuf is a log sink tests read.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func logTo(b *syncBuf) *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// fill appends n generated flows spread over [t0, t1) in batches of
// 10,000.
func fill(t testing.TB, s *Store, g *flowgen.Gen, n int, t0, t1 time.Time) {
	t.Helper()
	step := t1.Sub(t0) / time.Duration(n)
	batch := make([]flow.Flow, 10_000)
	for done := 0; done < n; {
		k := min(len(batch), n-done)
		for i := range k {
			g.Flow(&batch[i], t0.Add(time.Duration(done+i)*step))
		}
		if err := s.Append(batch[:k], nil); err != nil {
			t.Fatal(err)
		}
		done += k
	}
}

// answers runs the whole search benchmark query mix, Top and Get, and
// returns everything they answered.
type answers struct {
	search map[string][]flow.Flow
	top    map[string][]flow.TopEntry
	get    map[string]flow.Flow
}

func ask(t *testing.T, s *Store, mix []namedQuery) answers {
	t.Helper()
	a := answers{search: map[string][]flow.Flow{}, top: map[string][]flow.TopEntry{}, get: map[string]flow.Flow{}}
	for _, q := range mix {
		fs, err := s.Search(q.q)
		if err != nil {
			t.Fatalf("%s: %v", q.name, err)
		}
		a.search[q.name] = fs
		for _, by := range []string{"src.namespace", "pair"} {
			top, err := s.Top(q.q, by, 20)
			if err != nil {
				t.Fatalf("%s: top: %v", q.name, err)
			}
			a.top[q.name+" by "+by] = top
		}
		for i, f := range fs {
			if i%37 == 0 {
				g, ok, err := s.Get(f.ID)
				if err != nil || !ok {
					t.Fatalf("get %s: %v %v", f.ID, ok, err)
				}
				a.get[f.ID] = g
			}
		}
	}
	return a
}

func sameAnswers(t *testing.T, what string, want, got answers) {
	t.Helper()
	for name, w := range want.search {
		g := got.search[name]
		if len(g) != len(w) {
			t.Errorf("%s: %s: %d flows, want %d", what, name, len(g), len(w))
			continue
		}
		for i := range w {
			if !reflect.DeepEqual(w[i], g[i]) {
				t.Errorf("%s: %s: flow %d differs:\n got %+v\nwant %+v", what, name, i, g[i], w[i])
				break
			}
		}
	}
	if !reflect.DeepEqual(want.top, got.top) {
		t.Errorf("%s: Top answers differ", what)
	}
	if !reflect.DeepEqual(want.get, got.get) {
		t.Errorf("%s: Get answers differ", what)
	}
}

// A store filled well beyond its hot window answers the whole search
// benchmark mix (IDs, order and contents), Top and Get the same with every
// segment resident, with every segment evicted in place, and reopened
// cold from its summaries (with no cache, so every query reads from disk).
func TestColdSegmentsAnswerLikeHot(t *testing.T) {
	n := 2_000_000
	if testing.Short() {
		n = 300_000
	}
	if v := os.Getenv("FLOWSTORE_EQUIV_FLOWS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	dir := t.TempDir()
	t1 := time.Now().Add(-2 * time.Hour).Truncate(time.Hour)
	t0 := t1.Add(-48 * time.Hour)
	allHot := Options{HotWindow: 1000 * 24 * time.Hour}
	s := open(t, dir, allHot)
	fill(t, s, flowgen.New(3), n, t0, t1)
	mix := queryMix(t, t0, t1)
	st := s.Stats()
	if st.Flows != n || st.HotSegments != st.Segments || st.Segments < 200 {
		t.Fatalf("filled: %+v", st)
	}
	want := ask(t, s, mix)
	for _, q := range mix {
		t.Logf("%-32s %4d flows", q.name, len(want.search[q.name]))
	}

	// Evicted in place.
	s.opts.HotWindow = time.Nanosecond
	s.Retain(time.Now())
	if st := s.Stats(); st.HotSegments != 0 || st.Flows != n {
		t.Fatalf("after eviction: %+v", st)
	}
	sameAnswers(t, "evicted in place", want, ask(t, s, mix))
	s.Close()

	// Reopened cold, nothing cached: every query reads its segments.
	s = open(t, dir, Options{HotWindow: time.Nanosecond, ColdCacheBytes: 1})
	if st := s.Stats(); st.HotSegments != 0 || st.Flows != n {
		t.Fatalf("reopened cold: %+v", st)
	}
	if st := s.Stats(); st.ColdRowOnly != 0 {
		t.Fatalf("reopened cold without column files: %+v", st)
	}
	reads := s.Stats().ColdReads
	sameAnswers(t, "reopened cold", want, ask(t, s, mix))
	if s.Stats().ColdReads == reads {
		t.Fatalf("no segment read from disk")
	}
	// The summaries skip segments that cannot match: a pair that never
	// talked reads nothing.
	reads = s.Stats().ColdReads
	if fs, _ := s.Search(mix[2].q); len(fs) != 0 {
		t.Fatalf("rare pair: %d flows", len(fs))
	}
	if r := s.Stats().ColdReads - reads; r != 0 {
		t.Fatalf("rare pair read %d cold segments", r)
	}
	s.Close()

	// A store written before column files (row files only) answers the
	// same, and retention passes write the column files.
	cols, _ := filepath.Glob(filepath.Join(dir, "*"+colSuffix))
	if len(cols) != st.Segments {
		t.Fatalf("%d column files for %d segments", len(cols), st.Segments)
	}
	for _, p := range cols {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	var log syncBuf
	s = open(t, dir, Options{HotWindow: time.Nanosecond, Logger: logTo(&log)})
	if st := s.Stats(); st.ColdRowOnly == 0 || !strings.Contains(log.String(), "without a current column file") {
		t.Fatalf("row files only: %+v\n%s", st, log.String())
	}
	sameAnswers(t, "row files only", want, ask(t, s, mix))
	for s.Stats().ColdRowOnly > 0 {
		s.Retain(time.Now())
	}
	if !strings.Contains(log.String(), "wrote the column files of cold segments") {
		t.Fatalf("conversion not logged:\n%s", log.String())
	}
	sameAnswers(t, "converted", want, ask(t, s, mix))
	s.Close()

	// And hot again.
	s = open(t, dir, allHot)
	defer s.Close()
	sameAnswers(t, "reopened hot", want, ask(t, s, mix))
}

// nsFlow is testFlow in namespace ns (a dictionary entry of its own).
func nsFlow(i int, at time.Time, ns string) flow.Flow {
	f := testFlow(i, at)
	f.Src.Namespace = ns
	f.Src.Workload = "c/pod/" + ns + "/client"
	return f
}

func TestRetentionByAgeDropsOldestAndDictionary(t *testing.T) {
	dir := t.TempDir()
	var log syncBuf
	s := open(t, dir, Options{Partition: time.Minute, MaxAge: 90 * time.Minute, Logger: logTo(&log)})
	now := time.Now()
	for h := 5; h >= 0; h-- {
		var fs []flow.Flow
		for i := range 50 {
			fs = append(fs, nsFlow(h*100+i, now.Add(-time.Duration(h)*time.Hour+time.Duration(i)*time.Second), fmt.Sprintf("gone-%d", h)))
		}
		if err := s.Append(fs, nil); err != nil {
			t.Fatal(err)
		}
	}
	before := s.Stats()
	s.Retain(now)
	after := s.Stats()
	if after.Flows != 100 {
		t.Fatalf("retention by age: before %+v, after %+v", before, after)
	}
	if fs, _ := s.Search(query2(t, `src.namespace = "gone-0"`, now)); len(fs) != 50 {
		t.Fatalf("the newest hour: %d flows", len(fs))
	}
	for h := 2; h <= 5; h++ {
		if _, ok := s.dict.strProbe(fmt.Sprintf("gone-%d", h)); ok {
			t.Fatalf("dictionary still holds gone-%d", h)
		}
	}
	if after.DictEntries >= before.DictEntries {
		t.Fatalf("dictionary not compacted: %d → %d entries", before.DictEntries, after.DictEntries)
	}
	if !strings.Contains(log.String(), "dictionaries compacted") {
		t.Fatalf("no compaction logged:\n%s", log.String())
	}
	// New flows after the compaction, then a reopen.
	if err := s.Append([]flow.Flow{nsFlow(999, now, "new")}, nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir, Options{Partition: time.Minute, MaxAge: 90 * time.Minute})
	defer s.Close()
	if fs, _ := s.Search(query2(t, "", now)); len(fs) != 101 {
		t.Fatalf("after reopen: %d flows", len(fs))
	}
	if fs, _ := s.Search(query2(t, `src.namespace = "new"`, now)); len(fs) != 1 {
		t.Fatalf("after reopen: %d new flows", len(fs))
	}
	if _, ok := s.dict.strProbe("gone-3"); ok {
		t.Fatalf("dictionary holds gone-3 after reopen")
	}
}

func query2(t *testing.T, src string, now time.Time) flow.Query {
	t.Helper()
	q, err := flow.NewQuery(src, now.Add(-10*time.Hour).UnixNano(), now.Add(time.Hour).UnixNano(), 10000)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func TestRetentionByBytesDropsOldest(t *testing.T) {
	dir := t.TempDir()
	const limit = 40_000
	s := open(t, dir, Options{Partition: time.Minute, MaxBytes: limit})
	defer s.Close()
	now := time.Now().Truncate(time.Minute)
	for m := 30; m >= 0; m-- {
		var fs []flow.Flow
		for i := range 100 {
			fs = append(fs, nsFlow(m*1000+i, now.Add(-time.Duration(m)*time.Minute+time.Duration(i)*100*time.Millisecond), fmt.Sprintf("m-%d", m)))
		}
		if err := s.Append(fs, nil); err != nil {
			t.Fatal(err)
		}
	}
	s.Retain(now)
	st := s.Stats()
	var onDisk int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), segSuffix) {
			fi, _ := e.Info()
			onDisk += fi.Size()
		}
	}
	if st.Bytes > limit || onDisk > limit || st.Segments == 0 || st.Segments >= 31 {
		t.Fatalf("retention by bytes: %+v, %d bytes of segments on disk", st, onDisk)
	}
	// The newest are kept, the oldest gone.
	kept := st.Segments
	for m := range 31 {
		fs, _ := s.Search(query2(t, fmt.Sprintf(`src.namespace = "m-%d"`, m), now))
		if want := 100 * b2i(m < kept); len(fs) != want {
			t.Fatalf("minute -%d: %d flows, want %d (%d segments kept)", m, len(fs), want, kept)
		}
		if _, ok := s.dict.strProbe(fmt.Sprintf("m-%d", m)); ok != (m < kept) {
			t.Fatalf("dictionary entry of minute -%d: %v", m, ok)
		}
	}
}

// A crash during compaction, before or after its commit point, loses
// nothing: the reopened store has every flow and every done record.
func TestCrashDuringCompaction(t *testing.T) {
	for _, stage := range []string{"written", "marked"} {
		t.Run(stage, func(t *testing.T) {
			dir := t.TempDir()
			now := time.Now()
			s := open(t, dir, Options{Partition: time.Minute})
			obs := flow.Seqs{}
			for m := 0; m < 10; m++ {
				var fs []flow.Flow
				for i := range 20 {
					fs = append(fs, nsFlow(m*100+i, now.Add(-time.Duration(m)*time.Minute), fmt.Sprintf("m-%d", m)))
				}
				o := flow.Seqs{}
				o.Add("agent", uint64(m+1))
				obs.Merge(o)
				if err := s.Append(fs, o); err != nil {
					t.Fatal(err)
				}
			}
			// Drop half, then compact with a crash at stage.
			s.opts.MaxAge = 5*time.Minute - time.Second
			compactHook = func(at string) error {
				if at == stage {
					return fmt.Errorf("crash at %s", at)
				}
				return nil
			}
			s.Retain(now)
			compactHook = nil
			kept := s.Stats().Flows
			s.Close()
			s = open(t, dir, Options{Partition: time.Minute})
			defer s.Close()
			if fs, _ := s.Search(query2(t, "", now)); len(fs) != kept || kept == 0 {
				t.Fatalf("after the crash: %d flows, want %d", len(fs), kept)
			}
			for m := 1; m <= 10; m++ {
				if !s.Done("agent", uint64(m)) {
					t.Fatalf("record %d no longer done", m)
				}
			}
			left, _ := filepath.Glob(filepath.Join(dir, "*"+compactSuffix))
			if _, err := os.Stat(filepath.Join(dir, compactMarker)); err == nil || len(left) > 0 {
				t.Fatalf("compaction files left: %v", left)
			}
			if _, ok := s.dict.strProbe("m-9"); ok == (stage == "marked") {
				t.Fatalf("stage %s: dictionary entry of a dropped segment present: %v", stage, ok)
			}
			// Still writable.
			if err := s.Append([]flow.Flow{nsFlow(5000, now, "after")}, nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}
