package store

import (
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
)

// Replace stores a new version of a flow (a late related partner linked
// it): searches, Get and Top see only the last version, hot, cold, after a
// reopen and after compaction; a flow whose segment is gone is not stored
// again.
func TestReplace(t *testing.T) {
	dir := t.TempDir()
	o := Options{Partition: time.Minute, HotWindow: 1000 * 24 * time.Hour}
	s := open(t, dir, o)
	var fs []flow.Flow
	for i := range 20 {
		fs = append(fs, testFlow(i, t0.Add(time.Duration(i)*time.Second)))
	}
	if err := s.Append(fs, nil); err != nil {
		t.Fatal(err)
	}
	a := fs[3]
	a.Related = []flow.Related{{ID: fs[4].ID, Reason: flow.ReasonClusterIP}}
	b := fs[4]
	b.Related = []flow.Related{{ID: fs[3].ID, Reason: flow.ReasonClusterIP}}
	gone := testFlow(99, t0.Add(time.Hour)) // no segment of its own
	if err := s.Replace([]flow.Flow{a, b, gone}); err != nil {
		t.Fatal(err)
	}
	check := func(what string) {
		t.Helper()
		all, _ := s.Search(query(t, "", 100))
		if len(all) != 20 {
			t.Fatalf("%s: %d flows, want 20", what, len(all))
		}
		if st := s.Stats(); st.Flows != 20 {
			t.Fatalf("%s: stats %+v", what, st)
		}
		rel, _ := s.Search(query(t, `related contains "clusterip-dnat"`, 100))
		if len(rel) != 2 || rel[0].ID != b.ID || rel[1].ID != a.ID || rel[1].Related[0].ID != b.ID {
			t.Fatalf("%s: related: %+v", what, rel)
		}
		for _, f := range []flow.Flow{a, b} {
			got, ok, err := s.Get(f.ID)
			if err != nil || !ok || len(got.Related) != 1 {
				t.Fatalf("%s: get %s: %v %v %+v", what, f.ID, ok, err, got)
			}
		}
		top, _ := s.Top(query(t, "", 0), "dst.port", 5)
		n := uint64(0)
		for _, e := range top {
			n += e.Flows
		}
		if n != 20 {
			t.Fatalf("%s: top counts %d flows", what, n)
		}
	}
	check("hot")
	s.opts.HotWindow = time.Nanosecond
	s.Retain(time.Now())
	check("cold")
	s.Close()
	s = open(t, dir, Options{Partition: time.Minute, HotWindow: time.Nanosecond})
	check("reopened cold")
	s.Close()
	s = open(t, dir, o)
	check("reopened hot")
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	check("compacted")
	s.Close()
	s = open(t, dir, o)
	defer s.Close()
	check("compacted, reopened")
}

// AppendReplace stores new flows and new versions of stored ones in one
// transaction (one block per partition and kind, one fsync per file):
// a late partner and its partner's new version, and a flow replaced in the
// same call (the new version wins), hot, cold and reopened.
func TestAppendReplaceOneWrite(t *testing.T) {
	dir := t.TempDir()
	o := Options{Partition: time.Minute, HotWindow: 1000 * 24 * time.Hour}
	s := open(t, dir, o)
	var fs []flow.Flow
	for i := range 10 {
		fs = append(fs, testFlow(i, t0.Add(time.Duration(i)*time.Second)))
	}
	if err := s.Append(fs, nil); err != nil {
		t.Fatal(err)
	}
	late := testFlow(10, t0.Add(20*time.Second))
	late.Related = []flow.Related{{ID: fs[3].ID, Reason: flow.ReasonClusterIP}}
	early := fs[3]
	early.Related = []flow.Related{{ID: late.ID, Reason: flow.ReasonClusterIP}}
	fresh := testFlow(11, t0.Add(30*time.Second))
	freshV2 := fresh
	freshV2.Related = []flow.Related{{ID: late.ID, Reason: flow.ReasonClusterIP}}
	obs := flow.Seqs{}
	obs.Add("agent", 7)
	txn := s.txn
	if err := s.AppendReplace([]flow.Flow{late, fresh}, []flow.Flow{early, freshV2, testFlow(99, t0.Add(time.Hour))}, obs); err != nil {
		t.Fatal(err)
	}
	if s.txn != txn+1 {
		t.Fatalf("%d transactions, want 1", s.txn-txn)
	}
	check := func(what string) {
		t.Helper()
		all, _ := s.Search(query(t, "", 100))
		if len(all) != 12 || s.Stats().Flows != 12 || !s.Done("agent", 7) {
			t.Fatalf("%s: %d flows, stats %+v", what, len(all), s.Stats())
		}
		for _, f := range []flow.Flow{late, early, freshV2} {
			got, ok, err := s.Get(f.ID)
			if err != nil || !ok || len(got.Related) != 1 || got.Related[0].ID != f.Related[0].ID {
				t.Fatalf("%s: get %s: %v %v %+v", what, f.ID, ok, err, got)
			}
		}
	}
	check("hot")
	s.opts.HotWindow = time.Nanosecond
	s.Retain(time.Now())
	check("cold")
	s.Close()
	s = open(t, dir, Options{Partition: time.Minute, HotWindow: time.Nanosecond})
	defer s.Close()
	check("reopened cold")
}
