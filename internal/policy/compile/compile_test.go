package compile

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/policy"
	"github.com/palisade-dev/palisade/internal/ruleset"
)

const extIP = "203.0.113.10"

// fixture is a small sock-shop on two nodes, like the lab's.
type fixture struct {
	ws       []*inventory.Workload
	nodes    map[string]*inventory.Workload
	pods     []*inventory.Workload
	services []*inventory.Workload
}

func pod(name, node, ip string, port int32, replica int) *inventory.Workload {
	app := name
	if replica > 0 {
		name = fmt.Sprintf("%s-%d", name, replica)
	}
	return &inventory.Workload{ID: "lab/pod/sock-shop/" + name, Cluster: "lab", Kind: inventory.KindPod, Namespace: "sock-shop", Name: name,
		IPs: []string{ip}, Node: node, Labels: map[string]string{"name": app},
		Containers: []inventory.Container{{Name: app, Ports: []inventory.ContainerPort{{Name: "http", Protocol: "TCP", Port: port}}}}}
}

func service(name, ip string, port, target, nodePort int32, backends ...*inventory.Workload) *inventory.Workload {
	w := &inventory.Workload{ID: "lab/service/sock-shop/" + name, Cluster: "lab", Kind: inventory.KindService, Namespace: "sock-shop", Name: name,
		IPs: []string{ip}, ClusterIP: ip, Selector: map[string]string{"name": name}, Labels: map[string]string{"name": name},
		Ports:       []inventory.ServicePort{{Name: "http", Protocol: "TCP", Port: port, TargetPort: strconv.Itoa(int(target)), NodePort: nodePort}},
		ServiceType: "ClusterIP"}
	if nodePort != 0 {
		w.ServiceType = "NodePort"
	}
	for _, b := range backends {
		w.Endpoints = append(w.Endpoints, inventory.Endpoint{IP: b.IPs[0], Ports: []int32{target}, Pod: b.Namespace + "/" + b.Name, Node: b.Node, Ready: true})
	}
	return w
}

func sockShop() *fixture {
	f := &fixture{nodes: map[string]*inventory.Workload{}}
	for i := 1; i <= 2; i++ {
		n := &inventory.Workload{ID: fmt.Sprintf("lab/node/node%d", i), Cluster: "lab", Kind: inventory.KindNode, Name: fmt.Sprintf("node%d", i),
			IPs: []string{fmt.Sprintf("10.10.0.1%d", i)}, CIDRs: []string{fmt.Sprintf("10.244.%d.0/24", i)}}
		f.nodes[n.Name] = n
		f.ws = append(f.ws, n)
	}
	fe := pod("front-end", "node1", "10.244.1.10", 8079, 0)
	c1, c2, c3 := pod("carts", "node1", "10.244.1.11", 80, 1), pod("carts", "node2", "10.244.2.10", 80, 2), pod("carts", "node2", "10.244.2.11", 80, 3)
	pay := pod("payment", "node1", "10.244.1.12", 80, 0)
	orders := pod("orders", "node1", "10.244.1.13", 80, 0)
	user := pod("user", "node2", "10.244.2.13", 80, 0)
	udb := pod("user-db", "node2", "10.244.2.12", 27017, 0)
	f.pods = []*inventory.Workload{fe, c1, c2, c3, pay, orders, user, udb}
	f.services = []*inventory.Workload{
		service("front-end", "10.96.0.10", 80, 8079, 31095, fe),
		service("carts", "10.100.135.136", 80, 80, 0, c1, c2, c3),
		service("payment", "10.96.0.12", 80, 80, 0, pay),
		service("orders", "10.96.0.13", 80, 80, 0, orders),
	}
	f.ws = append(append(f.ws, f.pods...), f.services...)
	return f
}

// analyzedV1 is version v1 of scope, analyzed, holding ps.
func analyzedV1(scope string, ps ...policy.Policy) *policy.Version {
	for i := range ps {
		ps[i].Scope = scope
	}
	return &policy.Version{Scope: scope, Name: "v1", Number: 1, Policies: ps, State: policy.Analyzed}
}

