package e2e

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/filter"
	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/policy"
	"github.com/palisade-dev/palisade/internal/policy/analyze"
	"github.com/palisade-dev/palisade/internal/policy/netpol"
	"github.com/palisade-dev/palisade/internal/server"
)

// TestDiscoveryNetworkPolicyRoundTrip is issue 10's NetworkPolicy
// acceptance on the lab: policy discovered from sock-shop's real traffic,
// exported as Kubernetes NetworkPolicies (what `palisade discover -o
// networkpolicy` writes) and imported back through the server's
// NetworkPolicy import as the next version of the scope, decides every
// connection between the lab's pods, its nodes and outside addresses, on
// every port the lab's pods, services and rules name, as the discovered
// version does, connection by connection; and every connection through a
// service (judged on its DNAT'd flow to the backend) the same.
//
// The differences NetworkPolicy has by nature are accounted for, not
// ignored: it decides after DNAT, so a consumer the discovered version
// allows only through a service reaches the service's backends on their
// target port directly too; behind a node port the backends see the
// nodes' addresses, so the nodes reach them directly; and a pod and its
// own node always reach each other (as upstream implementations do, and
// the import with them). Each disagreement must be one of those (the
// discovered version permitting the same source to the same backend and
// port through the service, or a pod and its own node), or the test fails.
func TestDiscoveryNetworkPolicyRoundTrip(t *testing.T) {
	e := newPolicyEnv(t, "e2ediscnp")
	e.applyYAML(t, "scopes.yaml", discoveryScopes, false)

	from := time.Now().Add(-time.Second)
	e.traffic(t, 6*time.Second)
	sleepUntil(e.settled(time.Now()))
	to := time.Now()
	job := e.discover(t, server.DiscoverRequest{From: from, To: to, AsVersion: true})
	res := job.Result
	var np bytes.Buffer
	if err := res.WriteNetworkPolicies(&np); err != nil {
		t.Fatal(err)
	}
	t.Logf("discovered %s: %d rules, exported as NetworkPolicies:\n%s", job.Version, len(res.Rules), np.String())

	// Back through the server's NetworkPolicy import, as the next version.
	var imp netpol.ImportResult
	e.api(t, "POST", "/scopes/sock-shop/import/networkpolicy", nil,
		netpol.ImportRequest{Files: []netpol.File{{Name: "discovered-networkpolicies.yaml", Content: np.String()}}}, &imp)
	if imp.Version == "" || imp.Version == job.Version || imp.Policies == 0 {
		t.Fatalf("import of the exported NetworkPolicies: %+v", imp)
	}
	var discovered, imported policy.Version
	e.api(t, "GET", "/scopes/sock-shop/versions/"+job.Version, nil, nil, &discovered)
	e.api(t, "GET", "/scopes/sock-shop/versions/"+imp.Version, nil, nil, &imported)
	inv := e.server().Inventory
	a, b := e.scopeAnalyzer(t, inv, &discovered), e.scopeAnalyzer(t, inv, &imported)

	// The lab's ends: sock-shop's pods, the nodes, the external hosts and
	// an address never seen.
	at := time.Now()
	podF, _ := filter.Parse(`kind = pod and cluster = "lab" and namespace = "sock-shop"`, inventory.Schema)
	pods := inv.Search(podF, inventory.SearchOptions{})
	svcF, _ := filter.Parse(`kind = service and cluster = "lab" and namespace = "sock-shop"`, inventory.Schema)
	svcs := inv.Search(svcF, inventory.SearchOptions{})
	if len(pods) < 5 || len(svcs) < 5 {
		t.Fatalf("inventory: %d sock-shop pods, %d services", len(pods), len(svcs))
	}
	type end struct{ name, ip string }
	var srcs, dsts []end
	for _, p := range pods {
		srcs = append(srcs, end{p.Name, p.IPs[0]})
		dsts = append(dsts, end{p.Name, p.IPs[0]})
	}
	for _, n := range e.st.Nodes {
		srcs = append(srcs, end{"node " + n.Name, n.IP})
		dsts = append(dsts, end{"node " + n.Name, n.IP})
	}
	for _, x := range e.st.External {
		srcs = append(srcs, end{"external " + x.IP, x.IP})
		dsts = append(dsts, end{"external " + x.IP, x.IP})
	}
	srcs = append(srcs, end{"unseen", "203.0.113.201"})
	dsts = append(dsts, end{"unseen", "203.0.113.201"})
	// Every port the pods, services and rules name, and some none does.
	portSet := map[uint16]bool{22: true, 80: true, 443: true, 8080: true, 27017: true}
	for _, p := range pods {
		for _, c := range p.Containers {
			for _, cp := range c.Ports {
				portSet[uint16(cp.Port)] = true
			}
		}
	}
	for _, s := range svcs {
		for _, sp := range s.Ports {
			portSet[uint16(sp.Port)] = true
			if n, err := strconv.Atoi(sp.TargetPort); err == nil {
				portSet[uint16(n)] = true
			}
		}
	}
	for _, r := range res.Rules {
		for _, p := range r.Ports {
			var n uint16
			if _, err := fmt.Sscanf(p, "tcp/%d", &n); err == nil {
				portSet[n] = true
			}
		}
	}
	var ports []uint16
	for p := range portSet {
		ports = append(ports, p)
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })

	// A connection neither end of which is in sock-shop is no scope's
	// business here (both analyzers leave it out, or the test fails).
	const outside = policy.Verdict(255)
	verdict := func(an *analyze.Analyzer, f *flow.Flow) policy.Verdict {
		fv, ok := an.Analyze(f)
		if !ok {
			return outside
		}
		return fv.Verdict
	}
	n := 0
	mkFlow := func(src, dst string, port uint16) flow.Flow {
		n++
		return flow.Flow{ID: flow.MakeID(at, uint64(n)), Proto: "tcp", Start: at, End: at.Add(time.Second), Replied: true, Conns: 1,
			Src: flow.Endpoint{IP: src, Port: 40000}, Dst: flow.Endpoint{IP: dst, Port: port}}
	}
	// Through every service port, from every source: the DNAT'd flow to
	// each backend decides, in both versions alike.
	viaService := map[string]bool{} // src ip → backend ip:target port the discovered version permits through a service
	serviceCases := 0
	for _, s := range svcs {
		for _, sp := range s.Ports {
			for _, ep := range s.Endpoints {
				for _, tp := range ep.Ports {
					for _, src := range srcs {
						if src.ip == ep.IP {
							continue
						}
						f := mkFlow(src.ip, ep.IP, uint16(tp))
						f.Dst.Service = s.Namespace + "/" + s.Name
						f.Related = []flow.Related{{ID: "dnat", Reason: flow.ReasonClusterIP}}
						va, vb := verdict(a, &f), verdict(b, &f)
						if va != vb {
							t.Errorf("%s → service %s:%d (backend %s:%d): discovered %s, imported NetworkPolicies %s", src.name, s.Name, sp.Port, ep.IP, tp, va, vb)
						}
						if va == policy.Permitted {
							viaService[src.ip+" "+ep.IP+":"+strconv.Itoa(int(tp))] = true
						}
						serviceCases++
					}
				}
			}
		}
	}
	// Behind a node port, the nodes reach the backends.
	for _, r := range res.Rules {
		if r.Kind != "nodeport" {
			continue
		}
		for _, s := range svcs {
			if "service:"+s.Namespace+"/"+s.Name != r.Provider {
				continue
			}
			for _, ep := range s.Endpoints {
				for _, tp := range ep.Ports {
					for _, ip := range r.NodeIPs {
						viaService[ip+" "+ep.IP+":"+strconv.Itoa(int(tp))] = true
					}
				}
			}
		}
	}
	// A pod and its own node: NetworkPolicy (as upstream, and the import)
	// always lets them reach each other.
	ownNode := map[string]bool{}
	for _, p := range pods {
		if p.HostIP != "" {
			ownNode[p.IPs[0]+" "+p.HostIP], ownNode[p.HostIP+" "+p.IPs[0]] = true, true
		}
	}
	if len(ownNode) == 0 {
		t.Fatal("the inventory knows no pod's node address")
	}
	// Directly, between every pair of ends, on every port.
	agree, dnatOnly, hostOnly := 0, 0, 0
	for _, src := range srcs {
		for _, dst := range dsts {
			if src.ip == dst.ip {
				continue
			}
			for _, port := range ports {
				f := mkFlow(src.ip, dst.ip, port)
				va, vb := verdict(a, &f), verdict(b, &f)
				switch {
				case va == vb && va == outside:
				case va == vb:
					agree++
				case va == policy.Escaped && vb == policy.Permitted && viaService[src.ip+" "+dst.ip+":"+strconv.Itoa(int(port))]:
					dnatOnly++ // allowed to the backend through its service: NetworkPolicy sees the backend
				case va == policy.Escaped && vb == policy.Permitted && ownNode[src.ip+" "+dst.ip]:
					hostOnly++ // a pod and its own node
				default:
					t.Errorf("%s → %s:%d: discovered %s, imported NetworkPolicies %s", src.name, dst.name, port, va, vb)
				}
			}
		}
	}
	t.Logf("%d ends × %d ports: %d direct connections agree, %d differ only as NetworkPolicy's DNAT allows, %d as it allows a pod and its own node; %d through services agree",
		len(srcs), len(ports), agree, dnatOnly, hostOnly, serviceCases)
	if agree < 500 || serviceCases < 50 {
		t.Fatalf("too few cases compared: %d direct, %d through services", agree, serviceCases)
	}
	if dnatOnly == 0 {
		t.Errorf("no connection differs by NetworkPolicy's DNAT semantics, yet sock-shop's services have backends on other ports")
	}
	// The discovered version is not vacuous: the call graph's edges are
	// permitted and unusual ones escaped, in both.
	userDB := e.st.PodsOf("sock-shop", "user-db")[0]
	catalogue := e.st.PodsOf("sock-shop", "catalogue")[0]
	f := mkFlow(catalogue.IP, userDB.IP, 27017)
	if verdict(a, &f) != policy.Escaped || verdict(b, &f) != policy.Escaped {
		t.Errorf("catalogue → user-db:27017 is not escaped in both versions")
	}
}

// scopeAnalyzer analyzes flows for sock-shop under the discovery test's
// scopes with v as sock-shop's version, over the server's inventory.
func (e *env) scopeAnalyzer(t *testing.T, inv *inventory.Inventory, v *policy.Version) *analyze.Analyzer {
	t.Helper()
	docs, err := policy.ParseDocuments("scopes.yaml", bytes.NewReader([]byte(discoveryScopes)))
	if err != nil {
		t.Fatal(err)
	}
	set := policy.Set{Versions: map[string]*policy.Version{"sock-shop": v}, Services: map[string]*inventory.Workload{}}
	for _, d := range docs {
		if d.Scope != nil {
			set.Scopes = append(set.Scopes, *d.Scope)
		}
	}
	svcF, _ := filter.Parse(`kind = service`, inventory.Schema)
	for _, w := range inv.Search(svcF, inventory.SearchOptions{}) {
		set.Services[w.Namespace+"/"+w.Name] = w
	}
	ev, err := policy.Compile(set)
	if err != nil {
		t.Fatalf("version %s does not compile: %v", v.Name, err)
	}
	return analyze.New(ev, inv, "sock-shop")
}
