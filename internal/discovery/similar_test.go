package discovery

import (
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/policy"
)

// bareWorld adds bare pods (no owner, no app label) to the lab world:
// two workers that call the carts service and user-db alike, a batch pod
// that calls only user-db, and two client/server pairs (each client its
// own server, on the same port).
func bareWorld(t *testing.T, t0 time.Time) *inventory.Inventory {
	inv := world(t, t0)
	for _, p := range []struct{ name, ip string }{
		{"worker-1", "10.244.1.31"}, {"worker-2", "10.244.1.32"}, {"batch-1", "10.244.1.33"},
		{"client-a", "10.244.1.41"}, {"client-b", "10.244.1.42"}, {"server-a", "10.244.1.51"}, {"server-b", "10.244.1.52"},
	} {
		inv.Apply(inventory.Workload{ID: "lab/pod/shop/" + p.name, Cluster: "lab", Kind: inventory.KindPod, Namespace: "shop", Name: p.name, IPs: []string{p.ip},
			Labels: map[string]string{"role": strings.TrimRight(p.name, "-12ab")}, NamespaceLabels: shopNS, Updated: t0})
	}
	// A pod like the workers, in another namespace.
	inv.Apply(inventory.Workload{ID: "lab/pod/other/worker-3", Cluster: "lab", Kind: inventory.KindPod, Namespace: "other", Name: "worker-3", IPs: []string{"10.244.2.31"},
		Labels: map[string]string{"role": "worker"}, NamespaceLabels: map[string]string{"kubernetes.io/metadata.name": "other"}, Updated: t0})
	return inv
}

func bareTraffic(t0 time.Time) []flow.Flow {
	b := &flows{t0: t0}
	for m := 1; m < 10; m++ {
		at := time.Duration(m) * time.Minute
		for _, w := range []string{"10.244.1.31", "10.244.1.32", "10.244.2.31"} {
			b.add(at, w, "10.96.0.11", 80, true, flow.Related{ID: "x", Reason: flow.ReasonClusterIP})
			b.add(at, w, "10.244.1.12", 27017, true)
		}
		b.add(at, "10.244.1.33", "10.244.1.12", 27017, true)
		b.add(at, "10.244.1.41", "10.244.1.51", 8080, true)
		b.add(at, "10.244.1.42", "10.244.1.52", 8080, true)
	}
	return b.fs
}

