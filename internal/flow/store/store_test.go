package store

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/inventory"
)

var t0 = time.Date(2025, 11, 25, 10, 0, 0, 0, time.UTC)

func testFlow(i int, at time.Time) flow.Flow {
	ns := []string{"shop", "db", "web"}[i%3]
	f := flow.Flow{
		ID:    flow.MakeID(at, uint64(i)+1),
		Mode:  flow.DetailedMode,
		Proto: "tcp",
		Src: flow.Endpoint{IP: fmt.Sprintf("10.244.1.%d", i%50), Port: uint16(30000 + i%1000), Workload: "c/pod/" + ns + "/client",
			Kind: "pod", Name: fmt.Sprintf("client-%d", i%50), Namespace: ns,
			Labels: map[string]string{"app": "client", "tier": ns}, Owner: &inventory.Owner{Kind: "Deployment", Name: "client"}},
		Dst:   flow.Endpoint{IP: "10.244.2.7", Port: uint16(80 + i%3), Kind: "pod", Name: "server", Namespace: "db", Service: "db/server"},
		Start: at, End: at.Add(time.Second),
		FwdPackets: 10, FwdBytes: uint64(1000 + i), RevPackets: 5, RevBytes: 500, Conns: 1,
		Flags:   []string{flow.FlagSYN, flow.FlagSYNACK},
		Replied: i%2 == 0,
		Points:  []flow.ObservationPoint{{Node: "node1", Interface: "veth1", Kind: "pod", Pod: ns + "/client"}},
	}
	return f
}