// fiveCases is the reference material's five examples, in a split scope
// design: the cluster scope holds nodes and the node-facing rules, the
// sock-shop scope the application's own.
func fiveCases() policy.Set {
	v := analyzedV1
	allow := policy.Allow
	return policy.Set{
		Scopes: []policy.Scope{
			{Name: "lab", Filter: `cluster = "lab"`, CatchAll: policy.Deny},
			{Name: "sock-shop", Parent: "lab", Filter: `namespace = "sock-shop"`, CatchAll: policy.Deny},
		},
		Versions: map[string]*policy.Version{
			"lab": v("lab",
				// 3: node health probes to front-end.
				policy.Policy{Name: "probes", Consumer: `kind = "node"`, Provider: `label.name = "front-end"`, Ports: []string{"tcp/8079"}, Action: allow},
				// 4: anyone to the front-end NodePort service.
				policy.Policy{Name: "nodeport", Consumer: "any", Provider: "service:sock-shop/front-end", Ports: []string{"tcp/80"}, Action: allow},
			),
			"sock-shop": v("sock-shop",
				// An absolute deny above everything: orders never reach user-db.
				policy.Policy{Name: "no-orders-db", Consumer: `label.name = "orders"`, Provider: `label.name = "user-db"`, Action: policy.Deny, Class: policy.Absolute},
				// 1: payment → user-db without a service.
				policy.Policy{Name: "payment-db", Consumer: `label.name = "payment"`, Provider: `label.name = "user-db"`, Ports: []string{"tcp/27017"}, Action: allow},
				// 2: front-end → carts service.
				policy.Policy{Name: "fe-carts", Consumer: `label.name = "front-end"`, Provider: "service:sock-shop/carts", Ports: []string{"tcp/80"}, Action: allow},
				// 5: payment → an external address.
				policy.Policy{Name: "payment-ext", Consumer: `label.name = "payment"`, Provider: "cidr:" + extIP + "/32", Ports: []string{"tcp/666"}, Action: allow},
				// Named port: user → orders' "http".
				policy.Policy{Name: "user-orders", Consumer: `label.name = "user"`, Provider: `label.name = "orders"`, Ports: []string{"tcp/http"}, Action: allow},
				// The nodes' probes and the NodePort, repeated in the child
				// scope as the reference material's note asks.
				policy.Policy{Name: "probes", Consumer: `kind = "node"`, Provider: `label.name = "front-end"`, Ports: []string{"tcp/8079"}, Action: allow},
				policy.Policy{Name: "nodeport", Consumer: "any", Provider: "service:sock-shop/front-end", Ports: []string{"tcp/80"}, Action: allow},
				// Orders may reach the whole namespace, except payment: an
				// absolute deny written after the allow still wins.
				policy.Policy{Name: "orders-all", Consumer: `label.name = "orders"`, Provider: `namespace = "sock-shop"`, Action: allow},
				policy.Policy{Name: "no-orders-payment", Consumer: `label.name = "orders"`, Provider: `label.name = "payment"`, Action: policy.Deny, Class: policy.Absolute},
			),
		},
	}
}

func compileFixture(t testing.TB, f *fixture, set policy.Set) *Output {
	t.Helper()
	enforced := map[string]bool{}
	for _, sc := range set.Scopes {
		enforced[sc.Name] = true
	}
	out, err := Compile(Input{Set: set, Enforced: enforced, Workloads: f.ws})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range out.Bundles {
		if b.Self != nil {
			if err := b.Self.Validate(); err != nil {
				t.Fatalf("node %s: %v", name, err)
			}
		}
		for _, p := range b.Pods {
			if p.Rules != nil {
				if err := p.Rules.Validate(); err != nil {
					t.Fatalf("pod %s: %v", p.ID, err)
				}
			}
		}
	}
	return out
}

// world answers "what would the compiled rules do" for a connection, by
// walking the chains a packet meets: the source's egress, the node's
// forward chain for a node port, the destination's ingress.
type world struct {
	f     *fixture
	out   *Output
	pods  map[string]*ruleset.Pod // by IP
	nodeB map[string]*ruleset.Bundle
}

func newWorld(f *fixture, out *Output) *world {
	w := &world{f: f, out: out, pods: map[string]*ruleset.Pod{}, nodeB: out.Bundles}
	for _, b := range out.Bundles {
		for i := range b.Pods {
			for _, ip := range b.Pods[i].IPs {
				w.pods[ip] = &b.Pods[i]
			}
		}
	}
	return w
}

