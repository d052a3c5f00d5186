package e2e

import (
	"context"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/palisade-dev/palisade/internal/lab"
	"github.com/palisade-dev/palisade/internal/lab/app"
	"github.com/palisade-dev/palisade/internal/policy"
	"github.com/palisade-dev/palisade/internal/policy/analyze"
	"github.com/palisade-dev/palisade/internal/policy/netpol"
	"github.com/palisade-dev/palisade/internal/policy/netpol/netpoltest"
)

// TestNetworkPolicyImportAnswersWhatWouldHaveBeenBlocked: NetworkPolicies
// for sock-shop live in the API server (not enforced by anything); they are
// imported from the connected cluster as a version of the cluster's scope;
// the lab's real traffic is captured by the agents and stored; the analysis
// of the imported version over that time range gives every stored flow
// between pods and external addresses the verdict the API's semantics give
// it (the independent reference of internal/policy/netpol/netpoltest):
// Permitted where the policies allow it, Escaped where they would have
// blocked it. Flows to a cluster IP are judged on their DNAT-related flow to
// the backend, as upstream judges connections after DNAT.
func TestNetworkPolicyImportAnswersWhatWouldHaveBeenBlocked(t *testing.T) {
	e := newEnvNamed(t, lab.ModeDirect, "e2enetpol")
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(e.kube.Config)
	tcp := corev1.ProtocolTCP
	port := func(n int32) *intstr.IntOrString { p := intstr.FromInt32(n); return &p }
	app1 := func(names ...string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: names}}}
	}
	pols := []*networkingv1.NetworkPolicy{
		{ObjectMeta: metav1.ObjectMeta{Name: "default-deny"},
			Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}}},
		// The shop is open on the front-end's port, to anyone.
		{ObjectMeta: metav1.ObjectMeta{Name: "front-end-in"},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: *app1("front-end"),
				Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: port(8079)}}}}}},
		// front-end may call carts and catalogue only (orders and user: blocked).
		{ObjectMeta: metav1.ObjectMeta{Name: "front-end-out"},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: *app1("front-end"), PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
				Egress: []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{PodSelector: app1("carts", "catalogue")}}}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "from-front-end"},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: *app1("carts", "catalogue", "orders", "user"),
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: app1("front-end")}}}}}},
		// user → user-db on 27017, both sides.
		{ObjectMeta: metav1.ObjectMeta{Name: "user-db"},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: *app1("user-db"),
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: app1("user")}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: port(27017)}}}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "user-out"},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: *app1("user"), PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
				Egress: []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{PodSelector: app1("user-db")}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: port(27017)}}}}}},
		// payment may reach the documentation range but not 203.0.113.10.
		{ObjectMeta: metav1.ObjectMeta{Name: "payment-out"},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: *app1("payment"), PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
				Egress: []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{
					CIDR: "203.0.113.0/24", Except: []string{e.st.External[0].IP + "/32"}}}}}}}},
	}
	for _, p := range pols {
		p.Namespace = "sock-shop"
		if _, err := cs.NetworkingV1().NetworkPolicies("sock-shop").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cs.NetworkingV1().NetworkPolicies("sock-shop").Delete(ctx, p.Name, metav1.DeleteOptions{}) })
	}
	e.applyYAML(t, "scope.yaml", "kind: Scope\nname: lab\nfilter: cluster = \"lab\"\ncatchAll: DENY\n", false)
	var imp netpol.ImportResult
	e.api(t, "POST", "/scopes/lab/import/networkpolicy", nil, netpol.ImportRequest{Cluster: "lab"}, &imp)
	if imp.Version != "v1" || imp.Policies != len(pols) {
		t.Fatalf("import = %+v", imp)
	}

	from := time.Now().Add(-time.Second)
	tctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := lab.Traffic(tctx, e.st, app.SockShop(), lab.TrafficOptions{Duration: 6 * time.Second, Rate: 20}); err != nil {
		t.Fatal(err)
	}
	end := time.Now()
	sleepUntil(e.settled(end))
	to := time.Now()

	world, err := netpoltest.FromAPI(ctx, cs, []string{"sock-shop"})
	if err != nil {
		t.Fatal(err)
	}
	fromAPI, err := netpol.FromCluster(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	rep := e.analysis(t, "lab", "v1", from, to)
	t.Logf("v1 over the lab's traffic: %d flows %+v, %d translated", rep.Flows, rep.Counts, rep.Translated)
	var flows []analyze.FlowVerdict
	for _, v := range []string{"permitted", "escaped", "rejected", "misdropped"} {
		var fvs []analyze.FlowVerdict
		e.api(t, "GET", "/analysis/flows", url.Values{"scope": {"lab"}, "version": {"v1"}, "verdict": {v}, "limit": {"10000"},
			"from": {from.UTC().Format(time.RFC3339Nano)}, "to": {to.UTC().Format(time.RFC3339Nano)}}, nil, &fvs)
		flows = append(flows, fvs...)
	}
	compared := map[policy.Verdict]int{}
	escapedEdges := map[string]bool{}
	for _, fv := range flows {
		f := fv.Flow
		if fv.Translated || f.Dst.Kind == "service" || f.Proto != "tcp" {
			continue // judged on the DNAT-related flow to the backend
		}
		end := func(ip string) netpoltest.End {
			a := netip.MustParseAddr(ip)
			return netpoltest.End{Pod: world.PodAt(a), IP: a}
		}
		src, dst := end(f.Src.IP), end(f.Dst.IP)
		action := policy.Deny
		if world.Allowed(fromAPI, src, dst, corev1.ProtocolTCP, int32(f.Dst.Port)) {
			action = policy.Allow
		}
		if want := policy.VerdictOf(action, f.Replied); fv.Verdict != want {
			t.Errorf("%s:%d → %s:%d (%s → %s, replied %v): verdict %s by %s, upstream semantics %s",
				f.Src.IP, f.Src.Port, f.Dst.IP, f.Dst.Port, f.Src.Name, f.Dst.Name, f.Replied, fv.Verdict, fv.Rule.Key, want)
		}
		compared[fv.Verdict]++
		if fv.Verdict == policy.Escaped {
			escapedEdges[appOf(world, src)+" → "+appOf(world, dst)] = true
		}
	}
	t.Logf("compared %v; would have been blocked: %v", compared, escapedEdges)
	if compared[policy.Permitted] == 0 || compared[policy.Escaped] == 0 {
		t.Fatalf("want permitted and escaped flows among those compared, got %v", compared)
	}
	for _, edge := range []string{"front-end → orders", "front-end → user", "orders → payment", "payment → " + e.st.External[0].IP} {
		if !escapedEdges[edge] {
			t.Errorf("the policies block %s, but no such flow is Escaped (escaped: %v)", edge, escapedEdges)
		}
	}
	for _, edge := range []string{"front-end → carts", "user → user-db"} {
		if escapedEdges[edge] {
			t.Errorf("the policies allow %s, but a flow of it is Escaped", edge)
		}
	}
}

// appOf names an end by its app label, or its address.
func appOf(w *netpoltest.World, e netpoltest.End) string {
	if e.Pod != nil {
		return e.Pod.Labels["app"]
	}
	return strings.TrimSpace(e.IP.String())
}
