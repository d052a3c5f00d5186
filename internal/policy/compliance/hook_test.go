package compliance

import (
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/flow/store"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/policy"
	kvstore "github.com/palisade-dev/palisade/internal/store"
)

// The flow service hands the monitor the workload versions its pipeline
// resolved (flow.Ends): the hook decides with them, and they are the
// versions the flows' ends name.
func TestServiceHookDecidesWithPipelineEnds(t *testing.T) {
	kv, err := kvstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	inv := lab(t)
	m, err := Open(kv, inv, nil)
	if err != nil {
		t.Fatal(err)
	}
	set := policy.Set{
		Scopes: []policy.Scope{{Name: "shop", Filter: `namespace = "shop"`, CatchAll: policy.Deny}},
		Versions: map[string]*policy.Version{"shop": {Scope: "shop", Name: "v1", State: policy.Enforced, Policies: []policy.Policy{
			{Scope: "shop", Consumer: `label.app = "front"`, Provider: `label.app = "db"`, Action: policy.Allow, Ports: []string{"tcp/5432"}},
		}}},
	}
	if err := m.SetPolicy(set); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var calls, resolved int
	hook := func(flows []flow.Flow, ends []flow.Ends) {
		calls++
		if len(ends) != len(flows) {
			t.Errorf("hook: %d flows, %d ends", len(flows), len(ends))
		}
		for i := range ends {
			for _, x := range []struct {
				e *flow.Endpoint
				w string
			}{{&flows[i].Src, id(ends[i].Src)}, {&flows[i].Dst, id(ends[i].Dst)}} {
				if x.e.Workload != x.w {
					t.Errorf("flow %s: end %s names %q, its resolved version is %q", flows[i].ID, x.e.IP, x.e.Workload, x.w)
				}
				if x.w != "" {
					resolved++
				}
			}
		}
		m.Observe(flows, ends)
	}
	svc, err := flow.NewService(st, inv, flow.Options{OnFlows: hook})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-time.Minute).UTC()
	obs := func(seq uint64, port uint16, replied bool) flow.Observation {
		o := flow.Observation{Agent: "a1", Seq: seq, Mode: flow.ConversationMode,
			Point: flow.ObservationPoint{Node: "n1", Interface: "veth1", Kind: "pod"},
			Tuple: flow.Tuple{Proto: "tcp", SrcIP: "10.244.1.10", DstIP: "10.244.1.11", DstPort: port},
			Start: at, End: at.Add(time.Second), FwdPackets: 1, Flags: []string{flow.FlagSYN}, Conns: 1, NewConns: 1}
		if replied {
			o.RevPackets, o.Flags = 1, []string{flow.FlagSYN, flow.FlagSYNACK}
		}
		return o
	}
	b := flow.Batch{Agent: "a1", Node: "n1", Observations: []flow.Observation{
		obs(1, 5432, true),  // permitted
		obs(2, 22, true),    // escaped
		obs(3, 5432, false), // misdropped
	}}
	if err := svc.Ingest(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	if err := svc.Flush(true); err != nil {
		t.Fatal(err)
	}
	if calls != 1 || resolved != 6 {
		t.Fatalf("hook called %d times with %d resolved ends, want 1 and 6", calls, resolved)
	}
	got := map[policy.Verdict]int{}
	for _, a := range m.Alerts(false) {
		got[a.Verdict] += a.Count
	}
	if len(got) != 2 || got[policy.Escaped] != 1 || got[policy.Misdropped] != 1 {
		t.Fatalf("alerts by verdict = %v, want one escaped and one misdropped", got)
	}
	live := m.Live()
	if live.Counts.Permitted != 1 || live.Counts.Escaped != 1 || live.Counts.Misdropped != 1 || live.Counts.Unscoped != 0 {
		t.Fatalf("live counts = %+v", live.Counts)
	}
}

func id(w *inventory.Workload) string {
	if w == nil {
		return ""
	}
	return w.ID
}