func allows(r *ruleset.Rules, c *ruleset.Chain, p ruleset.Packet) bool {
	if r == nil {
		return true
	}
	v, _ := r.Decide(c, p)
	return v == ruleset.Allow
}

// endpoint of a connection: a pod, a node or the external host.
type end struct {
	name string
	w    *inventory.Workload // nil: external
	ip   netip.Addr
}

// sourceAt is the address a destination pod on node dstNode sees for src
// (nodes source pod traffic from the bridge to local pods, from their IP
// to remote ones).
func (wd *world) sourceAt(src end, dstNode string) netip.Addr {
	if src.w != nil && src.w.Kind == inventory.KindNode && src.w.Name == dstNode {
		return netip.MustParseAddr(DefaultNodeAddrs(src.w)[2]) // CIDR .1
	}
	return src.ip
}

func (wd *world) egress(src end, peer netip.Addr, port uint16) bool {
	switch {
	case src.w == nil:
		return true
	case src.w.Kind == inventory.KindNode:
		b := wd.nodeB[src.w.Name]
		return b.Self == nil || allows(b.Self, &b.Self.Egress, ruleset.Packet{Peer: peer, Proto: "tcp", Port: port})
	}
	p := wd.pods[src.ip.String()]
	return p.Rules == nil || allows(p.Rules, &p.Rules.Egress, ruleset.Packet{Peer: peer, Proto: "tcp", Port: port})
}

func (wd *world) nodeIngress(n *inventory.Workload, src netip.Addr, port uint16) bool {
	b := wd.nodeB[n.Name]
	return b.Self == nil || allows(b.Self, &b.Self.Ingress, ruleset.Packet{Peer: src, Proto: "tcp", Port: port})
}

func (wd *world) ingress(dst *inventory.Workload, src netip.Addr, port uint16) bool {
	p := wd.pods[dst.IPs[0]]
	return p.Rules == nil || allows(p.Rules, &p.Rules.Ingress, ruleset.Packet{Peer: src, Proto: "tcp", Port: port})
}

type target struct {
	name string
	// exactly one of:
	pod     *inventory.Workload
	svc     *inventory.Workload // ClusterIP
	node    *inventory.Workload // with svc: its node port
	extPort uint16
	port    uint16
}

func TestCompiledRulesDecideLikeTheEvaluator(t *testing.T) {
	t.Run("five cases", func(t *testing.T) { checkTruthTable(t, fiveCases()) })
	t.Run("services in their own scope", func(t *testing.T) { checkTruthTable(t, serviceScopes()) })
}

// serviceScopes gives the services a scope of their own: the flow to a
// cluster IP is decided on ingress by the service's scope (only
// front-end may use carts, only orders payment; user-db's service is
// open), the DNAT-ed flow by the backends' (sock-shop: allow all but
// what it denies).
func serviceScopes() policy.Set {
	v := analyzedV1
	allow := policy.Allow
	return policy.Set{
		Scopes: []policy.Scope{
			{Name: "lab", Filter: `cluster = "lab"`, CatchAll: policy.Allow},
			{Name: "sock-shop", Parent: "lab", Filter: `namespace = "sock-shop" and kind = "pod"`, CatchAll: policy.Allow},
			{Name: "services", Parent: "lab", Filter: `kind = "service"`, CatchAll: policy.Deny},
		},
		Versions: map[string]*policy.Version{
			"lab": v("lab"),
			"sock-shop": v("sock-shop",
				policy.Policy{Name: "no-user-orders", Consumer: `label.name = "user"`, Provider: `label.name = "orders"`, Action: policy.Deny},
			),
			"services": v("services",
				policy.Policy{Name: "fe-carts", Consumer: `label.name = "front-end"`, Provider: "service:sock-shop/carts", Ports: []string{"tcp/80"}, Action: allow},
				policy.Policy{Name: "orders-payment", Consumer: `label.name = "orders"`, Provider: `label.name = "payment"`, Action: allow},
				policy.Policy{Name: "nodes-front", Consumer: `kind = "node"`, Provider: "service:sock-shop/front-end", Action: allow},
				policy.Policy{Name: "user-any", Consumer: `label.name = "user"`, Provider: `kind = "service"`, Ports: []string{"tcp/80"}, Action: allow},
			),
		},
	}
}

