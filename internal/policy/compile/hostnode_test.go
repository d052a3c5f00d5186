package compile

import (
	"net/netip"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/policy"
	"github.com/palisade-dev/palisade/internal/policy/netpol"
)

// importedNetworkPolicies is the sock-shop namespace under NetworkPolicies
// imported by internal/policy/netpol: ingress default-deny, front-end
// open to everyone on 8079, carts only from front-end on 80, and user's
// egress isolated but for user-db. The import allows each isolated pod's
// own node both ways (host-node), as upstream always does for the kubelet.
func importedNetworkPolicies(t *testing.T) policy.Set {
	t.Helper()
	tcp := corev1.ProtocolTCP
	port := func(n int) []networkingv1.NetworkPolicyPort {
		p := intstr.FromInt(n)
		return []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p}}
	}
	sel := func(name string) metav1.LabelSelector {
		return metav1.LabelSelector{MatchLabels: map[string]string{"name": name}}
	}
	np := func(name string, spec networkingv1.NetworkPolicySpec) *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "sock-shop", Name: name}, Spec: spec}
	}
	pols := []*networkingv1.NetworkPolicy{
		np("default-deny-ingress", networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}),
		np("front-end", networkingv1.NetworkPolicySpec{PodSelector: sel("front-end"),
			Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: port(8079)}}}),
		np("carts", networkingv1.NetworkPolicySpec{PodSelector: sel("carts"),
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: ptr(sel("front-end"))}}, Ports: port(80)}}}),
		np("user-egress", networkingv1.NetworkPolicySpec{PodSelector: sel("user"), PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{PodSelector: ptr(sel("user-db"))}}}}}),
	}
	v, err := netpol.Translate("lab", pols, netpol.Options{Cluster: "lab", Source: "networkpolicy import: test"})
	if err != nil {
		t.Fatal(err)
	}
	v.Name, v.Number, v.State = "v1", 1, policy.Analyzed
	return policy.Set{
		Scopes:   []policy.Scope{{Name: "lab", Filter: `cluster = "lab"`, CatchAll: policy.Allow}},
		Versions: map[string]*policy.Version{"lab": v},
	}
}

func ptr[T any](v T) *T { return &v }

// An imported NetworkPolicy version, enforced, decides every connection
// as the evaluator does, host-node included: each node reaches the pods it
// runs (kubelet probes) and not the other node's isolated pods; an
// egress-isolated pod reaches its own node and not the other.
func TestHostNodeCompiledLikeTheEvaluator(t *testing.T) {
	set := importedNetworkPolicies(t)
	uses := false
	for _, p := range set.Versions["lab"].Policies {
		uses = uses || p.Consumer == "host-node" || p.Provider == "host-node"
	}
	if !uses {
		t.Fatal("the imported version has no host-node intent")
	}
	checkTruthTable(t, set)

	// The table is not vacuous where host-node decides: the pairs below
	// are decided by it (or its absence) and checked above.
	f := sockShop()
	wd := newWorld(f, compileFixture(t, f, set))
	ev, err := policy.Compile(set)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*inventory.Workload{}
	for _, p := range f.pods {
		byName[p.Name] = p
	}
	peer := func(w *inventory.Workload) policy.Peer {
		return policy.Peer{IP: netip.MustParseAddr(w.IPs[0]), Workload: w}
	}
	for _, c := range []struct {
		src, dst *inventory.Workload
		port     uint16
		want     bool
	}{
		{f.nodes["node2"], byName["carts-2"], 80, true},  // kubelet → its own pod
		{f.nodes["node1"], byName["carts-2"], 80, false}, // another node
		{byName["user"], f.nodes["node2"], 10250, true},  // egress-isolated pod → its own node
		{byName["user"], f.nodes["node1"], 10250, false},
	} {
		if got := DirectAllowed(ev, peer(c.src), peer(c.dst), policy.ProtoTCP, c.port); got != c.want {
			t.Errorf("evaluator: %s → %s:%d = %v, want %v", c.src.Name, c.dst.Name, c.port, got, c.want)
		}
		var compiled bool
		if c.dst.Kind == inventory.KindNode {
			compiled = wd.egress(end{c.src.Name, c.src, netip.MustParseAddr(c.src.IPs[0])}, netip.MustParseAddr(c.dst.IPs[0]), c.port) &&
				wd.nodeIngress(c.dst, netip.MustParseAddr(c.src.IPs[0]), c.port)
		} else {
			src := end{c.src.Name, c.src, netip.MustParseAddr(c.src.IPs[0])}
			compiled = wd.egress(src, netip.MustParseAddr(c.dst.IPs[0]), c.port) && wd.ingress(c.dst, wd.sourceAt(src, c.dst.Node), c.port)
		}
		if compiled != c.want {
			t.Errorf("compiled: %s → %s:%d = %v, want %v", c.src.Name, c.dst.Name, c.port, compiled, c.want)
		}
	}
}

// host-node written by hand, in both directions under a deny catch-all:
// towards a service (the node's own connection to the cluster IP is a flow
// to the service, which no node hosts: only the backends' ingress from
// their own node is opened), towards pods on a named port resolved per
// pod, and from pods to their own node on the kubelet's port.
func TestHostNodeBothDirectionsCompiledLikeTheEvaluator(t *testing.T) {
	checkTruthTable(t, policy.Set{
		Scopes: []policy.Scope{{Name: "lab", Filter: `cluster = "lab"`, CatchAll: policy.Deny}},
		Versions: map[string]*policy.Version{"lab": analyzedV1("lab",
			policy.Policy{Name: "hn-carts", Consumer: "host-node", Provider: "service:sock-shop/carts", Action: policy.Allow},
			policy.Policy{Name: "hn-user", Consumer: "host-node", Provider: `label.name = "user"`, Ports: []string{"tcp/http"}, Action: policy.Allow},
			policy.Policy{Name: "orders-hn", Consumer: `label.name = "orders"`, Provider: "host-node", Ports: []string{"tcp/10250"}, Action: policy.Allow},
			policy.Policy{Name: "fe", Consumer: "any", Provider: `label.name = "front-end"`, Action: policy.Allow},
		)},
	})
}