func open(t *testing.T, dir string, o Options) *Store {
	t.Helper()
	s, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func query(t *testing.T, src string, limit int) flow.Query {
	t.Helper()
	q, err := flow.NewQuery(src, t0.Add(-time.Hour).UnixNano(), t0.Add(time.Hour).UnixNano(), limit)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func TestDurableReopen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	var flows []flow.Flow
	for i := range 100 {
		flows = append(flows, testFlow(i, t0.Add(time.Duration(i)*time.Second)))
	}
	flows[1].Related = []flow.Related{{ID: flows[2].ID, Reason: flow.ReasonClusterIP}}
	flows[2].Related = []flow.Related{{ID: flows[1].ID, Reason: flow.ReasonClusterIP}}
	obs := flow.Seqs{}
	for i := range uint64(100) {
		obs.Add("agent-1", i+1)
	}
	if err := s.Append(flows[:50], flow.Seqs{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(flows[50:], obs); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, Options{})
	defer s.Close()
	if st := s.Stats(); st.Flows != 100 {
		t.Fatalf("reopened: %+v", st)
	}
	if !s.Done("agent-1", 42) || s.Done("agent-1", 101) || s.Done("agent-2", 1) {
		t.Fatalf("done set not restored")
	}
	got, ok, err := s.Get(flows[1].ID)
	if err != nil || !ok {
		t.Fatalf("get: %v %v", ok, err)
	}
	want := flows[1]
	if got.ID != want.ID || got.Src.Labels["tier"] != want.Src.Labels["tier"] || got.Src.Owner.Name != "client" ||
		got.Src.Port != want.Src.Port || got.Dst.Port != want.Dst.Port || got.FwdBytes != want.FwdBytes ||
		!got.Start.Equal(want.Start) || !got.End.Equal(want.End) || got.Replied != want.Replied ||
		len(got.Related) != 1 || got.Related[0].ID != flows[2].ID || got.Related[0].Reason != flow.ReasonClusterIP ||
		len(got.Points) != 1 || got.Points[0] != want.Points[0] || len(got.Flags) != 2 || got.Dst.Service != "db/server" {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
	// Appending after reopen reuses the dictionaries.
	if err := s.Append([]flow.Flow{testFlow(200, t0)}, nil); err != nil {
		t.Fatal(err)
	}
	if fs, _ := s.Search(query(t, "", 1000)); len(fs) != 101 {
		t.Fatalf("after append: %d", len(fs))
	}
}

func TestTornTailAndIncompleteTransaction(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{Partition: time.Minute})
	if err := s.Append([]flow.Flow{testFlow(1, t0)}, nil); err != nil {
		t.Fatal(err)
	}
	// A crash in the middle of a two-part transaction: the first part is
	// whole, the second never written; then a torn block.
	seg := newSegment(t0.UnixNano(), "")
	w := seg.writer(s.dict)
	f := testFlow(1, t0)
	f.ID = flow.MakeID(t0, 12345)
	idt, idn, _ := flow.ParseID(f.ID)
	pid, aid := s.dict.lookup(&f, 0, &known{})
	w.add(&f, pid, aid, idt.UnixMilli(), idn, nil)
	s.Close()
	path := filepath.Join(dir, fmt.Sprintf("seg-%d.pfs", t0.UnixNano()/int64(time.Minute)*int64(time.Minute)))
	fh, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.Write(w.block(nil, 99, 0, 2, flow.Seqs{"a": {}}))
	fh.Write([]byte("PFB1\x50\x00\x00\x00garbage"))
	fh.Close()
	s = open(t, dir, Options{Partition: time.Minute})
	defer s.Close()
	if st := s.Stats(); st.Flows != 1 {
		t.Fatalf("want only the complete transaction's flow: %+v", st)
	}
	if err := s.Append([]flow.Flow{testFlow(3, t0)}, nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir, Options{Partition: time.Minute})
	if st := s.Stats(); st.Flows != 2 {
		t.Fatalf("after truncation and append: %+v", st)
	}
}

func TestSearchFilters(t *testing.T) {
	s := open(t, t.TempDir(), Options{Partition: time.Minute})
	defer s.Close()
	var flows []flow.Flow
	for i := range 300 {
		flows = append(flows, testFlow(i, t0.Add(time.Duration(i)*time.Second)))
	}
	flows[7].Related = []flow.Related{{ID: flows[8].ID, Reason: flow.ReasonEgress}}
	if err := s.Append(flows, nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		filter string
		want   int
	}{
		{"", 300},
		{`src.namespace = "shop"`, 100},
		{`src.namespace = shop and dst.port = 80`, 100},
		{`src.namespace = shop and dst.port = 81`, 0},
		{`src.label.tier in (db, web)`, 200},
		{`src.ip in 10.244.1.0/28`, 96},
		{`replied = true`, 150},
		{`replied = true and src.namespace = db`, 50},
		{`related contains "egress-snat"`, 1},
		{`related exists`, 1},
		{`observed_at contains node1 and flags contains SYN-ACK`, 300},
		{`src.port = 30005`, 1},
		{`fwd.bytes > 1250`, 49},
		{`not fwd.bytes > 1250 and src.namespace = db`, 84},
		{`bytes >= 1.75e3 and conns = 1`, 50},
		{`fwd.bytes = "1001"`, 1},
		{`packets != 15`, 0},
		{`src.owner.name = client and dst.service = "db/server"`, 300},
	} {
		fs, err := s.Search(query(t, c.filter, 1000))
		if err != nil || len(fs) != c.want {
			t.Errorf("%s: got %d flows (%v), want %d", c.filter, len(fs), err, c.want)
		}
	}
	// Newest first, limited, time range.
	fs, _ := s.Search(query(t, "", 10))
	if len(fs) != 10 || fs[0].ID != flows[299].ID {
		t.Fatalf("limit/newest first: %d %v", len(fs), fs[0].ID)
	}
	q := query(t, "", 1000)
	q.From, q.To = t0.Add(100*time.Second).UnixNano(), t0.Add(109*time.Second).UnixNano()
	if fs, _ := s.Search(q); len(fs) != 11 { // overlapping [100s,109s]: starts 99..109
		t.Fatalf("time range: %d", len(fs))
	}
	top, _ := s.Top(query(t, "", 0), "dst.port", 2)
	if len(top) != 2 || top[0].Flows != 100 {
		t.Fatalf("top: %+v", top)
	}
	top, _ = s.Top(query(t, "", 0), "src.namespace", 0)
	if len(top) != 3 {
		t.Fatalf("top ns: %+v", top)
	}
}

func TestRetention(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{Partition: time.Minute, MaxAge: time.Hour})
	defer s.Close()
	now := time.Now()
	old := testFlow(1, now.Add(-3*time.Hour))
	if err := s.Append([]flow.Flow{old, testFlow(2, now)}, flow.Seqs{"a": {}}); err != nil {
		t.Fatal(err)
	}
	obs := flow.Seqs{}
	obs.Add("a", 7)
	if err := s.Append(nil, obs); err != nil {
		t.Fatal(err)
	}
	s.Retain(now)
	if st := s.Stats(); st.Flows != 1 || st.Segments != 1 {
		t.Fatalf("retention: %+v", st)
	}
	s.Close()
	s = open(t, dir, Options{Partition: time.Minute})
	if !s.Done("a", 7) {
		t.Fatalf("done set lost by retention")
	}
}

func TestWALPending(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	b := flow.Batch{Agent: "a", Node: "n", Observations: []flow.Observation{{Agent: "a", Seq: 1}, {Agent: "a", Seq: 2}}}
	if err := s.Log(&b); err != nil {
		t.Fatal(err)
	}
	obs := flow.Seqs{}
	obs.Add("a", 1)
	if err := s.Append([]flow.Flow{testFlow(1, t0)}, obs); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir, Options{})
	p, err := s.Pending()
	if err != nil || len(p) != 1 || len(p[0].Observations) != 1 || p[0].Observations[0].Seq != 2 {
		t.Fatalf("pending: %+v %v", p, err)
	}
	obs.Add("a", 2)
	if err := s.Append(nil, obs); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.Pending(); len(p) != 0 {
		t.Fatalf("pending after done: %+v", p)
	}
	s.Close()
}