func checkTruthTable(t *testing.T, set policy.Set) {
	f := sockShop()
	out := compileFixture(t, f, set)
	wd := newWorld(f, out)
	ev, err := policy.Compile(set)
	if err != nil {
		t.Fatal(err)
	}
	var sources []end
	for _, p := range f.pods {
		sources = append(sources, end{p.Name, p, netip.MustParseAddr(p.IPs[0])})
	}
	for _, n := range []string{"node1", "node2"} {
		w := f.nodes[n]
		sources = append(sources, end{n, w, netip.MustParseAddr(w.IPs[0])})
	}
	sources = append(sources, end{"external", nil, netip.MustParseAddr(extIP)})
	var targets []target
	for _, p := range f.pods {
		for _, port := range []uint16{uint16(p.Containers[0].Ports[0].Port), 9999} {
			targets = append(targets, target{name: fmt.Sprintf("%s:%d", p.Name, port), pod: p, port: port})
		}
	}
	for _, s := range f.services {
		targets = append(targets, target{name: s.Name + " ClusterIP", svc: s, port: uint16(s.Ports[0].Port)})
		if s.Ports[0].NodePort != 0 {
			for _, n := range []string{"node1", "node2"} {
				targets = append(targets, target{name: s.Name + " NodePort@" + n, svc: s, node: f.nodes[n], port: uint16(s.Ports[0].NodePort)})
			}
		}
	}
	targets = append(targets, target{name: "external:666", extPort: 666}, target{name: "external:80", extPort: 80})
	for _, n := range []string{"node1", "node2"} {
		targets = append(targets, target{name: n + ":10250", node: f.nodes[n], port: 10250})
	}

	peerOf := func(e end) policy.Peer { return policy.Peer{IP: e.ip, Workload: e.w} }
	checked, allowed := 0, 0
	for _, src := range sources {
		for _, tg := range targets {
			var want, got bool
			switch {
			case tg.extPort != 0:
				if src.w == nil || src.w.Kind != inventory.KindPod {
					continue // nodes' own traffic out is not in the lab's call graph
				}
				want = DirectAllowed(ev, peerOf(src), policy.Peer{IP: netip.MustParseAddr(extIP)}, policy.ProtoTCP, tg.extPort)
				got = wd.egress(src, netip.MustParseAddr(extIP), tg.extPort)
			case tg.pod != nil:
				if src.w == nil || src.w == tg.pod {
					continue // the external host cannot route to pod IPs
				}
				dst := end{tg.pod.Name, tg.pod, netip.MustParseAddr(tg.pod.IPs[0])}
				want = DirectAllowed(ev, peerOf(src), peerOf(dst), policy.ProtoTCP, tg.port)
				got = wd.egress(src, dst.ip, tg.port) && wd.ingress(tg.pod, wd.sourceAt(src, tg.pod.Node), tg.port)
			case tg.svc == nil: // a node's own port (the kubelet's)
				if src.w == nil || src.w.Kind != inventory.KindPod {
					continue
				}
				nodeIP := netip.MustParseAddr(tg.node.IPs[0])
				want = DirectAllowed(ev, peerOf(src), policy.Peer{IP: nodeIP, Workload: tg.node}, policy.ProtoTCP, tg.port)
				got = wd.egress(src, nodeIP, tg.port) && wd.nodeIngress(tg.node, src.ip, tg.port)
			case tg.node == nil: // ClusterIP: egress on the service flow, ingress on each backend's
				if src.w == nil {
					continue
				}
				sp := tg.svc.Ports[0]
				for _, e := range tg.svc.Endpoints {
					be := wd.backend(e.IP)
					w := ServiceAllowed(ev, peerOf(src), tg.svc, sp, policy.Peer{IP: netip.MustParseAddr(e.IP), Workload: be}, uint16(e.Ports[0]))
					g := wd.egress(src, netip.MustParseAddr(tg.svc.ClusterIP), tg.port) && wd.serviceIngress(src, tg.svc, be, uint16(e.Ports[0])) &&
						wd.ingress(be, wd.sourceAt(src, be.Node), uint16(e.Ports[0]))
					checked++
					if w {
						allowed++
					}
					if w != g {
						t.Errorf("%s → %s via %s: compiled %v, evaluator %v", src.name, tg.name, be.Name, g, w)
					}
				}
				continue
			default: // NodePort: SNAT to the node, DNAT to a backend
				sp := tg.svc.Ports[0]
				nodeIP := netip.MustParseAddr(tg.node.IPs[0])
				nodePeer := policy.Peer{IP: nodeIP, Workload: tg.node}
				nb := wd.nodeB[tg.node.Name]
				for _, e := range tg.svc.Endpoints {
					be := wd.backend(e.IP)
					w := NodePortAllowed(ev, peerOf(src), nodePeer, tg.svc, sp, policy.Peer{IP: netip.MustParseAddr(e.IP), Workload: be}, uint16(e.Ports[0]))
					fwd := true
					if nb.Self != nil && nb.Self.Forward != nil {
						fwd = allows(nb.Self, nb.Self.Forward, ruleset.Packet{Peer: src.ip, Proto: "tcp", Port: uint16(e.Ports[0]), OrigDst: nodeIP, OrigDstPort: tg.port, DNAT: true})
					}
					seen := nodeIP
					if be.Node == tg.node.Name {
						seen = netip.MustParseAddr(DefaultNodeAddrs(tg.node)[2])
					}
					g := wd.egress(src, nodeIP, tg.port) && fwd && wd.ingress(be, seen, uint16(e.Ports[0]))
					checked++
					if w {
						allowed++
					}
					if w != g {
						t.Errorf("%s → %s via %s: compiled %v, evaluator %v", src.name, tg.name, be.Name, g, w)
					}
				}
				continue
			}
			checked++
			if want {
				allowed++
			}
			if want != got {
				t.Errorf("%s → %s: compiled %v, evaluator %v", src.name, tg.name, got, want)
			}
		}
	}
	if allowed == 0 || allowed == checked {
		t.Fatalf("a degenerate table: %d of %d allowed", allowed, checked)
	}
	t.Logf("%d connections, %d allowed; compiled = evaluator for each", checked, allowed)
}

