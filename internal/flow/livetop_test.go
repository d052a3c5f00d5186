package flow_test

import (
	"context"
	"reflect"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/flow/store"
)

// Top counts provisional flows as Search returns them: before their
// window closes, and once (not twice) after they are stored.
func TestTopCountsProvisionalFlows(t *testing.T) {
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
	top := func(filter, by string) []flow.TopEntry {
		t.Helper()
		out, err := svc.TopWhere(filter, by, t0.Add(-time.Hour), time.Now().Add(time.Hour), 10)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if err := svc.Ingest(context.Background(), testBatch(1)); err != nil {
		t.Fatal(err)
	}
	clk.add(time.Second)
	if err := svc.Flush(false); err != nil {
		t.Fatal(err)
	}
	fs, err := svc.Search("", t0.Add(-time.Hour), time.Now().Add(time.Hour), 100)
	if err != nil || len(fs) != 2 || svc.Metrics().FlowsStored != 0 {
		t.Fatalf("provisional: %v %d flows, %+v", err, len(fs), svc.Metrics())
	}
	byPort := top("", "dst.port")
	var want []flow.TopEntry // one flow per port: by key
	for _, f := range fs {
		want = append(want, flow.TopEntry{Key: strconv.Itoa(int(f.Dst.Port)), Flows: 1, Conns: f.Conns, Bytes: f.FwdBytes + f.RevBytes})
	}
	sort.Slice(want, func(i, j int) bool { return want[i].Key < want[j].Key })
	if !reflect.DeepEqual(byPort, want) {
		t.Fatalf("top of provisional flows: %+v, want %+v", byPort, want)
	}
	if got := top("dst.port = 8080", "pair"); len(got) != 1 || got[0].Flows != 1 {
		t.Fatalf("top with a filter: %+v", got)
	}
	// The window closes: stored, counted once.
	clk.add(time.Minute)
	if err := svc.Flush(false); err != nil {
		t.Fatal(err)
	}
	if m := svc.Metrics(); m.FlowsStored != 2 || m.PendingFlows != 0 {
		t.Fatalf("not stored: %+v", m)
	}
	if got := top("", "dst.port"); !reflect.DeepEqual(got, want) {
		t.Fatalf("top of stored flows: %+v, want %+v", got, want)
	}
}
