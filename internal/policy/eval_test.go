package policy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/palisade-dev/palisade/internal/inventory"
)

// A 3-level tree: cluster (cluster = lab, catch-all ALLOW) → shop
// (namespace shop, DENY) → db (tier db, DENY); cluster → mon (namespace
// mon, ALLOW, no version).
func precedenceSet() Set {
	pol := func(scope, cons, prov, action, class string, prio int, dir Direction, ports ...string) Policy {
		a, _ := ParseAction(action)
		c, _ := ParseClass(class)
		return Policy{Scope: scope, Consumer: cons, Provider: prov, Action: a, Class: c, Priority: prio, Direction: dir, Ports: ports}
	}
	return Set{
		Scopes: []Scope{
			{Name: "cluster", Filter: `cluster = "lab"`, CatchAll: Allow},
			{Name: "shop", Parent: "cluster", Filter: `namespace = "shop"`, CatchAll: Deny},
			{Name: "db", Parent: "shop", Filter: `label.tier = "db"`, CatchAll: Deny},
			{Name: "mon", Parent: "cluster", Filter: `namespace = "mon"`, CatchAll: Allow},
		},
		Versions: map[string]*Version{
			"cluster": {Name: "v1", Policies: []Policy{
				pol("cluster", "any", `label.app = "user-db"`, "DENY", "absolute", 0, Both, "tcp/22"), // #0
				pol("cluster", "kind = node", "any", "ALLOW", "default", 0, Both, "tcp/80"),           // #1
				pol("cluster", "any", "cidr:203.0.113.0/24", "DENY", "default", 0, Both, "tcp/666"),   // #2
				pol("cluster", "scope:mon", "any", "ALLOW", "absolute", 0, Both, "tcp/9100"),          // #3
			}},
			"shop": {Name: "v3", Policies: []Policy{
				pol("shop", `label.app = "payment"`, `label.app = "user-db"`, "ALLOW", "default", 0, Both, "tcp/27017"), // #0
				pol("shop", "any", `label.app = "user-db"`, "ALLOW", "absolute", 0, Both, "tcp/22"),                     // #1
				pol("shop", `label.app = "front"`, "cidr:203.0.113.10/32", "ALLOW", "default", 0, Both, "tcp/666"),      // #2
				pol("shop", `label.app = "front"`, `label.app = "payment"`, "DENY", "default", 50, Both, "tcp/80"),      // #3
				pol("shop", `label.app = "front"`, `label.app = "payment"`, "ALLOW", "default", 10, Both, "tcp/80"),     // #4
				pol("shop", "kind = node", `label.app = "front"`, "ALLOW", "default", 0, Ingress, "tcp/8080"),           // #5
				pol("shop", `label.app = "payment"`, `label.app = "front"`, "ALLOW", "default", 0, Egress, "tcp/8080"),  // #6
				pol("shop", `label.app = "front"`, "service:shop/carts", "ALLOW", "default", 0, Both, "tcp/80"),         // #7
				pol("shop", `label.app = "front"`, "service:shop/orders", "ALLOW", "default", 0, Both, "tcp/web"),       // #8
				pol("shop", `label.app = "front"`, `label.app = "carts"`, "ALLOW", "default", 0, Both, "tcp/metrics"),   // #9
			}},
			"db": {Name: "v1", Policies: []Policy{
				pol("db", `label.app = "payment"`, `label.app = "user-db"`, "DENY", "default", 0, Both, "tcp/27017"), // #0
				pol("db", "any", "any", "ALLOW", "default", 0, Both, "tcp/3306"),                                     // #1
			}},
		},
	}
}

func pod(cluster, ns, name, ip string, labels map[string]string) Peer {
	return Peer{IP: netip.MustParseAddr(ip), Workload: &inventory.Workload{
		ID: cluster + "/pod/" + ns + "/" + name, Cluster: cluster, Kind: inventory.KindPod, Namespace: ns, Name: name,
		IPs: []string{ip}, Labels: labels}}
}

