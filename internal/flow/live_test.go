package flow_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/flow/store"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// A flow is searchable (and followed) at the first flush after its
// report, long before its dedup window closes; more observation points
// update it in place (same ID); once stored it is found once, under the
// same ID, with the same points and relations.
func TestProvisionalFlowsAndFollow(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	clk := &clock{t: time.Now()}
	svc, err := flow.NewService(st, nil, flow.Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	fol, err := svc.Follow(`dst.port = 8080`)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Unfollow(fol)
	if _, err := svc.Follow(`dst.port = = 1`); err == nil {
		t.Fatal("bad follow filter accepted")
	}
	b := testBatch(1)
	first := b
	first.Observations = b.Observations[:2] // pre-NAT at veth1, post-NAT at veth2
	first.NAT = b.NAT
	if err := svc.Ingest(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	clk.add(time.Second)
	if err := svc.Flush(false); err != nil {
		t.Fatal(err)
	}
	search := func(filter string) []flow.Flow {
		t.Helper()
		fs, err := svc.Search(filter, t0.Add(-time.Hour), time.Now(), 100)
		if err != nil {
			t.Fatal(err)
		}
		return fs
	}
	fs := search("dst.port = 8080")
	if len(fs) != 1 || len(fs[0].Points) != 1 || len(fs[0].Related) != 1 {
		t.Fatalf("provisional: %+v", fs)
	}
	id := fs[0].ID
	select {
	case f := <-fol.C:
		if f.ID != id {
			t.Fatalf("followed %s, want %s", f.ID, id)
		}
	case <-time.After(time.Second):
		t.Fatal("follower got nothing")
	}
	if d, err := svc.Get(id); err != nil || len(d.RelatedFlows) != 1 {
		t.Fatalf("get provisional: %v %+v", err, d)
	}
	// A second point joins: the same record, updated.
	second := b
	second.Observations, second.NAT = b.Observations[2:], nil
	if err := svc.Ingest(context.Background(), second); err != nil {
		t.Fatal(err)
	}
	clk.add(time.Second)
	svc.Flush(false)
	fs = search("dst.port = 8080")
	if len(fs) != 1 || fs[0].ID != id || len(fs[0].Points) != 2 {
		t.Fatalf("updated in place: %+v", fs)
	}
	select {
	case f := <-fol.C:
		t.Fatalf("followed twice: %+v", f)
	default:
	}
	// The window closes: stored, found once.
	clk.add(time.Minute)
	if err := svc.Flush(false); err != nil {
		t.Fatal(err)
	}
	if m := svc.Metrics(); m.FlowsStored != 2 || m.PendingFlows != 0 {
		t.Fatalf("not stored: %+v", m)
	}
	fs = search("")
	if len(fs) != 2 {
		t.Fatalf("after storing: %d flows", len(fs))
	}
	for _, f := range fs {
		if f.Dst.Port == 8080 && (f.ID != id || len(f.Points) != 2 || len(f.Related) != 1) {
			t.Fatalf("stored: %+v", f)
		}
	}
}

// A related partner reported after the first flow was stored links both
// ways, in the store: the first flow is stored again with the link.
func TestLatePartnerStored(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	clk := &clock{t: time.Now()}
	svc, err := flow.NewService(st, nil, flow.Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	b := testBatch(1)
	first := b
	first.Observations = b.Observations[:1] // pod1→svc at veth1, with the NAT mapping
	if err := svc.Ingest(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	clk.add(time.Minute)
	svc.Flush(false)
	late := b
	late.Observations, late.NAT = b.Observations[1:], nil // pod1→pod2, a minute late
	if err := svc.Ingest(context.Background(), late); err != nil {
		t.Fatal(err)
	}
	clk.add(time.Minute)
	if err := svc.Flush(false); err != nil {
		t.Fatal(err)
	}
	if m := svc.Metrics(); m.FlowsStored != 2 || m.FlowsUpdated != 1 {
		t.Fatalf("metrics: %+v", m)
	}
	fs, err := st.Search(mustQuery(t, ""))
	if err != nil || len(fs) != 2 {
		t.Fatalf("stored: %v %+v", err, fs)
	}
	if len(fs[0].Related) != 1 || len(fs[1].Related) != 1 || fs[0].Related[0].ID != fs[1].ID || fs[1].Related[0].ID != fs[0].ID {
		t.Fatalf("not linked both ways in the store: %+v", fs)
	}
}

func mustQuery(t *testing.T, filter string) flow.Query {
	t.Helper()
	q, err := flow.NewQuery(filter, t0.Add(-time.Hour).UnixNano(), time.Now().Add(time.Hour).UnixNano(), 100)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func TestSearchableLatencyRecorded(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	clk := &clock{t: time.Now()}
	svc, err := flow.NewService(st, nil, flow.Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Ingest(context.Background(), testBatch(1)); err != nil {
		t.Fatal(err)
	}
	clk.add(700 * time.Millisecond)
	svc.Flush(false)
	if p50, p99 := svc.SearchableLatency(); p50 != 700*time.Millisecond || p99 != 700*time.Millisecond {
		t.Fatalf("latency: %v %v", p50, p99)
	}
}