// serviceIngress is the service's own ingress decision as compiled: a pod
// client's node decides the DNAT-ed connection in its FORWARD chain on
// the original destination; a node's own connection meets the refusals
// first in its egress.
func (wd *world) serviceIngress(src end, svc, be *inventory.Workload, target uint16) bool {
	sp := svc.Ports[0]
	pkt := ruleset.Packet{Peer: src.ip, Proto: "tcp", Port: target, OrigDst: netip.MustParseAddr(svc.ClusterIP), OrigDstPort: uint16(sp.Port), DNAT: true,
		Dst: netip.MustParseAddr(be.IPs[0])}
	if src.w.Kind == inventory.KindNode {
		b := wd.nodeB[src.w.Name]
		if b.Self == nil {
			return true
		}
		only := ruleset.Chain{Default: ruleset.Allow}
		for _, r := range b.Self.Egress.Rules {
			if r.OrigDst != "" {
				only.Rules = append(only.Rules, r)
			}
		}
		pkt.Peer = netip.MustParseAddr(be.IPs[0])
		return allows(b.Self, &only, pkt)
	}
	b := wd.nodeB[src.w.Node]
	if b.Self == nil || b.Self.Forward == nil {
		return true
	}
	return allows(b.Self, b.Self.Forward, pkt)
}

func (wd *world) backend(ip string) *inventory.Workload {
	for _, p := range wd.f.pods {
		if p.IPs[0] == ip {
			return p
		}
	}
	return nil
}