func TestPrecedence(t *testing.T) {
	ev, err := Compile(precedenceSet())
	if err != nil {
		t.Fatal(err)
	}
	front := pod("lab", "shop", "front", "10.244.1.10", map[string]string{"app": "front"})
	pay := pod("lab", "shop", "pay", "10.244.1.11", map[string]string{"app": "payment"})
	userdb := pod("lab", "shop", "userdb", "10.244.2.12", map[string]string{"app": "user-db", "tier": "db"})
	carts := pod("lab", "shop", "carts", "10.244.2.13", map[string]string{"app": "carts"})
	carts.Workload.Containers = []inventory.Container{{Name: "carts", Ports: []inventory.ContainerPort{{Name: "metrics", Protocol: "TCP", Port: 9090}}}}
	prom := pod("lab", "mon", "prom", "10.244.2.20", map[string]string{"app": "prom"})
	alien := pod("other", "shop", "x", "10.9.0.1", map[string]string{"app": "front"})
	node := Peer{IP: netip.MustParseAddr("192.168.0.1"), Workload: &inventory.Workload{ID: "lab/node//n1", Cluster: "lab", Kind: inventory.KindNode, Name: "n1", IPs: []string{"192.168.0.1"}}}
	ext := Peer{IP: netip.MustParseAddr("203.0.113.10")}
	cartsSvcW := &inventory.Workload{ID: "lab/service/shop/carts", Cluster: "lab", Kind: inventory.KindService, Namespace: "shop", Name: "carts",
		IPs: []string{"10.96.0.20"}, Ports: []inventory.ServicePort{{Name: "http", Protocol: "TCP", Port: 80, TargetPort: "8080"}}}
	cartsSvc := Peer{IP: netip.MustParseAddr("10.96.0.20"), Workload: cartsSvcW}
	ordersSvcW := &inventory.Workload{ID: "lab/service/shop/orders", Cluster: "lab", Kind: inventory.KindService, Namespace: "shop", Name: "orders",
		IPs: []string{"10.96.0.21"}, Ports: []inventory.ServicePort{{Name: "web", Protocol: "TCP", Port: 8081, TargetPort: "80"}}}
	ordersSvc := Peer{IP: netip.MustParseAddr("10.96.0.21"), Workload: ordersSvcW}

	type want struct{ action, egress, ingress string }
	cases := []struct {
		name     string
		src, dst Peer
		proto    Proto
		port     uint16
		svc      *inventory.Workload
		svcPort  uint16
		want     want
	}{
		{"absolute parent DENY beats child absolute ALLOW", pay, userdb, ProtoTCP, 22, nil, 0,
			want{"DENY", "DENY cluster@v1#0", "DENY cluster@v1#0"}},
		{"child default DENY beats parent default ALLOW (cross-level flow)", pay, userdb, ProtoTCP, 27017, nil, 0,
			want{"DENY", "ALLOW shop@v3#0", "DENY db@v1#0"}},
		{"child default ALLOW beats parent default DENY to an external address", front, ext, ProtoTCP, 666, nil, 0,
			want{"ALLOW", "ALLOW shop@v3#2", ""}},
		{"parent default applies where the child has none", prom, ext, ProtoTCP, 666, nil, 0,
			want{"DENY", "DENY cluster@v1#2", ""}},
		{"priority within a class: 10 before 50", front, pay, ProtoTCP, 80, nil, 0,
			want{"ALLOW", "ALLOW shop@v3#4", "ALLOW shop@v3#4"}},
		{"no intent: the scope's catch-all DENY", front, pay, ProtoTCP, 81, nil, 0,
			want{"DENY", "DENY shop@v3 catch-all", "DENY shop@v3 catch-all"}},
		{"node probe: parent default on both sides", node, front, ProtoTCP, 80, nil, 0,
			want{"ALLOW", "ALLOW cluster@v1#1", "ALLOW cluster@v1#1"}},
		{"ingress-only intent decides ingress; parent catch-all ALLOW decides egress", node, front, ProtoTCP, 8080, nil, 0,
			want{"ALLOW", "ALLOW cluster@v1 catch-all", "ALLOW shop@v3#5"}},
		{"egress-only intent does not take part in ingress", pay, front, ProtoTCP, 8080, nil, 0,
			want{"DENY", "ALLOW shop@v3#6", "DENY shop@v3 catch-all"}},
		{"absolute parent ALLOW for a sibling scope reaches the grandchild", prom, userdb, ProtoTCP, 9100, nil, 0,
			want{"ALLOW", "ALLOW cluster@v1#3", "ALLOW cluster@v1#3"}},
		{"grandchild default and a catch-all of a scope without version", userdb, prom, ProtoTCP, 3306, nil, 0,
			want{"ALLOW", "ALLOW db@v1#1", "ALLOW mon catch-all"}},
		{"unscoped consumer: only the ingress decision", ext, front, ProtoTCP, 80, nil, 0,
			want{"DENY", "", "DENY shop@v3 catch-all"}},
		{"neither end scoped", alien, ext, ProtoTCP, 666, nil, 0,
			want{"", "", ""}},
		{"protocol mismatch falls to catch-all", pay, userdb, ProtoUDP, 27017, nil, 0,
			want{"DENY", "DENY shop@v3 catch-all", "DENY db@v1 catch-all"}},
		{"service provider on the flow to the cluster IP", front, cartsSvc, ProtoTCP, 80, cartsSvcW, 80,
			want{"ALLOW", "ALLOW shop@v3#7", "ALLOW shop@v3#7"}},
		{"service provider on the DNAT-related flow to the backend's target port", front, carts, ProtoTCP, 8080, cartsSvcW, 80,
			want{"ALLOW", "ALLOW shop@v3#7", "ALLOW shop@v3#7"}},
		{"the same backend reached directly is not the service", front, carts, ProtoTCP, 8080, nil, 0,
			want{"DENY", "DENY shop@v3 catch-all", "DENY shop@v3 catch-all"}},
		{"named service port", front, ordersSvc, ProtoTCP, 8081, ordersSvcW, 8081,
			want{"ALLOW", "ALLOW shop@v3#8", "ALLOW shop@v3#8"}},
		{"named container port resolved on the destination pod", front, carts, ProtoTCP, 9090, nil, 0,
			want{"ALLOW", "ALLOW shop@v3#9", "ALLOW shop@v3#9"}},
		{"a named port another pod does not declare", front, pay, ProtoTCP, 9090, nil, 0,
			want{"DENY", "DENY shop@v3 catch-all", "DENY shop@v3 catch-all"}},
	}
	side := func(d SideDecision) string {
		if d.Action == NoAction {
			return ""
		}
		return d.Action.String() + " " + d.Rule.String()
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := &Flow{Src: c.src, Dst: c.dst, Proto: c.proto, Port: c.port, Service: c.svc, ServicePort: c.svcPort}
			for round := 0; round < 2; round++ { // the second round hits the caches
				d := ev.Evaluate(f)
				got := want{d.Action().String(), side(d.Egress), side(d.Ingress)}
				if got != c.want {
					t.Fatalf("round %d: got %+v, want %+v", round, got, c.want)
				}
			}
		})
	}
	if got := ev.Scopes(userdb); len(got) != 3 || got[0] != "cluster" || got[2] != "db" {
		t.Errorf("Scopes(userdb) = %v, want [cluster shop db]", got)
	}
	if got := ev.Scopes(alien); len(got) != 0 {
		t.Errorf("Scopes(alien) = %v, want none", got)
	}
}

