package analyze

import (
	"slices"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/policy"
)

// A real in-memory inventory: a front-end pod, a carts pod and service, a
// node with the front-end NodePort, and an IP reused by two pods.
func inv(t *testing.T, t0 time.Time) *inventory.Inventory {
	i, err := inventory.Open(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { i.Close() })
	deleted := t0.Add(10 * time.Minute)
	for _, w := range []inventory.Workload{
		{ID: "lab/pod/shop/front", Cluster: "lab", Kind: inventory.KindPod, Namespace: "shop", Name: "front", IPs: []string{"10.244.1.10"}, Labels: map[string]string{"app": "front"}, Updated: t0},
		{ID: "lab/pod/shop/carts", Cluster: "lab", Kind: inventory.KindPod, Namespace: "shop", Name: "carts", IPs: []string{"10.244.1.11"}, Labels: map[string]string{"app": "carts"}, Updated: t0},
		{ID: "lab/service/shop/carts", Cluster: "lab", Kind: inventory.KindService, Namespace: "shop", Name: "carts", IPs: []string{"10.96.0.11"},
			Ports: []inventory.ServicePort{{Protocol: "TCP", Port: 80, TargetPort: "8080"}}, Endpoints: []inventory.Endpoint{{IP: "10.244.1.11", Ports: []int32{8080}, Ready: true}}, Updated: t0},
		{ID: "lab/service/shop/front", Cluster: "lab", Kind: inventory.KindService, Namespace: "shop", Name: "front", IPs: []string{"10.96.0.10"}, ServiceType: "NodePort",
			Ports: []inventory.ServicePort{{Protocol: "TCP", Port: 80, TargetPort: "8079", NodePort: 30080}}, Endpoints: []inventory.Endpoint{{IP: "10.244.1.10", Ports: []int32{8079}, Ready: true}}, Updated: t0},
		{ID: "lab/node//n1", Cluster: "lab", Kind: inventory.KindNode, Name: "n1", IPs: []string{"10.10.0.11"}, Updated: t0},
		{ID: "lab/pod/shop/old", Cluster: "lab", Kind: inventory.KindPod, Namespace: "shop", Name: "old", UID: "1", IPs: []string{"10.244.1.50"}, Labels: map[string]string{"app": "front"}, Updated: t0},
	} {
		i.Apply(w)
	}
	i.Delete("lab/pod/shop/old", deleted)
	i.Apply(inventory.Workload{ID: "lab/pod/shop/new", Cluster: "lab", Kind: inventory.KindPod, Namespace: "shop", Name: "new", UID: "2", IPs: []string{"10.244.1.50"}, Labels: map[string]string{"app": "other"}, Updated: deleted.Add(time.Minute)})
	return i
}

