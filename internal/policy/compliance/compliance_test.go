package compliance

import (
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/policy"
	"github.com/palisade-dev/palisade/internal/store"
)

// The real inventory, in memory, as the resolver.
func lab(t *testing.T) *inventory.Inventory {
	inv, err := inventory.Open(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inv.Close() })
	at := time.Now().Add(-time.Hour)
	for _, w := range []inventory.Workload{
		{ID: "lab/pod/shop/front-1", Cluster: "lab", Kind: inventory.KindPod, Namespace: "shop", Name: "front-1", IPs: []string{"10.244.1.10"},
			Labels: map[string]string{"app": "front"}, Owner: &inventory.Owner{Kind: "Deployment", Name: "front"}, Updated: at},
		{ID: "lab/pod/shop/db-1", Cluster: "lab", Kind: inventory.KindPod, Namespace: "shop", Name: "db-1", IPs: []string{"10.244.1.11"},
			Labels: map[string]string{"app": "db"}, Updated: at},
	} {
		inv.Apply(w)
	}
	return inv
}

func TestAlertsAggregatePersistAndAck(t *testing.T) {
	dir := t.TempDir()
	kv, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	inv := lab(t)
	m, err := Open(kv, inv, nil)
	if err != nil {
		t.Fatal(err)
	}
	set := policy.Set{
		Scopes: []policy.Scope{{Name: "shop", Filter: `namespace = "shop"`, CatchAll: policy.Deny}},
		Versions: map[string]*policy.Version{"shop": {Scope: "shop", Name: "v2", State: policy.Enforced, Policies: []policy.Policy{
			{Scope: "shop", Consumer: `label.app = "front"`, Provider: `label.app = "db"`, Action: policy.Allow, Ports: []string{"tcp/5432"}},
		}}},
	}
	if err := m.SetPolicy(set); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	mk := func(id string, port uint16, replied bool) flow.Flow {
		return flow.Flow{ID: id, Proto: "tcp", Start: now, End: now, Replied: replied,
			Src: flow.Endpoint{IP: "10.244.1.10", Kind: "pod", Namespace: "shop", Name: "front-1", Owner: &inventory.Owner{Kind: "Deployment", Name: "front"}},
			Dst: flow.Endpoint{IP: "10.244.1.11", Port: port, Kind: "pod", Namespace: "shop", Name: "db-1"}}
	}
	m.Observe([]flow.Flow{
		mk("a", 5432, true),  // permitted: no alert
		mk("b", 22, true),    // escaped
		mk("c", 22, true),    // escaped, same edge: same alert
		mk("d", 5432, false), // misdropped
		mk("e", 23, false),   // rejected: no alert
	}, nil) // no resolved ends: the monitor resolves them
	as := m.Alerts(false)
	if len(as) != 2 {
		t.Fatalf("%d alerts, want 2: %+v", len(as), as)
	}
	var esc Alert
	for _, a := range as {
		if a.Verdict == policy.Escaped {
			esc = a
		}
	}
	if esc.Count != 2 || esc.Edge != "shop/front → shop/db-1 tcp/22" || esc.Rule.String() != "shop@v2 catch-all" {
		t.Fatalf("escaped alert = %+v", esc)
	}
	if _, err := m.Ack(esc.ID, "alice"); err != nil {
		t.Fatal(err)
	}
	if len(m.Alerts(false)) != 1 || len(m.Alerts(true)) != 2 {
		t.Fatal("acknowledged alert still listed as open")
	}
	kv.Close()
	// After a restart the alerts are there, acknowledgement included.
	kv, err = store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	m2, err := Open(kv, inv, nil)
	if err != nil {
		t.Fatal(err)
	}
	all := m2.Alerts(true)
	if len(all) != 2 || len(m2.Alerts(false)) != 1 {
		t.Fatalf("after reopen: %d alerts (%d open), want 2 (1 open)", len(all), len(m2.Alerts(false)))
	}
}