// TestReferenceCases checks each of the reference material's five
// examples compiles to the rules the reference shows.
func TestReferenceCases(t *testing.T) {
	f := sockShop()
	out := compileFixture(t, f, fiveCases())
	pod := func(name string) *ruleset.Pod {
		for _, b := range out.Bundles {
			for i := range b.Pods {
				if b.Pods[i].ID == "sock-shop/"+name {
					return &b.Pods[i]
				}
			}
		}
		t.Fatalf("no pod %s", name)
		return nil
	}
	// has reports whether chain c holds an ALLOW rule from intent comment
	// that matches peer:port.
	has := func(r *ruleset.Rules, c *ruleset.Chain, comment, peer string, port uint16) bool {
		for _, ru := range c.Rules {
			if !strings.HasPrefix(ru.Comment, comment) || ru.Verdict != ruleset.Allow {
				continue
			}
			one := &ruleset.Rules{Sets: r.Sets, Egress: ruleset.Chain{Rules: []ruleset.Rule{ru}, Default: ruleset.Reject}}
			if v, _ := one.Decide(&one.Egress, ruleset.Packet{Peer: netip.MustParseAddr(peer), Proto: "tcp", Port: port}); v == ruleset.Allow {
				return true
			}
		}
		return false
	}
	t.Run("1 pod to pod without a service", func(t *testing.T) {
		pay, db := pod("payment"), pod("user-db")
		if !has(pay.Rules, &pay.Rules.Egress, "sock-shop@v1#1", "10.244.2.12", 27017) {
			t.Errorf("payment: no EGRESS to user-db:27017\n%+v", pay.Rules.Egress)
		}
		if !has(db.Rules, &db.Rules.Ingress, "sock-shop@v1#1", "10.244.1.12", 27017) {
			t.Errorf("user-db: no INGRESS from payment on 27017\n%+v", db.Rules.Ingress)
		}
		noNodeRules(t, out, "sock-shop@v1#1")
	})
	t.Run("2 pod to ClusterIP service", func(t *testing.T) {
		fe := pod("front-end")
		if !has(fe.Rules, &fe.Rules.Egress, "sock-shop@v1#2", "10.100.135.136", 80) {
			t.Errorf("front-end: no EGRESS to the carts service IP:80\n%+v", fe.Rules.Egress)
		}
		if has(fe.Rules, &fe.Rules.Egress, "sock-shop@v1#2", "10.244.1.11", 80) {
			t.Errorf("front-end: EGRESS to a carts pod IP, which a pod never dials through a service")
		}
		noNodeRules(t, out, "sock-shop@v1#2")
		for _, c := range []string{"carts-1", "carts-2", "carts-3"} {
			cr := pod(c)
			if !has(cr.Rules, &cr.Rules.Ingress, "sock-shop@v1#2", "10.244.1.10", 80) {
				t.Errorf("%s: no generated INGRESS from front-end to its own port 80\n%+v", c, cr.Rules.Ingress)
			}
		}
	})
	t.Run("3 health probes from node IPs", func(t *testing.T) {
		n1 := out.Bundles["node1"].Self
		if !has(n1, &n1.Egress, "lab@v1#0", "10.244.1.10", 8079) {
			t.Errorf("node1: no EGRESS to front-end:8079\n%+v", n1.Egress)
		}
		fe := pod("front-end")
		for _, src := range []string{"10.10.0.11", "10.244.1.1", "10.10.0.12"} {
			if !has(fe.Rules, &fe.Rules.Ingress, "sock-shop@v1#5", src, 8079) {
				t.Errorf("front-end: no INGRESS from node address %s to 8079", src)
			}
		}
	})
	t.Run("4 external to NodePort", func(t *testing.T) {
		for _, n := range []string{"node1", "node2"} {
			self := out.Bundles[n].Self
			ip := f.nodes[n].IPs[0]
			v, i := self.Decide(self.Forward, ruleset.Packet{Peer: netip.MustParseAddr(extIP), Proto: "tcp", Port: 8079,
				OrigDst: netip.MustParseAddr(ip), OrigDstPort: 31095, DNAT: true})
			if v != ruleset.Allow || i < 0 || !strings.HasPrefix(self.Forward.Rules[i].Comment, "lab@v1#1") {
				t.Errorf("%s: the node port allow is missing (%s, rule %d)\n%+v", n, v, i, self.Forward.Rules)
			}
			if v, _ := self.Decide(self.Forward, ruleset.Packet{Peer: netip.MustParseAddr(extIP), Proto: "tcp", Port: 22,
				OrigDst: netip.MustParseAddr(ip), OrigDstPort: 30022, DNAT: true}); v != ruleset.Reject {
				t.Errorf("%s: another DNAT to the node is %s, want REJECT", n, v)
			}
		}
		fe := pod("front-end")
		if !has(fe.Rules, &fe.Rules.Ingress, "sock-shop@v1#6", "198.51.100.7", 8079) {
			t.Errorf("front-end: no INGRESS from any to 8079\n%+v", fe.Rules.Ingress)
		}
	})
	t.Run("5 pod to external", func(t *testing.T) {
		pay := pod("payment")
		if !has(pay.Rules, &pay.Rules.Egress, "sock-shop@v1#3", extIP, 666) {
			t.Errorf("payment: no EGRESS to %s:666\n%+v", extIP, pay.Rules.Egress)
		}
		if has(pay.Rules, &pay.Rules.Egress, "sock-shop@v1#3", extIP, 80) {
			t.Errorf("payment: EGRESS to %s:80 too", extIP)
		}
		noNodeRules(t, out, "sock-shop@v1#3")
	})
}

