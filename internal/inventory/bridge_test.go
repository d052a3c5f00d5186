package inventory

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// bridgeHistory is a node whose pod CIDR is assigned, keeps it over a
// label change, changes, and which is deleted; a pod that holds the new
// CIDR's first host address for a while; the old CIDR reassigned to a
// second node; an IPv6 pod CIDR; and an external range around it all.
func bridgeHistory(t *testing.T) *Inventory {
	t.Helper()
	inv, err := Open(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inv.Close() })
	node := func(name string, at time.Time, labels map[string]string, cidrs ...string) Workload {
		return Workload{ID: "c1/node//" + name, Cluster: "c1", Kind: KindNode, Name: name, UID: "uid-" + name,
			IPs: []string{"10.10.0." + map[string]string{"n1": "11", "n2": "12"}[name]}, CIDRs: cidrs, Labels: labels, Updated: at}
	}
	inv.Apply(Workload{ID: "ext/range", Kind: KindExternal, Name: "range", CIDRs: []string{"10.244.0.0/16"}, Updated: t0})
	inv.Apply(node("n1", t0, nil))
	inv.Apply(node("n1", t0.Add(10*time.Second), nil, "10.244.1.0/24", "fd00:1::/64"))
	inv.Apply(node("n1", t0.Add(20*time.Second), map[string]string{"v": "2"}, "10.244.1.0/24", "fd00:1::/64"))
	inv.Apply(node("n1", t0.Add(30*time.Second), map[string]string{"v": "2"}, "10.244.5.0/24"))
	inv.Apply(pod("odd", "10.244.5.1", t0.Add(40*time.Second), nil))
	inv.Delete("c1/pod/shop/odd", t0.Add(50*time.Second))
	inv.Delete("c1/node//n1", t0.Add(60*time.Second))
	inv.Apply(node("n2", t0.Add(70*time.Second), nil, "10.244.1.0/24"))
	return inv
}

// TestBridgeAddressResolvesToNode: an address no workload holds that is
// the network address or the first host address of a node's IPv4 pod
// CIDR resolves to that node, as it was, exactly while its version held
// that CIDR; a workload that holds the address wins; the external range
// answers only where neither does; other addresses of the CIDR and IPv6
// CIDRs stay unknown to it (as compile.DefaultNodeAddrs has them).
func TestBridgeAddressResolvesToNode(t *testing.T) {
	inv := bridgeHistory(t)
	for _, c := range []struct {
		ip   string
		at   time.Duration
		want string // node or pod name, "range" for the external range, "" for none
		v2   bool   // the node's version after its label change
	}{
		{"10.244.1.1", 5 * time.Second, "range", false},  // no CIDR yet
		{"10.244.1.1", 10 * time.Second, "n1", false},    // assigned
		{"10.244.1.0", 15 * time.Second, "n1", false},    // the network address too
		{"10.244.1.2", 15 * time.Second, "range", false}, // a pod's address, not the bridge's
		{"10.244.1.1", 25 * time.Second, "n1", true},     // as the node was then
		{"10.244.1.1", 30 * time.Second, "range", false}, // CIDR changed
		{"10.244.5.1", 30 * time.Second, "n1", true},
		{"10.244.5.1", 45 * time.Second, "odd", false}, // a pod holding it wins
		{"10.244.5.1", 55 * time.Second, "n1", true},   // and the node answers again after it
		{"10.244.5.0", 59 * time.Second, "n1", true},
		{"10.244.5.1", 60 * time.Second, "range", false}, // node deleted
		{"10.244.1.1", 65 * time.Second, "range", false},
		{"10.244.1.1", 70 * time.Second, "n2", false}, // the CIDR reassigned
		{"10.10.0.11", 25 * time.Second, "n1", true},  // the node's own IP, as ever
		{"fd00:1::", 15 * time.Second, "", false},     // IPv6: not a bridge address
		{"fd00:1::1", 15 * time.Second, "", false},
	} {
		at := t0.Add(c.at)
		w, ok := inv.WorkloadAt(c.ip, at)
		got := ""
		if ok {
			got = w.Name
		}
		if got != c.want || ok && w.Kind == KindNode && (w.Labels["v"] == "2") != c.v2 {
			t.Errorf("%s at %s: %q (labels %v), want %q (second version %v)", c.ip, c.at, got, w.Labels, c.want, c.v2)
		}
		if lw, lok := inv.Lookup(netip.MustParseAddr(c.ip), at); lw != w || lok != ok {
			t.Errorf("%s at %s: Lookup and WorkloadAt differ", c.ip, c.at)
		}
	}
	// The pod holding the address is the real holder: the node answers
	// around it, the span ends where the pod's lease begins.
	if w, ok, from, to := inv.LookupSpan(netip.MustParseAddr("10.244.5.1"), t0.Add(35*time.Second)); !ok || w.Name != "n1" ||
		!from.Equal(t0.Add(30*time.Second)) || !to.Equal(t0.Add(40*time.Second)) {
		t.Errorf("10.244.5.1 at 35s: %v %v [%s, %s), want n1 over [30s, 40s)", w, ok, from.Sub(t0), to.Sub(t0))
	}
}

// TestBridgeLookupSpanAgreesWithLookup is TestLookupSpanAgreesWithLookup
// over the bridge addresses' history.
func TestBridgeLookupSpanAgreesWithLookup(t *testing.T) {
	inv := bridgeHistory(t)
	rnd := rand.New(rand.NewPCG(3, 4))
	for _, ip := range []string{"10.244.1.0", "10.244.1.1", "10.244.5.1", "10.244.5.0", "fd00:1::1"} {
		checkSpans(t, inv, netip.MustParseAddr(ip), rnd, 500, t0.Add(-10*time.Second), 100*time.Second)
	}
}

// TestCompactKeepsBridgeAnswers: compaction drops the bridge leases of a
// deleted node and answers every later question as before.
func TestCompactKeepsBridgeAnswers(t *testing.T) {
	inv := bridgeHistory(t)
	st, err := inv.Compact(t0.Add(65 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if st.Leases == 0 {
		t.Errorf("compaction after n1's deletion dropped no lease: %+v", st)
	}
	if _, held := inv.bridges[netip.MustParseAddr("10.244.5.1")]; held {
		t.Errorf("10.244.5.1: n1's bridge lease outlived compaction past its deletion")
	}
	if w, ok := inv.WorkloadAt("10.244.1.1", t0.Add(80*time.Second)); !ok || w.Name != "n2" {
		t.Errorf("10.244.1.1 after compaction: %v %v, want n2", w, ok)
	}
	checkSpans(t, inv, netip.MustParseAddr("10.244.1.1"), rand.New(rand.NewPCG(5, 6)), 200, t0.Add(65*time.Second), 40*time.Second)
}