func TestAnalyze(t *testing.T) {
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	in := inv(t, t0)
	ev, err := policy.Compile(policy.Set{
		Scopes: []policy.Scope{{Name: "lab", Filter: `cluster = "lab"`, CatchAll: policy.Deny}},
		Versions: map[string]*policy.Version{"lab": {Name: "v1", Policies: []policy.Policy{
			{Consumer: `label.app = "front"`, Provider: "service:shop/carts", Action: policy.Allow, Ports: []string{"tcp/80"}},    // #0
			{Consumer: "any", Provider: "service:shop/front", Action: policy.Allow, Ports: []string{"tcp/80"}},                    // #1
			{Consumer: `label.app = "front"`, Provider: "cidr:203.0.113.10/32", Action: policy.Allow, Ports: []string{"tcp/666"}}, // #2
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	at := t0.Add(time.Minute)
	tcp := func(src, dst string, dport uint16, flags ...string) flow.Flow {
		return flow.Flow{ID: src + ">" + dst, Proto: "tcp", Start: at, Src: flow.Endpoint{IP: src}, Dst: flow.Endpoint{IP: dst, Port: dport}, Flags: flags, Replied: true}
	}
	dnat := func(f flow.Flow, reason, svc string) flow.Flow {
		f.Related = []flow.Related{{ID: "x", Reason: reason}}
		f.Dst.Service = svc
		return f
	}
	reused := tcp("10.244.1.50", "203.0.113.10", 666, "SYN", "SYN-ACK")
	reusedLater := reused
	reusedLater.Start = t0.Add(20 * time.Minute)
	cases := []struct {
		name       string
		f          flow.Flow
		verdict    policy.Verdict
		rule       string
		translated bool
	}{
		{"pod to the cluster IP", tcp("10.244.1.10", "10.96.0.11", 80, "SYN", "SYN-ACK"), policy.Permitted, "lab@v1#0", false},
		{"DNAT-related flow to the backend's target port", dnat(tcp("10.244.1.10", "10.244.1.11", 8080, "SYN", "SYN-ACK"), flow.ReasonClusterIP, "shop/carts"), policy.Permitted, "lab@v1#0", false},
		{"the backend reached directly", tcp("10.244.1.10", "10.244.1.11", 8080, "SYN", "SYN-ACK"), policy.Escaped, "lab@v1 catch-all", false},
		{"external to a node port", tcp("203.0.113.10", "10.10.0.11", 30080, "SYN", "SYN-ACK"), policy.Permitted, "lab@v1#1", false},
		{"node to the backend after NodePort DNAT", dnat(tcp("10.10.0.11", "10.244.1.10", 8079, "SYN", "SYN-ACK"), flow.ReasonNodePort, "shop/front"), policy.Permitted, "lab@v1#1", false},
		{"refused with RST is not answered", tcp("10.244.1.10", "203.0.113.10", 666, "SYN", "RST"), policy.Misdropped, "lab@v1#2", false},
		{"SNAT copy on the node address", dnat(tcp("10.10.0.11", "203.0.113.10", 666, "SYN", "SYN-ACK"), flow.ReasonEgress, ""), policy.Unscoped, "", true},
		{"reused IP: the pod that held it then", reused, policy.Permitted, "lab@v1#2", false},
		{"reused IP: the pod that holds it later", reusedLater, policy.Escaped, "lab@v1 catch-all", false},
		{"external to external: unscoped", tcp("203.0.113.10", "203.0.113.11", 80), policy.Unscoped, "", false},
	}
	a := New(ev, in, "")
	tl := NewTally("", nil, t0, t0.Add(time.Hour), nil)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fv, ok := a.Analyze(&c.f)
			if !ok {
				t.Fatal("not analyzed")
			}
			if fv.Verdict != c.verdict || fv.Rule.String() != c.rule || fv.Translated != c.translated {
				t.Fatalf("got %v by %q (translated %v), want %v by %q (translated %v); decision %+v", fv.Verdict, fv.Rule.String(), fv.Translated, c.verdict, c.rule, c.translated, fv.Decision)
			}
			tl.Add(&fv)
		})
	}
	rep := tl.Report()
	if rep.Flows != 9 || rep.Translated != 1 || rep.Counts.Permitted != 5 || rep.Counts.Escaped != 2 || rep.Counts.Misdropped != 1 || rep.Counts.Unscoped != 1 {
		t.Fatalf("report counts = %+v (flows %d, translated %d)", rep.Counts, rep.Flows, rep.Translated)
	}
	esc := policy.Escaped
	n := 0
	for _, c := range cases {
		fv, _ := a.Analyze(&c.f)
		if (Cell{Verdict: &esc, Rule: "lab@v1 catch-all"}).Holds(&fv) {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("drill-down to escaped/catch-all: %d flows, want 2", n)
	}
}

// The live resolver answers the version in force at the flow's time, also
// across a change of the inventory and for flows older than the cached
// version.
func TestLiveResolver(t *testing.T) {
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	in := inv(t, t0)
	lr := &LiveResolver{R: in}
	in.Subscribe(func(*inventory.Workload) { lr.Invalidate() })
	// 10.244.1.50: "old" until t0+10m, "new" from t0+11m.
	for _, c := range []struct {
		at   time.Duration
		want string
	}{{20 * time.Minute, "new"}, {25 * time.Minute, "new"}, {5 * time.Minute, "old"}, {30 * time.Minute, "new"}} {
		w, ok := lr.WorkloadAt("10.244.1.50", t0.Add(c.at))
		if !ok || w.Name != c.want {
			t.Fatalf("at t0+%s: %v %v, want %s", c.at, w, ok, c.want)
		}
	}
	// A new version: cached answers go.
	in.Apply(inventory.Workload{ID: "lab/pod/shop/new", Cluster: "lab", Kind: inventory.KindPod, Namespace: "shop", Name: "new", UID: "2",
		IPs: []string{"10.244.1.50"}, Labels: map[string]string{"app": "changed"}, Updated: t0.Add(40 * time.Minute)})
	if w, _ := lr.WorkloadAt("10.244.1.50", t0.Add(30*time.Minute)); w.Labels["app"] != "other" {
		t.Fatalf("at t0+30m: labels %v, want the version of then", w.Labels)
	}
	if w, _ := lr.WorkloadAt("10.244.1.50", t0.Add(45*time.Minute)); w.Labels["app"] != "changed" {
		t.Fatalf("at t0+45m: labels %v, want the new version", w.Labels)
	}
}

// A scope's analysis judges a flow crossing its edge by the side it
// decides: front (scope web) → carts (scope db) is allowed by web's
// egress and denied by db's ingress, so web's analysis finds it Permitted
// by web's intent, db's analysis Escaped by db's catch-all, and an
// analysis of every scope (or of their common parent) Escaped.
func TestScopeAnalysisJudgesItsOwnSide(t *testing.T) {
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	in := inv(t, t0)
	ev, err := policy.Compile(policy.Set{
		Scopes: []policy.Scope{
			{Name: "lab", Filter: `cluster = "lab"`, CatchAll: policy.Allow},
			{Name: "web", Parent: "lab", Filter: `label.app = "front"`, CatchAll: policy.Deny},
			{Name: "db", Parent: "lab", Filter: `label.app = "carts"`, CatchAll: policy.Deny},
		},
		Versions: map[string]*policy.Version{"web": {Name: "v1", Policies: []policy.Policy{
			{Consumer: `label.app = "front"`, Provider: `label.app = "carts"`, Action: policy.Allow, Ports: []string{"tcp/8080"}},
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	f := flow.Flow{ID: "x", Proto: "tcp", Start: t0.Add(time.Minute), Src: flow.Endpoint{IP: "10.244.1.10"}, Dst: flow.Endpoint{IP: "10.244.1.11", Port: 8080},
		Flags: []string{"SYN", "SYN-ACK"}, Replied: true}
	for _, c := range []struct {
		scope   string
		verdict policy.Verdict
		rule    string
		judged  policy.Direction
		scopes  []string // the report's scopes
	}{
		{"web", policy.Permitted, "web@v1#0", policy.Egress, []string{"web"}},
		{"db", policy.Escaped, "db catch-all", policy.Ingress, []string{"db"}},
		{"lab", policy.Escaped, "db catch-all", policy.Both, []string{"db", "web"}},
		{"", policy.Escaped, "db catch-all", policy.Both, []string{"db", "web"}},
	} {
		t.Run("scope="+c.scope, func(t *testing.T) {
			fv, ok := New(ev, in, c.scope).Analyze(&f)
			if !ok {
				t.Fatal("not analyzed")
			}
			if fv.Verdict != c.verdict || fv.Rule.String() != c.rule || fv.Judged != c.judged {
				t.Fatalf("got %v by %q judging %v, want %v by %q judging %v", fv.Verdict, fv.Rule, fv.Judged, c.verdict, c.rule, c.judged)
			}
			if fv.Decision.Egress.Scope != "web" || fv.Decision.Ingress.Scope != "db" {
				t.Fatalf("decision %+v: both sides must be kept", fv.Decision)
			}
			tl := NewTally(c.scope, nil, t0, t0.Add(time.Hour), nil)
			tl.Add(&fv)
			rep := tl.Report()
			var scopes []string
			for _, s := range rep.ByScope {
				scopes = append(scopes, s.Scope)
			}
			if len(rep.ByRule) != len(c.scopes) || !slices.Equal(scopes, c.scopes) {
				t.Fatalf("report: rules %+v scopes %v, want one rule per scope of %v", rep.ByRule, scopes, c.scopes)
			}
		})
	}
}
