package discovery

import (
	"bytes"
	"math/rand"
	"runtime"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/flow/flowgen"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/policy"
	"github.com/palisade-dev/palisade/internal/policy/analyze"
)

// genFlows is n flows of the flow store's benchmark data from t0 on.
func genFlows(n int, t0 time.Time) []flow.Flow {
	g := flowgen.New(7)
	fs := make([]flow.Flow, n)
	for i := range fs {
		g.Flow(&fs[i], t0.Add(time.Duration(i)*time.Millisecond))
	}
	return fs
}

func yamlOf(t *testing.T, r *Result) string {
	t.Helper()
	var b bytes.Buffer
	if err := r.WriteYAML(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestParallelSameYAML: discovery split over several Discoverers (in any
// order, in shards of any size) and merged gives byte-identical YAML to
// one Discoverer fed every flow, on the flow store's benchmark data and on
// the lab-like world (services, node ports, probes, a replaced pod).
func TestParallelSameYAML(t *testing.T) {
	t0 := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	bw, bset := benchWorldAt(t, t0.Add(-time.Hour))
	lab := world(t, t0)
	for _, c := range []struct {
		name  string
		inv   *inventory.Inventory
		set   policy.Set
		scope string
		fs    []flow.Flow
	}{
		{"flowgen", bw, bset, "cluster", genFlows(8_000, t0)},
		{"lab world", lab, scopes(), "shop", traffic(t0)},
	} {
		in := Input{Resolver: c.inv, Set: c.set}
		d, err := New(in, Options{Scope: c.scope})
		if err != nil {
			t.Fatal(err)
		}
		for i := range c.fs {
			d.Add(&c.fs[i])
		}
		want := yamlOf(t, d.Result(t0, t0.Add(time.Hour)))

		for _, workers := range []int{2, 3, 5} {
			fs := append([]flow.Flow(nil), c.fs...)
			rand.New(rand.NewSource(int64(workers))).Shuffle(len(fs), func(i, j int) { fs[i], fs[j] = fs[j], fs[i] })
			p, err := NewParallel(in, Options{Scope: c.scope}, workers)
			if err != nil {
				t.Fatal(err)
			}
			for i := range fs {
				p.Add(&fs[i])
			}
			if got := yamlOf(t, p.Result(t0, t0.Add(time.Hour))); got != want {
				t.Fatalf("%s: %d workers on shuffled flows give other YAML (%d bytes, want %d):\n%s", c.name, workers, len(got), len(want), firstDiff(got, want))
			}
		}
		// Unequal parts merged by hand.
		parts := []*Discoverer{}
		for range 3 {
			x, _ := New(in, Options{Scope: c.scope})
			parts = append(parts, x)
		}
		for i := range c.fs {
			parts[(i*i)%7%3].Add(&c.fs[i])
		}
		parts[1].Merge(parts[0])
		parts[1].Merge(parts[2])
		if got := yamlOf(t, parts[1].Result(t0, t0.Add(time.Hour))); got != want {
			t.Fatalf("%s: merged parts give other YAML:\n%s", c.name, firstDiff(got, want))
		}
		if c.name == "flowgen" && len(want) < 500_000 {
			t.Fatalf("flowgen: only %d bytes of YAML", len(want))
		}
	}
}

func firstDiff(a, b string) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	lo := max(i-200, 0)
	return "got  …" + a[lo:min(i+200, len(a))] + "\nwant …" + b[lo:min(i+200, len(b))]
}

// TestResolveMatchesAnalysis: the cached resolution of a flow's ends,
// service and translation is analyze.Input's, flow by flow, including
// across an IP reused by another pod and a pod's label change.
func TestResolveMatchesAnalysis(t *testing.T) {
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	inv := world(t, t0)
	// db's IP is reused by another pod after db is deleted; carts changes
	// labels mid-window.
	inv.Delete("lab/pod/shop/db", t0.Add(30*time.Minute))
	inv.Apply(inventory.Workload{ID: "lab/pod/shop/cache", Cluster: "lab", Kind: inventory.KindPod, Namespace: "shop", Name: "cache", IPs: []string{"10.244.1.12"},
		Labels: map[string]string{"app": "cache"}, NamespaceLabels: shopNS, Updated: t0.Add(31 * time.Minute)})
	w, _, _ := inv.Get("lab/pod/shop/carts-x")
	c := *w
	c.Labels = map[string]string{"name": "carts", "tier": "2"}
	c.Updated = t0.Add(25 * time.Minute)
	inv.Apply(c)

	fs := traffic(t0)
	rand.New(rand.NewSource(3)).Shuffle(len(fs), func(i, j int) { fs[i], fs[j] = fs[j], fs[i] })
	d, err := New(Input{Resolver: inv, Set: scopes()}, Options{Scope: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range fs {
		f := &fs[i]
		want, wantTr := analyze.Input(f, inv)
		nodePortCopy := false
		for _, rel := range f.Related {
			nodePortCopy = nodePortCopy || rel.Reason == flow.ReasonNodePort && want.Dst.Workload != nil && want.Dst.Workload.Kind == inventory.KindPod
		}
		src, dst, svc, port, tr := d.resolve(f)
		same := func(a, b policy.Peer) bool { return a.IP == b.IP && a.Workload == b.Workload }
		if !same(src.p, want.Src) || !same(dst.p, want.Dst) || svc != want.Service || port != want.ServicePort || tr != (wantTr || nodePortCopy) {
			t.Fatalf("flow %s→%s:%d at %s: resolved %+v %+v %v:%d %v, analysis %+v %+v %v:%d %v",
				f.Src.IP, f.Dst.IP, f.Dst.Port, f.Start.Sub(t0), src.p, dst.p, svc, port, tr, want.Src, want.Dst, want.Service, want.ServicePort, wantTr)
		}
		d.Add(f)
	}
	// The reused address stays two workloads: db before, cache after.
	r := d.Result(t0, t0.Add(time.Hour))
	seen := map[string]bool{}
	for _, x := range r.Rules {
		seen[x.ProviderCluster] = true
	}
	if !seen["shop.user-db"] || !seen["shop.cache"] {
		t.Fatalf("the reused address's two pods should each be a provider: %v", seen)
	}
}

// TestParallelClose: a discovery abandoned (a read error) is closed
// without a result, its workers end, and closing again does nothing.
func TestParallelClose(t *testing.T) {
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	inv := world(t, t0)
	before := runtime.NumGoroutine()
	p, err := NewParallel(Input{Resolver: inv, Set: scopes()}, Options{Scope: "shop"}, 4)
	if err != nil {
		t.Fatal(err)
	}
	fs := traffic(t0)
	for i := range fs {
		p.Add(&fs[i])
	}
	p.Close()
	p.Close()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after Close, %d before", n, before)
	}
	// The result after Close still has every flow.
	if r := p.Result(t0, t0.Add(time.Hour)); r.Stats.Read != len(fs) || len(r.Rules) != 5 {
		t.Fatalf("after Close: read %d of %d flows, %d rules", r.Stats.Read, len(fs), len(r.Rules))
	}
}