// Records past the first chunk are found, searched and survive a reopen.
func TestChunks(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{Partition: 24 * time.Hour})
	n := chunkRows + 1000
	flows := make([]flow.Flow, 0, n)
	for i := range n {
		f := testFlow(i, t0.Add(time.Duration(i)*time.Millisecond))
		if i == n-1 {
			f.Related = []flow.Related{{ID: flows[0].ID, Reason: flow.ReasonVXLAN}}
		}
		flows = append(flows, f)
	}
	if err := s.Append(flows, nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir, Options{Partition: 24 * time.Hour})
	defer s.Close()
	got, ok, _ := s.Get(flows[n-1].ID)
	if !ok || got.FwdBytes != flows[n-1].FwdBytes || len(got.Related) != 1 || got.Related[0].ID != flows[0].ID {
		t.Fatalf("last flow: %v %+v", ok, got)
	}
	if fs, _ := s.Search(query(t, `related contains "overlay-vxlan"`, 10)); len(fs) != 1 || fs[0].ID != flows[n-1].ID {
		t.Fatalf("search past the first chunk: %d", len(fs))
	}
	if fs, _ := s.Search(query(t, `src.namespace = shop`, 100000)); len(fs) != (n+2)/3 {
		t.Fatalf("count: %d", len(fs))
	}
}

// A refused Append leaves nothing behind, in memory or on disk.
func TestAppendRollback(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{Partition: time.Minute})
	if err := s.Append([]flow.Flow{testFlow(1, t0)}, nil); err != nil {
		t.Fatal(err)
	}
	bad := []flow.Flow{testFlow(2, t0), testFlow(3, t0.Add(30*time.Minute))}
	bad[0].Src.Namespace = "brand-new" // new dictionary entries, then an error
	bad[1].ID = "not-an-id"
	if err := s.Append(bad, nil); err == nil {
		t.Fatal("bad ID accepted")
	}
	good := testFlow(4, t0)
	good.Dst.Namespace = "other-new"
	if err := s.Append([]flow.Flow{good}, nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir, Options{Partition: time.Minute})
	defer s.Close()
	fs, _ := s.Search(query(t, "", 100))
	if len(fs) != 2 || fs[0].Dst.Namespace != "other-new" && fs[1].Dst.Namespace != "other-new" {
		t.Fatalf("after rollback and reopen: %+v", fs)
	}
	if fs, _ := s.Search(query(t, `src.namespace = "brand-new"`, 100)); len(fs) != 0 {
		t.Fatalf("rolled-back flow visible")
	}
}