// noNodeRules fails if a node rule comes from the intent ref.
func noNodeRules(t *testing.T, out *Output, ref string) {
	t.Helper()
	for n, b := range out.Bundles {
		for _, c := range []*ruleset.Chain{&b.Self.Ingress, &b.Self.Egress, b.Self.Forward} {
			for _, ru := range c.Rules {
				if strings.HasPrefix(ru.Comment, ref) {
					t.Errorf("%s has a node rule from %s: %+v", n, ref, ru)
				}
			}
		}
	}
}

func TestCompileErrors(t *testing.T) {
	f := sockShop()
	set := fiveCases()
	if _, err := Compile(Input{Set: set, Enforced: map[string]bool{"nope": true}, Workloads: f.ws}); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown enforced scope: %v", err)
	}
	set.Versions["sock-shop"].Policies[0].Provider = "label.name = "
	if _, err := Compile(Input{Set: set, Enforced: map[string]bool{"lab": true}, Workloads: f.ws}); err == nil || !strings.Contains(err.Error(), "no-orders-db") {
		t.Errorf("bad provider: %v", err)
	}
}

// egressIsolation is what an imported NetworkPolicy makes of an egress
// isolation (internal/policy/netpol): payment may reach 203.0.113.0/24 on
// 666 only, orders the carts pods on 80; both may dial every service
// (egress-via-service), whose DNAT-related flow to the backend their
// egress then decides. Ingress is open (front-end admits everyone).
func egressIsolation() policy.Set {
	eg := func(name, consumer, provider string, a policy.Action, prio int, ports ...string) policy.Policy {
		return policy.Policy{Name: name, Consumer: consumer, Provider: provider, Action: a, Priority: prio, Ports: ports, Direction: policy.Egress}
	}
	return policy.Set{
		Scopes: []policy.Scope{{Name: "lab", Filter: `cluster = "lab"`, CatchAll: policy.Allow},
			{Name: "users", Parent: "lab", Filter: `label.name = "user"`, CatchAll: policy.Deny}},
		Versions: map[string]*policy.Version{"lab": analyzedV1("lab",
			eg("payment-ext", `label.name = "payment"`, "cidr:203.0.113.0/24", policy.Allow, 100, "tcp/666"),
			eg("payment-via-service", `label.name = "payment"`, `kind = service`, policy.Allow, 100),
			eg("payment-isolate", `label.name = "payment"`, "any", policy.Deny, 1000),
			eg("orders-carts", `label.name = "orders"`, `label.name = "carts"`, policy.Allow, 100, "tcp/80"),
			eg("orders-via-service", `label.name = "orders"`, `kind = service`, policy.Allow, 100),
			eg("orders-isolate", `label.name = "orders"`, "any", policy.Deny, 1000),
		),
			// user, in a scope of its own that denies by its catch-all, may
			// dial the services on 80 only: the rule deciding the flow to
			// the cluster IP holds no backend, and no rule but the
			// catch-all decides the flow to the backend.
			"users": analyzedV1("users", eg("user-services-80", `label.name = "user"`, `kind = service`, policy.Allow, 100, "tcp/80")),
		},
	}
}