func TestVerdictOf(t *testing.T) {
	for _, c := range []struct {
		a       Action
		replied bool
		want    Verdict
	}{{Allow, true, Permitted}, {Allow, false, Misdropped}, {Deny, true, Escaped}, {Deny, false, Rejected}, {NoAction, true, Unscoped}} {
		if got := VerdictOf(c.a, c.replied); got != c.want {
			t.Errorf("VerdictOf(%v, %v) = %v, want %v", c.a, c.replied, got, c.want)
		}
		b, _ := c.want.MarshalText()
		var v Verdict
		if err := v.UnmarshalText(b); err != nil || v != c.want {
			t.Errorf("verdict %v does not round-trip through text: %v %v", c.want, v, err)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		set  Set
		want string
	}{
		{"missing parent", Set{Scopes: []Scope{{Name: "a", Parent: "nope"}}}, `scope a: parent "nope" does not exist`},
		{"cycle", Set{Scopes: []Scope{{Name: "a", Parent: "b"}, {Name: "b", Parent: "a"}}}, "cycle"},
		{"bad filter", Set{Scopes: []Scope{{Name: "a", Filter: "namespace = "}}}, "scope a: filter: column"},
		{"dangling scope ref", Set{Scopes: []Scope{{Name: "a"}}, Versions: map[string]*Version{"a": {Name: "v1", Policies: []Policy{{Consumer: "scope:zz", Provider: "any", Action: Allow}}}}}, `consumer: scope "zz" does not exist`},
		{"bad port", Set{Scopes: []Scope{{Name: "a"}}, Versions: map[string]*Version{"a": {Name: "v1", Policies: []Policy{{Consumer: "any", Provider: "any", Action: Allow, Ports: []string{"tcp/0"}}}}}}, `ports: port "tcp/0"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Compile(c.set)
			if err == nil || !contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestParsePort(t *testing.T) {
	for in, want := range map[string]string{"tcp/80": "tcp/80", "TCP/1000-2000": "tcp/1000-2000", "tcp/http": "tcp/http", "udp": "udp", "any": "any", "sctp/5-5": "sctp/5"} {
		r, err := ParsePort(in)
		if err != nil || r.String() != want {
			t.Errorf("ParsePort(%q) = %v, %v; want %s", in, r, err, want)
		}
	}
	for _, bad := range []string{"tcp/0", "tcp/2-1", "tcp/70000", "foo/80", "any/80", "tcp/Http", "tcp/1-x"} {
		if _, err := ParsePort(bad); err == nil {
			t.Errorf("ParsePort(%q) succeeded", bad)
		}
	}
}

func TestParseEndpointColumn(t *testing.T) {
	_, err := ParseEndpoint(`label.app = "x" and`)
	ee, ok := err.(*EndpointError)
	if !ok || ee.Column != 20 {
		t.Fatalf("err = %#v, want an EndpointError at column 20", err)
	}
	for in, want := range map[string]string{"any": "any", " scope:a": "scope:a", "service:ns/n": "service:ns/n", "cidr:10.0.0.1/8": "cidr:10.0.0.0/8", "cidr:1.2.3.4": "cidr:1.2.3.4/32", `namespace=x`: `namespace = "x"`} {
		e, err := ParseEndpoint(in)
		if err != nil || e.String() != want {
			t.Errorf("ParseEndpoint(%q) = %q, %v; want %q", in, e.String(), err, want)
		}
	}
}

func contains(s, sub string) bool {
	return strings.Contains(s, sub)
}

// host-node matches only the node a pod runs on: a kubelet probe from the
// pod's own node, or the pod reaching its own node; never another node, an
// address no node holds, or a pod of another cluster on a node of the
// same name.
func TestHostNode(t *testing.T) {
	ev, err := Compile(Set{
		Scopes: []Scope{{Name: "lab", Filter: `cluster = "lab"`, CatchAll: Deny}},
		Versions: map[string]*Version{"lab": {Name: "v1", Policies: []Policy{
			{Consumer: "host-node", Provider: `kind = pod`, Action: Allow, Direction: Ingress},                                // #0
			{Consumer: `kind = pod`, Provider: " host-node ", Action: Allow, Direction: Egress, Ports: []string{"tcp/10250"}}, // #1
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	node := func(cluster, name, ip string) Peer {
		return Peer{IP: netip.MustParseAddr(ip), Workload: &inventory.Workload{ID: cluster + "/node//" + name, Cluster: cluster, Kind: inventory.KindNode, Name: name, IPs: []string{ip}}}
	}
	onNode := func(p Peer, n string) Peer { p.Workload.Node = n; return p }
	n1, n2 := node("lab", "n1", "10.10.0.11"), node("lab", "n2", "10.10.0.12")
	a := onNode(pod("lab", "x", "a", "10.244.1.10", nil), "n1")
	other := onNode(pod("other", "x", "b", "10.244.9.10", nil), "n1")
	ext := Peer{IP: netip.MustParseAddr("203.0.113.10")}
	for _, c := range []struct {
		name     string
		src, dst Peer
		port     uint16
		ingress  string // the ingress side's rule ("" when dst is unscoped)
		egress   string
	}{
		{"probe from the pod's own node", n1, a, 8080, "lab@v1#0", "lab@v1 catch-all"},
		{"another node", n2, a, 8080, "lab@v1 catch-all", "lab@v1 catch-all"},
		{"an external address", ext, a, 8080, "lab@v1 catch-all", ""},
		{"pod to its own node", a, n1, 10250, "lab@v1 catch-all", "lab@v1#1"},
		{"pod to another node", a, n2, 10250, "lab@v1 catch-all", "lab@v1 catch-all"},
		{"a node of that name in another cluster", other, n1, 10250, "lab@v1 catch-all", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := ev.Evaluate(&Flow{Src: c.src, Dst: c.dst, Proto: ProtoTCP, Port: c.port})
			if d.Ingress.Rule.String() != c.ingress || d.Egress.Rule.String() != c.egress {
				t.Fatalf("egress %q ingress %q, want %q %q", d.Egress.Rule, d.Ingress.Rule, c.egress, c.ingress)
			}
		})
	}
	// The enforcement compiler cannot test host-node against one end: it
	// holds for no peer alone.
	rules, _, _ := ev.Chain("lab", Ingress)
	s := ev.NewSession()
	if len(rules) == 0 || rules[0].Consumer.Kind != EndpointHostNode || s.ConsumerHolds(&rules[0], s.Classify(n1)) {
		t.Fatalf("chain %+v: host-node consumer must hold for no peer alone", rules)
	}
}