// A partition with many of a batch's flows gets two blocks, encoded on two
// cores: both are parts of the one transaction, so losing the second loses
// the first too (and the agent records marked done with it).
func TestTwoBlocksPerPartition(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{Partition: time.Hour})
	if err := s.Append([]flow.Flow{testFlow(0, t0)}, nil); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, fmt.Sprintf("seg-%d.pfs", t0.UnixNano()/int64(time.Hour)*int64(time.Hour)))
	st0, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 4 * minPerWorker
	flows := make([]flow.Flow, n)
	for i := range flows {
		flows[i] = testFlow(i+1, t0.Add(time.Duration(i)*time.Millisecond))
	}
	if err := s.Append(flows, flow.Seqs{"a": {}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var parts []blockInfo
	for rest := data[st0.Size():]; ; {
		payload, next, ok := unframe(rest)
		if !ok {
			break
		}
		parts = append(parts, blockTxn(payload))
		rest = next
	}
	if len(parts) != 2 || parts[0].parts != 2 || parts[0].part != 0 || parts[1].part != 1 || parts[0].txn != parts[1].txn {
		t.Fatalf("blocks: %+v", parts)
	}
	s = open(t, dir, Options{Partition: time.Hour})
	if st := s.Stats(); st.Flows != n+1 {
		t.Fatalf("flows: %+v", st)
	}
	for _, i := range []int{0, n/2 - 1, n / 2, n - 1} {
		if got, ok, _ := s.Get(flows[i].ID); !ok || got.FwdBytes != flows[i].FwdBytes || !got.Start.Equal(flows[i].Start) {
			t.Fatalf("flow %d: %v %+v", i, ok, got)
		}
	}
	s.Close()
	// Cut the second block short.
	if err := os.Truncate(path, int64(len(data)-10)); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, Options{Partition: time.Hour})
	defer s.Close()
	if st := s.Stats(); st.Flows != 1 {
		t.Fatalf("after a torn second part: %+v", st)
	}
}

func TestParseID(t *testing.T) {
	for _, id := range []string{flow.MakeID(t0, 1), flow.MakeID(t0.Add(123456789*time.Millisecond), 1<<63|12345),
		"0123456789ABCDEFabcdef012345", "0123456789abcdef0123456789a", "0123456789abcdef0123456789ag", "g123456789abcdef0123456789ab"} {
		ms, n, err := parseID(id)
		wt, wn, werr := flow.ParseID(id)
		if (err == nil) != (werr == nil) || err == nil && (ms != wt.UnixMilli() || n != wn) {
			t.Fatalf("%q: %d %d %v, want %d %d %v", id, ms, n, err, wt.UnixMilli(), wn, werr)
		}
	}
}

// numTest answers as flow.NumericCond.Holds for every operator.
func TestNumTestLikeHolds(t *testing.T) {
	for _, op := range append(slices.Clone(numOps), "bogus") {
		for _, not := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s not=%v", op, not), func(t *testing.T) {
				c := flow.NumericCond{Field: "bytes", Op: op, N: 1000, Not: not}
				nt := newNumTest(&c)
				for _, v := range []uint64{0, 999, 1000, 1001, 1 << 62} {
					if nt.holds(v) != c.Holds(v) {
						t.Fatalf("%d: %v, Holds says %v", v, nt.holds(v), c.Holds(v))
					}
				}
			})
		}
	}
}