// TestEgressDecidedAfterDNAT: an egress-isolated client dialing a service
// whose backend admits it is refused when its egress does not allow the
// backend (the evaluator's decision of the DNAT-related flow, and
// upstream's), by a refusal in its node's forward chain; allowed when it
// does; and clients whose egress rules are all about services get no
// node rules.
func TestEgressDecidedAfterDNAT(t *testing.T) {
	set := egressIsolation()
	checkTruthTable(t, set)
	f := sockShop()
	out := compileFixture(t, f, set)
	ev, err := policy.Compile(set)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*inventory.Workload{}
	for _, w := range f.ws {
		byName[string(w.Kind)+"/"+w.Name] = w
	}
	peer := func(w *inventory.Workload) policy.Peer {
		return policy.Peer{IP: netip.MustParseAddr(w.IPs[0]), Workload: w}
	}
	fe, pay, orders := byName["pod/front-end"], byName["pod/payment"], byName["pod/orders"]
	feSvc, cartsSvc := byName["service/front-end"], byName["service/carts"]
	// payment → front-end's cluster IP: allowed to the cluster IP, the
	// backend admits it, the client's egress refuses the backend.
	d := ev.Evaluate(&policy.Flow{Src: peer(pay), Dst: peer(fe), Proto: policy.ProtoTCP, Port: 8079, Service: feSvc, ServicePort: 80})
	if d.Ingress.Action == policy.Deny || d.Egress.Action != policy.Deny {
		t.Fatalf("payment → front-end after DNAT: %+v, want the egress to deny and the ingress to admit", d)
	}
	if ServiceAllowed(ev, peer(pay), feSvc, feSvc.Ports[0], peer(fe), 8079) {
		t.Fatalf("ServiceAllowed: payment → front-end service allowed, want refused by payment's egress after DNAT")
	}
	if !ServiceAllowed(ev, peer(orders), cartsSvc, cartsSvc.Ports[0], peer(byName["pod/carts-2"]), 80) {
		t.Fatalf("ServiceAllowed: orders → carts service refused, want allowed (orders-carts)")
	}
	node1 := out.Bundles["node1"].Self
	if node1 == nil || node1.Forward == nil {
		t.Fatalf("node1 (payment's node) has no forward chain")
	}
	pkt := ruleset.Packet{Peer: netip.MustParseAddr(pay.IPs[0]), Proto: "tcp", Port: 8079, OrigDst: netip.MustParseAddr(feSvc.ClusterIP), OrigDstPort: 80, DNAT: true,
		Dst: netip.MustParseAddr(fe.IPs[0])}
	v, i := node1.Decide(node1.Forward, pkt)
	if v != ruleset.Drop || i < 0 || !strings.Contains(node1.Forward.Rules[i].Comment, "lab@v1#2 ") {
		t.Fatalf("payment → front-end service in node1's forward chain: %s by rule %d, want a DROP by payment's egress (payment-isolate)\n%+v", v, i, node1.Forward.Rules)
	}
	t.Logf("the refusal: %+v", node1.Forward.Rules[i])
	// The same connection from front-end (not isolated) passes.
	pkt.Peer = netip.MustParseAddr(fe.IPs[0])
	if v, _ := node1.Decide(node1.Forward, pkt); v != ruleset.Allow {
		t.Fatalf("front-end → its own service in node1's forward chain: %s, want ALLOW", v)
	}
	// user (node2) is refused front-end's backend by its scope's
	// catch-all, though its egress allows the flow to the cluster IP.
	n2 := out.Bundles["node2"].Self
	if n2 == nil || n2.Forward == nil {
		t.Fatalf("node2 (user's node) has no forward chain")
	}
	pkt.Peer = netip.MustParseAddr(byName["pod/user"].IPs[0])
	if v, i := n2.Decide(n2.Forward, pkt); v != ruleset.Drop || !strings.HasPrefix(n2.Forward.Rules[i].Comment, "users@v1 catch-all egress after DNAT") {
		t.Fatalf("user → front-end service in node2's forward chain: %s by rule %d, want a DROP by users' catch-all\n%+v", v, i, n2.Forward.Rules)
	}
	for _, r := range n2.Forward.Rules {
		if r.Dst != "" && !strings.HasPrefix(r.Comment, "users@v1") {
			t.Fatalf("node2 has a refusal after DNAT for a client other than user: %+v", r)
		}
	}
}
