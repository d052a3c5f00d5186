package analyze

import (
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/policy"
	"github.com/palisade-dev/palisade/internal/policy/netpol"
)

// A node's own connection to a pod it runs leaves from its bridge
// address (the first host address of its pod CIDR) on a bridge CNI: the
// analysis of an imported default-deny judges it by the import's
// host-node allow, Permitted, from that node (not an unknown source), and
// the same address of another node's pod CIDR, or after the node's CIDR
// moved, stays outside it.
func TestBridgeAddressIsTheHostNode(t *testing.T) {
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	in := emptyInventory(t)
	node := func(name, ip, cidr string, at time.Time) inventory.Workload {
		return inventory.Workload{ID: "lab/node//" + name, Cluster: "lab", Kind: inventory.KindNode, Name: name, IPs: []string{ip}, CIDRs: []string{cidr}, Updated: at}
	}
	for _, w := range []inventory.Workload{
		node("n1", "10.10.0.11", "10.244.1.0/24", t0),
		node("n2", "10.10.0.12", "10.244.2.0/24", t0),
		{ID: "lab/pod/shop/carts", Cluster: "lab", Kind: inventory.KindPod, Namespace: "shop", Name: "carts", IPs: []string{"10.244.1.11"},
			Node: "n1", HostIP: "10.10.0.11", Labels: map[string]string{"app": "carts"}, NamespaceLabels: map[string]string{"kubernetes.io/metadata.name": "shop"}, Updated: t0},
		node("n1", "10.10.0.11", "10.244.7.0/24", t0.Add(30*time.Minute)), // n1's pod CIDR moves
	} {
		in.Apply(w)
	}
	v, err := netpol.Translate("lab", []*networkingv1.NetworkPolicy{{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "default-deny-ingress"},
		Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}}}, netpol.Options{Cluster: "lab"})
	if err != nil {
		t.Fatal(err)
	}
	v.Name = "v1"
	ev, err := policy.Compile(policy.Set{Scopes: []policy.Scope{{Name: "lab", Filter: `cluster = "lab"`, CatchAll: policy.Allow}},
		Versions: map[string]*policy.Version{"lab": v}})
	if err != nil {
		t.Fatal(err)
	}
	a := New(ev, in, "")
	for _, c := range []struct {
		name, src string
		at        time.Duration
		verdict   policy.Verdict
		from      string // the source's workload name
	}{
		{"bridge address of the pod's node", "10.244.1.1", time.Minute, policy.Permitted, "n1"},
		{"network address of the pod's node's CIDR", "10.244.1.0", time.Minute, policy.Permitted, "n1"},
		{"the node's own address", "10.10.0.11", time.Minute, policy.Permitted, "n1"},
		{"bridge address of another node", "10.244.2.1", time.Minute, policy.Escaped, "n2"},
		{"the old bridge address after the CIDR moved", "10.244.1.1", 40 * time.Minute, policy.Escaped, ""},
		{"a pod's address of the CIDR", "10.244.1.2", time.Minute, policy.Escaped, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := flow.Flow{ID: c.src, Proto: "tcp", Start: t0.Add(c.at), Src: flow.Endpoint{IP: c.src, Port: 40000},
				Dst: flow.Endpoint{IP: "10.244.1.11", Port: 8080}, Flags: []string{"SYN", "SYN-ACK"}, Replied: true}
			fv, ok := a.Analyze(&f)
			if !ok {
				t.Fatal("not analyzed")
			}
			if fv.Verdict != c.verdict {
				t.Errorf("verdict %v by %s, want %v; decision %+v", fv.Verdict, fv.Rule, c.verdict, fv.Decision)
			}
			if in := fv.Decision.Ingress.Rule; c.verdict == policy.Permitted && (in.Index < 0 || v.Policies[in.Index].Consumer != "host-node") {
				t.Errorf("the pod's ingress allowed by %s, want the import's host-node allow", in)
			}
			if name := nameOf(Resolve(&f, in).Src); name != c.from {
				t.Errorf("source resolved to %q, want %q", name, c.from)
			}
		})
	}
}

func nameOf(w *inventory.Workload) string {
	if w == nil {
		return ""
	}
	return w.Name
}

// The live resolver answers a bridge address as the inventory does at the
// flow's time, also where a pod held it for a while after the node's
// version began: the node holding it now does not mean it held it then.
func TestLiveResolverBridgeAddress(t *testing.T) {
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	in := emptyInventory(t)
	lr := &LiveResolver{R: in}
	in.Subscribe(func(*inventory.Workload) { lr.Invalidate() })
	in.Apply(inventory.Workload{ID: "lab/node//n1", Cluster: "lab", Kind: inventory.KindNode, Name: "n1", IPs: []string{"10.10.0.11"}, CIDRs: []string{"10.244.1.0/24"}, Updated: t0})
	in.Apply(inventory.Workload{ID: "lab/pod/shop/odd", Cluster: "lab", Kind: inventory.KindPod, Namespace: "shop", Name: "odd", IPs: []string{"10.244.1.1"}, Updated: t0.Add(10 * time.Minute)})
	in.Delete("lab/pod/shop/odd", t0.Add(20*time.Minute))
	for _, c := range []struct {
		at   time.Duration
		want string
	}{{50 * time.Minute, "n1"}, {15 * time.Minute, "odd"}, {5 * time.Minute, "n1"}, {55 * time.Minute, "n1"}, {12 * time.Minute, "odd"}} {
		if w, ok := lr.WorkloadAt("10.244.1.1", t0.Add(c.at)); !ok || w.Name != c.want {
			t.Errorf("10.244.1.1 at t0+%s: %v %v, want %s", c.at, w, ok, c.want)
		}
	}
}

func emptyInventory(t *testing.T) *inventory.Inventory {
	t.Helper()
	in, err := inventory.Open(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close() })
	return in
}
