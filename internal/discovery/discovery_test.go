package discovery

import (
	"bytes"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/filter"
	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/policy"
	"github.com/palisade-dev/palisade/internal/policy/analyze"
)

// world is a real in-memory inventory: front-end pods of a Deployment (one
// replaced mid-window by a pod with another name and IP), a carts pod
// behind a ClusterIP service, a NodePort service for front-end, a node,
// and a pod of another namespace outside the scope.
func world(t *testing.T, t0 time.Time) *inventory.Inventory {
	i, err := inventory.Open(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { i.Close() })
	front := &inventory.Owner{Kind: "Deployment", Name: "front-end"}
	for _, w := range []inventory.Workload{
		{ID: "lab/pod/shop/front-end-a", Cluster: "lab", Kind: inventory.KindPod, Namespace: "shop", Name: "front-end-a", UID: "a", IPs: []string{"10.244.1.10"}, Owner: front,
			Labels: map[string]string{"name": "front-end"}, NamespaceLabels: shopNS, Containers: []inventory.Container{{Name: "c", Ports: []inventory.ContainerPort{{Protocol: "TCP", Port: 8079}}}}, Updated: t0},
		{ID: "lab/pod/shop/carts-x", Cluster: "lab", Kind: inventory.KindPod, Namespace: "shop", Name: "carts-x", IPs: []string{"10.244.1.11"}, Owner: &inventory.Owner{Kind: "Deployment", Name: "carts"},
			Labels: map[string]string{"name": "carts", "pod-template-hash": "x1"}, NamespaceLabels: shopNS, Updated: t0},
		{ID: "lab/pod/shop/db", Cluster: "lab", Kind: inventory.KindPod, Namespace: "shop", Name: "db", IPs: []string{"10.244.1.12"}, Labels: map[string]string{"app": "user-db"}, NamespaceLabels: shopNS, Updated: t0},
		{ID: "lab/service/shop/carts", Cluster: "lab", Kind: inventory.KindService, Namespace: "shop", Name: "carts", IPs: []string{"10.96.0.11"},
			Selector: map[string]string{"name": "carts"}, Ports: []inventory.ServicePort{{Protocol: "TCP", Port: 80, TargetPort: "8080"}}, Endpoints: []inventory.Endpoint{{IP: "10.244.1.11", Ports: []int32{8080}, Ready: true}}, Updated: t0},
		{ID: "lab/service/shop/front-end", Cluster: "lab", Kind: inventory.KindService, Namespace: "shop", Name: "front-end", IPs: []string{"10.96.0.10"}, ServiceType: "NodePort",
			Selector: map[string]string{"name": "front-end"}, Ports: []inventory.ServicePort{{Protocol: "TCP", Port: 80, TargetPort: "8079", NodePort: 30080}}, Endpoints: []inventory.Endpoint{{IP: "10.244.1.10", Ports: []int32{8079}, Ready: true}}, Updated: t0},
		{ID: "lab/node//n1", Cluster: "lab", Kind: inventory.KindNode, Name: "n1", IPs: []string{"10.10.0.11"}, Updated: t0},
		{ID: "lab/pod/other/x", Cluster: "lab", Kind: inventory.KindPod, Namespace: "other", Name: "x", IPs: []string{"10.244.2.5"}, Labels: map[string]string{"app": "x"},
			NamespaceLabels: map[string]string{"kubernetes.io/metadata.name": "other"}, Updated: t0},
	} {
		i.Apply(w)
	}
	// front-end-a is replaced by front-end-b with a new IP.
	i.Delete("lab/pod/shop/front-end-a", t0.Add(20*time.Minute))
	i.Apply(inventory.Workload{ID: "lab/pod/shop/front-end-b", Cluster: "lab", Kind: inventory.KindPod, Namespace: "shop", Name: "front-end-b", UID: "b", IPs: []string{"10.244.1.20"}, Owner: front,
		Labels: map[string]string{"name": "front-end"}, NamespaceLabels: shopNS, Updated: t0.Add(21 * time.Minute)})
	return i
}

var shopNS = map[string]string{"kubernetes.io/metadata.name": "shop"}

func scopes() policy.Set {
	return policy.Set{
		Scopes: []policy.Scope{
			{Name: "cluster-lab", Filter: `cluster = "lab"`, CatchAll: policy.Allow},
			{Name: "shop", Parent: "cluster-lab", Filter: `namespace = "shop"`, CatchAll: policy.Deny},
		},
		Versions: map[string]*policy.Version{},
	}
}

type flows struct {
	t0 time.Time
	n  int
	fs []flow.Flow
}