func TestSimilarityClusters(t *testing.T) {
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	inv := bareWorld(t, t0)
	fs := bareTraffic(t0)
	r := run(t, inv, fs, Options{})
	by := map[string]Cluster{}
	for _, c := range r.Clusters {
		by[c.Name] = c
	}
	want := map[string][]string{
		"shop.worker": {"lab/pod/shop/worker-1", "lab/pod/shop/worker-2"},
		"shop.client": {"lab/pod/shop/client-a", "lab/pod/shop/client-b"},
		"shop.server": {"lab/pod/shop/server-a", "lab/pod/shop/server-b"},
	}
	for name, members := range want {
		c, ok := by[name]
		if !ok || c.By != "similarity" || strings.Join(c.Members, ",") != strings.Join(members, ",") {
			t.Errorf("cluster %s: %+v, want a similarity cluster of %v", name, c, members)
			continue
		}
		if c.Why == "" || !strings.Contains(c.Why, "2 pods without an owner or app label") {
			t.Errorf("cluster %s is not explained: %q", name, c.Why)
		}
		if c.Namespace != "shop" || c.Labels["role"] == "" {
			t.Errorf("cluster %s: namespace %q labels %v, want shop and the common role label", name, c.Namespace, c.Labels)
		}
	}
	if !strings.Contains(by["shop.worker"].Why, "service:shop/carts tcp/80") || !strings.Contains(by["shop.server"].Why, "← shop.client tcp/8080") {
		t.Errorf("explanations do not name the shared peers and ports: %q, %q", by["shop.worker"].Why, by["shop.server"].Why)
	}
	// Namespaces are not mixed: the other namespace's worker stays alone.
	if c, ok := by["other.worker-3"]; !ok || c.By != "pod" {
		t.Errorf("other/worker-3: %+v, want its own pod cluster", c)
	}
	// The batch pod calls only user-db: unlike the workers, it stays alone.
	if c, ok := by["shop.batch-1"]; !ok || c.By != "pod" {
		t.Errorf("batch-1: %+v, want its own pod cluster", c)
	}
	// One rule per group edge, with the group's filter, which selects
	// exactly the group's pods.
	edges := map[string]Rule{}
	for _, x := range r.Rules {
		to := x.ProviderCluster
		if to == "" {
			to = strings.TrimPrefix(x.Provider, "service:")
		}
		edges[x.ConsumerCluster+" → "+to] = x
	}
	for _, e := range []string{"shop.worker → shop/carts", "shop.worker → shop.user-db", "shop.client → shop.server", "shop.batch-1 → shop.user-db"} {
		if _, ok := edges[e]; !ok {
			t.Errorf("no rule %s (have %v)", e, keys(edges))
		}
	}
	if len(r.Rules) != 6 {
		t.Errorf("%d rules %v, want the 4 above and other.worker-3's 2", len(r.Rules), keys(edges))
	}
	if x := edges["shop.client → shop.server"]; x.Flows != 18 {
		t.Errorf("client → server: %d flows, want both pairs' 18", x.Flows)
	}
	f := by["shop.worker"].Filter
	if f != `cluster = "lab" and namespace = "shop" and name in ("worker-1", "worker-2")` {
		t.Errorf("worker filter %s", f)
	}

	// Stable: shuffled, and in parallel, the same YAML.
	want0 := yamlOf(t, r)
	rand.New(rand.NewSource(9)).Shuffle(len(fs), func(i, j int) { fs[i], fs[j] = fs[j], fs[i] })
	p, err := NewParallel(Input{Resolver: inv, Set: scopes()}, Options{Scope: "shop"}, 3)
	if err != nil {
		t.Fatal(err)
	}
	for i := range fs {
		p.Add(&fs[i])
	}
	if got := yamlOf(t, p.Result(time.Time{}, time.Time{})); got != want0 {
		t.Fatalf("similarity clusters differ with the flows' order:\n%s", firstDiff(got, want0))
	}
	if !strings.Contains(want0, "description: 'discovered cluster (similarity): 2 pods") && !strings.Contains(want0, "description: \"discovered cluster (similarity): 2 pods") &&
		!strings.Contains(want0, "description: discovered cluster (similarity): 2 pods") {
		t.Errorf("the YAML does not explain the similarity clusters:\n%s", want0)
	}

	// A pin wins: worker-2 pinned leaves worker-1 alone.
	r = run(t, inv, fs, Options{Pins: []policy.NamedFilter{{Name: "special", Filter: `name = "worker-2"`}}})
	for _, c := range r.Clusters {
		switch c.Name {
		case "special":
			if c.By != "pinned" || strings.Join(c.Members, ",") != "lab/pod/shop/worker-2" {
				t.Errorf("pinned cluster %+v", c)
			}
		case "shop.worker":
			t.Errorf("worker-2 is pinned, yet grouped: %+v", c)
		case "shop.worker-1":
			if c.By != "pod" {
				t.Errorf("worker-1 alone: %+v", c)
			}
		}
	}
}

func keys(m map[string]Rule) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestGroupName(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want string
	}{
		{[]string{"worker-1", "worker-2"}, "worker"},
		{[]string{"batch-abc", "batch-abd"}, "batch"},
		{[]string{"web", "web-2"}, "web"},
		{[]string{"alpha", "beta"}, "alpha-and-1-similar"},
	} {
		if got := groupName(c.in); got != c.want {
			t.Errorf("groupName(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}