func (b *flows) add(at time.Duration, src, dst string, dport uint16, replied bool, rel ...flow.Related) *flow.Flow {
	b.n++
	f := flow.Flow{ID: flow.MakeID(b.t0.Add(at), uint64(b.n)), Proto: "tcp", Start: b.t0.Add(at), End: b.t0.Add(at + time.Second),
		Src: flow.Endpoint{IP: src, Port: 40000 + uint16(b.n)}, Dst: flow.Endpoint{IP: dst, Port: dport}, Replied: replied, Conns: 1, FwdBytes: 100, RevBytes: 200, Related: rel}
	b.fs = append(b.fs, f)
	return &b.fs[len(b.fs)-1]
}

// traffic is the window's flows: per minute, each legitimate edge once.
func traffic(t0 time.Time) []flow.Flow {
	b := &flows{t0: t0}
	for m := 1; m < 40; m++ {
		at := time.Duration(m) * time.Minute
		if m == 20 || m == 21 {
			continue // front-end is being replaced
		}
		front := "10.244.1.10"
		if m > 21 {
			front = "10.244.1.20"
		}
		// front-end → carts service (cluster IP flow and its DNAT partner).
		b.add(at, front, "10.96.0.11", 80, true, flow.Related{ID: "x", Reason: flow.ReasonClusterIP})
		f := b.add(at, front, "10.244.1.11", 8080, true, flow.Related{ID: "x", Reason: flow.ReasonClusterIP})
		f.Dst.Service = "shop/carts"
		// carts → user-db directly.
		b.add(at, "10.244.1.11", "10.244.1.12", 27017, true)
		// The internet → front-end node port, and the SNAT copy.
		b.add(at, "203.0.113.7", "10.10.0.11", 30080, true, flow.Related{ID: "y", Reason: flow.ReasonNodePort})
		f = b.add(at, "10.10.0.11", front, 8079, true, flow.Related{ID: "y", Reason: flow.ReasonNodePort})
		f.Dst.Service = "shop/front-end"
		// Node health probe.
		b.add(at, "10.10.0.11", front, 8079, true)
		// front-end → an external address.
		b.add(at, front, "203.0.113.10", 666, true)
		// Noise: unanswered, ephemeral, another namespace only.
		b.add(at, front, "10.244.1.12", 9999, false)
		b.add(at, "10.244.1.12", front, 45000, true)
		b.add(at, "10.244.2.5", "10.244.2.5", 80, true)
	}
	return b.fs
}

func run(t *testing.T, inv *inventory.Inventory, fs []flow.Flow, opts Options) *Result {
	t.Helper()
	if opts.Scope == "" {
		opts.Scope = "shop"
	}
	r, err := Discover(Input{Flows: fs, Resolver: inv, Set: scopes()}, opts, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestDiscoverRules(t *testing.T) {
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	inv := world(t, t0)
	r := run(t, inv, traffic(t0), Options{})
	front := `cluster = "lab" and namespace = "shop" and owner.kind = Deployment and owner.name = "front-end"`
	carts := `cluster = "lab" and namespace = "shop" and owner.kind = Deployment and owner.name = "carts"`
	db := `cluster = "lab" and namespace = "shop" and label.app = "user-db"`
	nodes := `kind = node and cluster = "lab"`
	want := map[string]struct {
		ports, kind string
	}{
		front + " → service:shop/carts":   {"tcp/80", "service"},
		carts + " → " + db:                {"tcp/27017", "pod"},
		"any → service:shop/front-end":    {"tcp/80", "nodeport"},
		nodes + " → " + front:             {"tcp/8079", "probe"},
		front + " → cidr:203.0.113.10/32": {"tcp/666", "external"},
	}
	if len(r.Rules) != len(want) {
		for _, x := range r.Rules {
			t.Logf("rule %s %v %s", x.Edge(), x.Ports, x.Kind)
		}
		t.Fatalf("%d rules, want %d (one per call-graph edge)", len(r.Rules), len(want))
	}
	for _, x := range r.Rules {
		w, ok := want[x.Edge()]
		if !ok {
			t.Errorf("unexpected rule %s %v", x.Edge(), x.Ports)
			continue
		}
		if strings.Join(x.Ports, ",") != w.ports || x.Kind != w.kind {
			t.Errorf("%s: ports %v kind %s, want %s %s", x.Edge(), x.Ports, x.Kind, w.ports, w.kind)
		}
		if x.Flows == 0 || len(x.Samples) == 0 || len(x.Samples) > 5 || x.FirstSeen.IsZero() || x.LastSeen.Before(x.FirstSeen) {
			t.Errorf("%s: evidence %d flows, samples %v, %s–%s", x.Edge(), x.Flows, x.Samples, x.FirstSeen, x.LastSeen)
		}
	}
	// The replaced pod stays in its cluster.
	for _, c := range r.Clusters {
		if c.Name == "shop.front-end" && len(c.Members) != 2 {
			t.Errorf("front-end cluster members %v, want both incarnations", c.Members)
		}
	}
	if r.Stats.NotReplied == 0 || r.Stats.Ephemeral == 0 || r.Stats.OutOfScope == 0 || r.Stats.Translated == 0 {
		t.Errorf("stats %+v: every kind of left-out flow should be counted", r.Stats)
	}

	// The discovered version permits every flow it was made from.
	set := scopes()
	v := r.Version()
	v.Name = "v1"
	set.Versions["shop"] = v
	ev, err := policy.Compile(set)
	if err != nil {
		t.Fatalf("discovered version does not compile: %v", err)
	}
	an := analyze.New(ev, inv, "shop")
	for _, f := range traffic(t0) {
		fv, ok := an.Analyze(&f)
		if !ok || !f.Replied {
			continue
		}
		if fv.Verdict != policy.Permitted && !fv.Translated && fv.Rule.Scope == "shop" {
			if f.Dst.Port == 45000 {
				continue // the ephemeral port is not a rule, by design
			}
			t.Errorf("flow %s→%s:%d: %s, want permitted", f.Src.IP, f.Dst.IP, f.Dst.Port, fv.Verdict)
		}
	}
}

func TestDiscoverDeterministic(t *testing.T) {
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	inv := world(t, t0)
	fs := traffic(t0)
	var a, b bytes.Buffer
	if err := run(t, inv, fs, Options{}).WriteYAML(&a); err != nil {
		t.Fatal(err)
	}
	rand.New(rand.NewSource(1)).Shuffle(len(fs), func(i, j int) { fs[i], fs[j] = fs[j], fs[i] })
	if err := run(t, inv, fs, Options{}).WriteYAML(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatalf("same flows in another order give different YAML:\n%s\n---\n%s", a.String(), b.String())
	}
	// The YAML is policy as code: it parses, and every intent is there.
	docs, err := policy.ParseDocuments("discovered.yaml", bytes.NewReader(a.Bytes()))
	if err != nil {
		t.Fatalf("discovered YAML does not parse: %v\n%s", err, a.String())
	}
	n := 0
	for _, d := range docs {
		if d.Kind == policy.KindPolicy {
			n++
		}
	}
	if n != 5 || !strings.Contains(a.String(), "samples: [") {
		t.Fatalf("%d Policy documents (want 5) or no explanations:\n%s", n, a.String())
	}
}

func TestDiscoverOptions(t *testing.T) {
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	inv := world(t, t0)
	fs := traffic(t0)

	// Exclude drops the flows it matches.
	ex, err := filter.Parse(`dst.port = 27017`, flow.Schema)
	if err != nil {
		t.Fatal(err)
	}
	r := run(t, inv, fs, Options{Exclude: ex, ExternalPrefix: 24})
	for _, x := range r.Rules {
		if strings.Contains(strings.Join(x.Ports, ","), "27017") {
			t.Errorf("excluded flows made rule %s", x.Edge())
		}
		if x.Kind == "external" && x.Provider != "cidr:203.0.113.0/24" {
			t.Errorf("external widened to /24: got %s", x.Provider)
		}
	}

	// A pinned cluster renames and regroups.
	r = run(t, inv, fs, Options{Pins: []policy.NamedFilter{{Name: "web", Filter: `label.name = "front-end"`}}})
	found := false
	for _, x := range r.Rules {
		found = found || x.ConsumerCluster == "web" && x.Consumer == `label.name = "front-end"`
	}
	if !found {
		t.Errorf("the pinned cluster is not used as consumer")
	}

	// A parent's absolute allow is not repeated.
	set := scopes()
	set.Versions["cluster-lab"] = &policy.Version{Name: "v1", Policies: []policy.Policy{
		{Consumer: `kind = node`, Provider: "any", Action: policy.Allow, Class: policy.Absolute}}}
	res, err := Discover(Input{Flows: fs, Resolver: inv, Set: set}, Options{Scope: "shop"}, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range res.Rules {
		if x.Kind == "probe" {
			t.Errorf("probe rule %s repeated although the parent allows nodes absolutely", x.Edge())
		}
	}
	if res.Stats.Covered == 0 {
		t.Errorf("no flow counted as covered by the parent")
	}

	// Diff against a version holding one of the rules and a stale one.
	r = run(t, inv, fs, Options{})
	old := &policy.Version{Name: "v1", Policies: []policy.Policy{r.Rules[0].Policy,
		{Consumer: "any", Provider: "cidr:198.51.100.1/32", Ports: []string{"tcp/22"}, Action: policy.Allow}}}
	r.DiffAgainst(old)
	if len(r.Diff.New) != len(r.Rules)-1 || len(r.Diff.NotSeen) != 1 {
		t.Errorf("diff %+v", r.Diff)
	}

	if _, err := Discover(Input{Flows: fs, Resolver: inv, Set: scopes()}, Options{Scope: "nope"}, time.Time{}, time.Time{}); err == nil {
		t.Errorf("missing scope accepted")
	}
}
