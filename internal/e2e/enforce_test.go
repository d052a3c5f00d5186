package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/palisade-dev/palisade/internal/agent/enforce"
	"github.com/palisade-dev/palisade/internal/filter"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/lab"
	"github.com/palisade-dev/palisade/internal/lab/app"
	"github.com/palisade-dev/palisade/internal/netns"
	"github.com/palisade-dev/palisade/internal/policy"
	"github.com/palisade-dev/palisade/internal/policy/analyze"
	"github.com/palisade-dev/palisade/internal/policy/compile"
	"github.com/palisade-dev/palisade/internal/ruleset"
	"github.com/palisade-dev/palisade/internal/server"
	"github.com/palisade-dev/palisade/pkg/client"
)

// enforcePolicy is the reference material's five examples on the lab's
// sock-shop, in a split scope design, plus the rest of the lab's call
// graph. The node-facing intents (probes, the NodePort) are in both
// scopes, as the reference material advises for split scopes.
var enforcePolicy = `kind: Scope
name: cluster-lab
filter: cluster = "lab"
catchAll: DENY
---
kind: Scope
name: sock-shop
parent: cluster-lab
filter: namespace = "sock-shop"
catchAll: DENY
` + nodeFacing("cluster-lab") + nodeFacing("sock-shop") +
	intent("payment-user-db", `label.app = "payment"`, `label.app = "user-db"`, "tcp/27017") +
	intent("user-user-db", `label.app = "user"`, `label.app = "user-db"`, "tcp/27017") +
	intent("front-end-carts", `label.app = "front-end"`, "service:sock-shop/carts", "tcp/80") +
	intent("front-end-catalogue", `label.app = "front-end"`, "service:sock-shop/catalogue", "tcp/80") +
	intent("orders-payment", `label.app = "orders"`, "service:sock-shop/payment", "tcp/80") +
	intent("payment-external", `label.app = "payment"`, "cidr:203.0.113.10/32", "tcp/666") +
	intent("shipping-carts", `label.app = "shipping"`, `label.app = "carts"`, "tcp/80") + cartsService

// cartsService gives the carts service a scope of its own, beside
// sock-shop, that admits only front-end (and the cluster scope's node
// probes): the flow to its cluster IP is decided on ingress by that scope,
// so shipping, which may reach the carts pods directly (sock-shop's
// intent by label), may not reach them through the service. The agents
// decide it in the client's node, on the connection's original
// destination.
const cartsService = `---
kind: Scope
name: carts-service
parent: cluster-lab
filter: kind = service and label.app = "carts"
catchAll: DENY
---
kind: Policy
name: front-end-carts-service
scope: carts-service
consumer: label.app = "front-end"
provider: service:sock-shop/carts
ports: [tcp/80]
action: ALLOW
`

// enforced are the scopes of enforcePolicy.
var enforced = []string{"cluster-lab", "sock-shop", "carts-service"}

// intent is one ALLOW intent of the sock-shop scope.
func intent(name, consumer, provider, port string) string {
	return fmt.Sprintf("---\nkind: Policy\nname: %s\nscope: sock-shop\nconsumer: %s\nprovider: %s\nports: [%s]\naction: ALLOW\n", name, consumer, provider, port)
}

// nodeFacing are the node probes (case 3) and the NodePort (case 4) in scope.
func nodeFacing(scope string) string {
	return fmt.Sprintf(`---
kind: Policy
name: probes
scope: %[1]s
consumer: kind = node
provider: namespace = "sock-shop"
ports: [tcp/8079, tcp/80]
action: ALLOW
---
kind: Policy
name: nodeport
scope: %[1]s
consumer: any
provider: service:sock-shop/front-end
ports: [tcp/80]
action: ALLOW
`, scope)
}

// reaches reports whether an HTTP request from the namespace at nsPath to
// addr is answered.
func reaches(nsPath, addr string) bool {
	_, err := app.Get(nsPath, addr, 700*time.Millisecond)
	return err == nil
}

// TestEnforcement is the enforcement acceptance on the lab, in direct and
// vxlan mode: a truth table of real connections against the evaluator, the
// reference's five examples by name, kube-proxy NAT still working, foreign
// rules untouched, drift repair, and disable restoring every namespace.
func TestEnforcement(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) { testEnforcement(t, newEnvNamed(t, mode, "enf"+string(mode))) })
	}
}

func testEnforcement(t *testing.T, e *env) {
	srv := e.server()
	admin := srv.Client("")
	ctx := context.Background()
	n1 := e.st.Nodes[0]
	cartsPod := e.st.PodsOf("sock-shop", "carts")[0]

	// Foreign rules planted before enforcement, in a node and a pod.
	for _, x := range []struct{ ns string }{{n1.NetNSPath}, {cartsPod.NetNSPath}} {
		if out, err := netns.Output(x.ns, "", "iptables", "-A", "INPUT", "-p", "udp", "--dport", "9", "-s", "192.0.2.0/24", "-j", "DROP"); err != nil {
			t.Fatalf("plant a rule: %v %s", err, out)
		}
	}
	spaces := []string{}
	for _, n := range e.st.Nodes {
		spaces = append(spaces, n.NetNSPath)
	}
	for _, p := range e.st.Pods {
		spaces = append(spaces, p.NetNSPath)
	}
	type state struct{ ipt, sets string }
	// trySave reads a namespace's rules and sets. While an agent is
	// changing them, iptables-save can fail on a set it saw in a rule that
	// is gone a moment later ("Set with index N in kernel doesn't exist"):
	// a poll treats that as "not yet".
	trySave := func(ns string) (state, error) {
		ipt, err := enforce.SaveAll(ns)
		if err != nil {
			return state{}, err
		}
		sets, err := netns.Output(ns, "", "ipset", "list")
		if err != nil {
			return state{}, err
		}
		return state{ipt, sets}, nil
	}
	save := func(ns string) state {
		st, err := trySave(ns)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	before := map[string]state{}
	for _, ns := range spaces {
		before[ns] = save(ns)
	}

	var applied map[string]any
	if err := admin.Do(ctx, client.Request{Method: "POST", Path: "/api/v1/policy/apply",
		JSON: server.ApplyRequest{Files: []server.ApplyFile{{Name: "enforce.yaml", Content: enforcePolicy}}}}, &applied); err != nil {
		t.Fatalf("apply: %v", err)
	}

	states := enforcerStates(t, e)
	var stopEnforcers func()
	startEnforcers := func() { stopEnforcers = runEnforcers(t, e, states) }
	startEnforcers()
	defer func() { stopEnforcers() }()

	setModes := func(t *testing.T, mode ruleset.Mode, scopes ...string) {
		t.Helper()
		for _, scope := range scopes {
			req := ruleset.ModeRequest{Mode: mode}
			if mode == ruleset.Enforce {
				req.Version = "v1"
			}
			var m ruleset.ScopeMode
			if err := admin.Do(ctx, client.Request{Method: "POST", Path: "/api/v1/enforcement/scopes/" + scope, JSON: req}, &m); err != nil {
				t.Fatalf("%s %s: %v", mode, scope, err)
			}
		}
	}
	enforceAt := time.Now()
	setModes(t, ruleset.Enforce, enforced...)
	inSync := func() bool { return agentsInSync(e, admin) }
	waitFor(t, 20*time.Second, "every agent in sync", inSync)
	t.Logf("enforced on %d nodes in %v", len(e.st.Nodes), time.Since(enforceAt))

	// The evaluator, from the versions the server enforces.
	var scopes []server.ScopeView
	if err := admin.Do(ctx, client.Request{Method: "GET", Path: "/api/v1/scopes"}, &scopes); err != nil {
		t.Fatal(err)
	}
	set := policy.Set{Versions: map[string]*policy.Version{}, Services: map[string]*inventory.Workload{}}
	for _, s := range scopes {
		set.Scopes = append(set.Scopes, s.Scope)
		var v policy.Version
		if err := admin.Do(ctx, client.Request{Method: "GET", Path: "/api/v1/scopes/" + url.PathEscape(s.Name) + "/versions/v1"}, &v); err != nil {
			t.Fatal(err)
		}
		set.Versions[s.Name] = &v
	}
	inv := srv.Inventory
	now := time.Now()
	peer := func(ip string) policy.Peer {
		p := policy.Peer{IP: netip.MustParseAddr(ip)}
		if w, ok := inv.WorkloadAt(ip, now); ok {
			p.Workload = w
		}
		return p
	}
	svcs := map[string]*inventory.Workload{}
	for _, s := range e.st.Services {
		if w, ok := inv.WorkloadAt(s.ClusterIP, now); ok && w.Kind == inventory.KindService {
			svcs[s.Name] = w
			set.Services["sock-shop/"+s.Name] = w
		}
	}
	ev, err := policy.Compile(set)
	if err != nil {
		t.Fatal(err)
	}

	type source struct {
		name, ns, ip string
	}
	var sources []source
	for _, p := range e.st.Pods {
		sources = append(sources, source{p.Name, p.NetNSPath, p.IP})
	}
	for _, n := range e.st.Nodes {
		sources = append(sources, source{n.Name, n.NetNSPath, n.IP})
	}
	ext := e.st.External[0]
	sources = append(sources, source{"external", ext.NetNSPath, ext.IP})
	isPod := func(s source) bool { return !strings.HasPrefix(s.name, e.st.Name+"-node") && s.name != "external" }
	checked, allowed, wrong := 0, 0, 0
	check := func(src source, what, addr string, want bool) {
		t.Helper()
		got := reaches(src.ns, addr)
		checked++
		if want {
			allowed++
		}
		if got != want {
			wrong++
			t.Errorf("%s → %s (%s): connected %v, evaluator allows %v", src.name, what, addr, got, want)
		}
	}
	for _, src := range sources {
		sp := peer(src.ip)
		for _, p := range e.st.Pods {
			if src.name == "external" || src.ip == p.IP {
				continue // the external host has no route to pod addresses
			}
			for _, port := range []int32{p.Ports[0], 9} {
				want := compile.DirectAllowed(ev, sp, peer(p.IP), policy.ProtoTCP, uint16(port))
				check(src, fmt.Sprintf("%s:%d", p.Name, port), hostPort(p.IP, port), want)
			}
		}
		for _, s := range e.st.Services {
			w := svcs[s.Name]
			if w == nil || len(s.Ports) == 0 {
				continue
			}
			sport := w.Ports[0]
			backends := e.st.PodsOf("sock-shop", s.Name)
			if len(backends) != 1 {
				continue // one backend, so the outcome does not depend on which one kube-proxy picks
			}
			be := backends[0]
			if src.name != "external" && src.ip != be.IP {
				want := compile.ServiceAllowed(ev, sp, w, sport, peer(be.IP), uint16(s.Ports[0].TargetPort))
				check(src, s.Name+" ClusterIP", hostPort(s.ClusterIP, s.Ports[0].Port), want)
			}
			if s.Ports[0].NodePort != 0 && (src.name == "external" || isPod(src)) {
				for _, n := range e.st.Nodes {
					want := compile.NodePortAllowed(ev, sp, peer(n.IP), w, sport, peer(be.IP), uint16(s.Ports[0].TargetPort))
					check(src, s.Name+" NodePort on "+n.Name, hostPort(n.IP, s.Ports[0].NodePort), want)
				}
			}
		}
		if isPod(src) {
			for _, port := range ext.Ports {
				want := compile.DirectAllowed(ev, sp, peer(ext.IP), policy.ProtoTCP, uint16(port))
				check(src, fmt.Sprintf("external:%d", port), hostPort(ext.IP, port), want)
			}
		}
	}
	t.Logf("truth table: %d connections, %d allowed by the evaluator, %d outcomes differ", checked, allowed, wrong)
	if allowed == 0 || allowed == checked {
		t.Fatalf("degenerate truth table: %d of %d allowed", allowed, checked)
	}

	// Lab traffic while enforced, and connections from the external host
	// to a node port nothing allows. The node's agent sees those arrive
	// and be refused; a pod's own refusals happen before its veth, where
	// no agent observes them.
	t.Run("analysis of the enforced version", func(t *testing.T) {
		from := time.Now()
		rep, err := lab.Traffic(ctx, e.st, app.SockShop(), lab.TrafficOptions{Duration: 3 * time.Second, Rate: 40})
		if err != nil {
			t.Fatal(err)
		}
		var refused int64
		for _, edge := range rep.Edges {
			refused += edge.Failed
		}
		if refused == 0 {
			t.Errorf("lab traffic: no connection refused, but some edges have no intent: %+v", rep.Edges)
		}
		for i := 0; i < 5; i++ {
			if reaches(ext.NetNSPath, hostPort(n1.IP, 22)) {
				t.Fatal("external → node:22 connected")
			}
		}
		to := time.Now().Add(time.Second)
		counts := func(scope string) analyze.Counts {
			q := url.Values{"scope": {scope}, "version": {"v1"}, "from": {from.UTC().Format(time.RFC3339Nano)}, "to": {to.UTC().Format(time.RFC3339Nano)}}
			var an analyze.Report
			if err := admin.Do(ctx, client.Request{Method: "GET", Path: "/api/v1/analysis", Query: q}, &an); err != nil {
				t.Fatal(err)
			}
			return an.Counts
		}
		waitFor(t, 40*time.Second, "the flows analyzed", func() bool {
			return counts("sock-shop").Permitted > 0 && counts("cluster-lab").Rejected > 0
		})
		for _, scope := range []string{"sock-shop", "cluster-lab"} {
			c := counts(scope)
			if c.Escaped != 0 {
				t.Errorf("%s@v1: %d flows escaped the enforced version: %+v", scope, c.Escaped, c)
			}
			t.Logf("%s@v1 under enforcement: %+v", scope, c)
		}
	})

	pod := func(app string) lab.PodInfo { return e.st.PodsOf("sock-shop", app)[0] }
	svc := func(name string) lab.ServiceInfo { s, _ := e.st.Service("sock-shop", name); return s }
	expect := func(t *testing.T, what string, nsPath, addr string, want bool) {
		t.Helper()
		if got := reaches(nsPath, addr); got != want {
			t.Errorf("%s: connected %v, want %v", what, got, want)
		}
	}
	t.Run("1 pod to pod without a service", func(t *testing.T) {
		db := pod("user-db")
		expect(t, "payment → user-db:27017", pod("payment").NetNSPath, hostPort(db.IP, 27017), true)
		expect(t, "orders → user-db:27017", pod("orders").NetNSPath, hostPort(db.IP, 27017), false)
	})
	t.Run("2 pod to ClusterIP service", func(t *testing.T) {
		c := svc("carts")
		expect(t, "front-end → carts ClusterIP", pod("front-end").NetNSPath, hostPort(c.ClusterIP, 80), true)
		expect(t, "orders → carts ClusterIP", pod("orders").NetNSPath, hostPort(c.ClusterIP, 80), false)
		expect(t, "front-end → carts pod IP (no intent without the service)", pod("front-end").NetNSPath, hostPort(pod("carts").IP, 80), false)
	})
	t.Run("3 health probes from node IPs", func(t *testing.T) {
		fe := pod("front-end")
		expect(t, "node → front-end:8079", e.node(fe.Node).NetNSPath, hostPort(fe.IP, 8079), true)
		expect(t, "node → front-end:9", e.node(fe.Node).NetNSPath, hostPort(fe.IP, 9), false)
	})
	t.Run("4 external to NodePort", func(t *testing.T) {
		fe := svc("front-end")
		for _, n := range e.st.Nodes {
			expect(t, "external → "+n.Name+" NodePort", ext.NetNSPath, hostPort(n.IP, fe.Ports[0].NodePort), true)
		}
	})
	t.Run("5 pod to external", func(t *testing.T) {
		expect(t, "payment → external:666", pod("payment").NetNSPath, hostPort(ext.IP, 666), true)
		expect(t, "payment → external:80", pod("payment").NetNSPath, hostPort(ext.IP, 80), false)
		expect(t, "shipping → external:666", pod("shipping").NetNSPath, hostPort(ext.IP, 666), false)
	})

	t.Run("ClusterIP decided by the service's own scope", func(t *testing.T) {
		c, cp := svc("carts"), pod("carts")
		expect(t, "shipping → carts pod IP", pod("shipping").NetNSPath, hostPort(cp.IP, 80), true)
		expect(t, "shipping → carts ClusterIP (its scope admits front-end only)", pod("shipping").NetNSPath, hostPort(c.ClusterIP, 80), false)
		expect(t, "front-end → carts ClusterIP", pod("front-end").NetNSPath, hostPort(c.ClusterIP, 80), true)
		expect(t, "node → carts pod IP (probes)", e.node(cp.Node).NetNSPath, hostPort(cp.IP, 80), true)
		for _, n := range e.st.Nodes {
			expect(t, n.Name+" → carts ClusterIP (the cluster scope's probes)", n.NetNSPath, hostPort(c.ClusterIP, 80), true)
		}
	})

	t.Run("foreign rules untouched", func(t *testing.T) {
		for _, ns := range []string{n1.NetNSPath, cartsPod.NetNSPath} {
			st, err := trySave(ns) // this subtest's t, not the parent's
			if err != nil {
				t.Fatal(err)
			}
			now := st.ipt
			var kept []string
			for _, l := range strings.Split(now, "\n") {
				if !strings.Contains(l, "PALISADE-IN") && !strings.Contains(l, "PALISADE-OUT") && !strings.Contains(l, "PALISADE-FWD") {
					kept = append(kept, l)
				}
			}
			if got := strings.Join(kept, "\n"); got != before[ns].ipt {
				t.Errorf("%s: rules other than Palisade's changed:\n--- before\n%s\n--- now, without Palisade's\n%s", filepath.Base(ns), before[ns].ipt, got)
			}
		}
	})

	t.Run("drift", func(t *testing.T) {
		target := pod("payment")
		stopLoop := probeLoop(func() bool { return reaches(target.NetNSPath, hostPort(ext.IP, 80)) })
		flushed := time.Now()
		if out, err := netns.Output(target.NetNSPath, "", "iptables", "-F", enforce.ChainOut); err != nil {
			t.Fatalf("flush: %v %s", err, out)
		}
		waitFor(t, 2*time.Second, "payment's egress chain restored", func() bool {
			s, _ := enforce.SaveFilter(target.NetNSPath)
			return strings.Contains(s, "--dport 666")
		})
		restored := time.Since(flushed)
		time.Sleep(300 * time.Millisecond)
		leaks := stopLoop()
		if restored > time.Second {
			t.Errorf("drift repaired after %v, want ≤ 1 s", restored)
		}
		waitFor(t, 3*time.Second, "drift event in GET /api/v1/enforcement", func() bool {
			var st ruleset.Enforcement
			_ = admin.Do(ctx, client.Request{Method: "GET", Path: "/api/v1/enforcement"}, &st)
			for _, a := range st.Agents {
				for _, d := range a.Drift {
					if d.Target == "sock-shop/"+target.Name {
						return true
					}
				}
			}
			return false
		})
		t.Logf("drift repaired in %v; blocked connections that got through meanwhile: %d", restored, leaks)
	})

	t.Run("agent restart and server outage", func(t *testing.T) {
		// Blocked connections probed throughout never get through.
		stopLoop := probeLoop(func() bool {
			return reaches(pod("payment").NetNSPath, hostPort(ext.IP, 80)) || reaches(pod("orders").NetNSPath, hostPort(pod("user-db").IP, 27017))
		})
		stopEnforcers()
		time.Sleep(time.Second)
		startEnforcers()
		waitFor(t, 20*time.Second, "agents in sync after their restart", inSync)
		e.stopServer(t)
		time.Sleep(2 * time.Second)
		e.startServer(t, e.listen)
		srv = e.server()
		admin = srv.Client("")
		waitFor(t, 20*time.Second, "agents in sync after the server restart", inSync)
		if n := stopLoop(); n != 0 {
			t.Errorf("blocked connections got through %d times during the restarts", n)
		}
	})

	t.Run("disable restores every namespace", func(t *testing.T) {
		setModes(t, ruleset.Analyze, enforced...)
		waitFor(t, 15*time.Second, "every namespace as before enforcement", func() bool {
			for _, ns := range spaces {
				st, err := trySave(ns)
				if err != nil {
					t.Logf("reading %s while it changes: %v", ns, err)
					return false
				}
				if st != before[ns] {
					return false
				}
			}
			return true
		})
	})

	// Enforced again: scaling up while enforced.
	setModes(t, ruleset.Enforce, enforced...)
	waitFor(t, 20*time.Second, "every agent in sync again", inSync)
	t.Run("scale up while enforced", func(t *testing.T) {
		// A loop started before the new carts pods exist dials, from
		// inside each as soon as its namespace appears, user-db:27017,
		// which carts may not reach: it never connects.
		prefix := lab.Prefix(e.st.Name) + "pod-sock-shop-carts-"
		old := map[string]bool{}
		names, _ := netns.List(prefix)
		for _, n := range names {
			old[n] = true
		}
		db := pod("user-db")
		var tries, leaks atomic.Int32
		stop := make(chan struct{})
		loop := make(chan struct{})
		go func() {
			defer close(loop)
			for {
				select {
				case <-stop:
					return
				default:
				}
				names, _ := netns.List(prefix)
				for _, n := range names {
					if old[n] {
						continue
					}
					tries.Add(1)
					if reaches(netns.Path(n), hostPort(db.IP, 27017)) {
						leaks.Add(1)
					}
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
		c := e.lab.Client()
		sc, err := c.AppsV1().Deployments("sock-shop").GetScale(ctx, "carts", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sc.Spec.Replicas = 3
		if _, err := c.AppsV1().Deployments("sock-shop").UpdateScale(ctx, "carts", sc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := e.lab.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, "every agent in sync with the new pods", inSync)
		time.Sleep(500 * time.Millisecond)
		close(stop)
		<-loop
		if tries.Load() == 0 {
			t.Fatal("the probe loop never ran inside a new pod")
		}
		if n := leaks.Load(); n != 0 {
			t.Errorf("new carts pods reached user-db %d times (of %d tries)", n, tries.Load())
		}
		t.Logf("probe loop: %d tries from new pods, %d connected", tries.Load(), leaks.Load())
	})
	t.Run("kube-proxy NAT", func(t *testing.T) {
		// The three carts replicas, scaled while enforced: the ClusterIP
		// spreads over all of them.
		carts := e.lab.Status().PodsOf("sock-shop", "carts")
		if len(carts) != 3 {
			t.Fatalf("carts pods: %d", len(carts))
		}
		cs := svc("carts")
		seen := map[string]bool{}
		deadline := time.Now().Add(20 * time.Second)
		for len(seen) < 3 && time.Now().Before(deadline) {
			body, err := app.Get(pod("front-end").NetNSPath, hostPort(cs.ClusterIP, 80), time.Second)
			for _, p := range carts {
				if err == nil && strings.Contains(body, p.Name+" ") {
					seen[p.Name] = true
				}
			}
		}
		if len(seen) != 3 {
			var st ruleset.Enforcement
			_ = admin.Do(ctx, client.Request{Method: "GET", Path: "/api/v1/enforcement"}, &st)
			t.Errorf("carts ClusterIP reached %d of 3 replicas while enforced: %v\nstatus: %+v", len(seen), seen, st.Agents)
		}
		for _, n := range e.st.Nodes {
			expect(t, "external → NodePort on "+n.Name, ext.NetNSPath, hostPort(n.IP, svc("front-end").Ports[0].NodePort), true)
		}
	})

}

// enforcerStates gives each node's enforcer a state file of its own.
func enforcerStates(t *testing.T, e *env) map[string]string {
	states := map[string]string{}
	for _, n := range e.st.Nodes {
		states[n.Name] = filepath.Join(t.TempDir(), "enforce.json")
	}
	return states
}

// runEnforcers starts one enforcer per node, as `palisade agent --enforce`
// runs it, each resuming from its state file; stop waits for them.
func runEnforcers(t *testing.T, e *env, states map[string]string) (stop func()) {
	t.Helper()
	runCtx, cancel := context.WithCancel(context.Background())
	var done []chan error
	for _, n := range e.st.Nodes {
		en, err := enforce.New(enforce.Config{Node: n.Name, NetNS: n.NetNSPath, Pods: &enforce.NetNSDir{Prefix: lab.Prefix(e.st.Name) + "pod-"},
			StateFile: states[n.Name], CheckInterval: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ch := make(chan error, 1)
		done = append(done, ch)
		token := e.server().AgentToken() // now: the server may be restarted meanwhile
		go func() {
			ch <- enforce.Follow(runCtx, en, enforce.FollowConfig{Server: "http://" + e.listen, Node: n.Name, Token: token,
				Wait: 5 * time.Second, StatusInterval: 300 * time.Millisecond})
		}()
	}
	return func() {
		cancel()
		for _, ch := range done {
			<-ch
		}
	}
}

// agentsInSync reports whether every node's agent programmed the bundle
// the server has for it.
func agentsInSync(e *env, admin *client.Client) bool {
	var st ruleset.Enforcement
	if err := admin.Do(context.Background(), client.Request{Method: "GET", Path: "/api/v1/enforcement"}, &st); err != nil {
		return false
	}
	n := 0
	for _, a := range st.Agents {
		if a.InSync && a.Wanted != "" {
			n++
		}
	}
	return n == len(e.st.Nodes)
}

// quarantine is an absolute rule of the cluster scope: a workload with a
// critical finding reaches nothing but DNS.
const quarantine = `---
kind: Policy
name: quarantine-dns
scope: cluster-lab
consumer: vuln.critical > 0
provider: any
ports: [udp/53, tcp/53]
action: ALLOW
class: absolute
---
kind: Policy
name: quarantine
scope: cluster-lab
consumer: vuln.critical > 0
provider: any
action: DENY
class: absolute
`

// criticalGHSA is a GitHub-format OSV record (as in GitHub's advisory
// database export) with a critical CVSS v3 vector, aliased to the Go
// record the vulnerable payment image triggers.
const criticalGHSA = `{"schema_version":"1.4.0","id":"GHSA-9p4w-quar-crit","modified":"2026-11-01T00:00:00Z","published":"2026-11-01T00:00:00Z",
 "aliases":["CVE-2026-97045"],"summary":"golang.org/x/net: critical test advisory for the quarantine test",
 "severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
 "affected":[{"package":{"ecosystem":"Go","name":"golang.org/x/net"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"0.62.0"}]}]}],
 "database_specific":{"github_reviewed":true,"severity":"CRITICAL"}}`

// TestQuarantine: with a quarantine policy enforced by the node agents
// (agent.Config.Enforce), rolling payment onto an image with known CVEs
// isolates it once the scan result is in, and rolling back releases it.
func TestQuarantine(t *testing.T) {
	e := newEnvNamed(t, lab.ModeDirect, "enfquar")
	srv := e.server()
	admin := srv.Client("")
	ctx := context.Background()
	if err := admin.Do(ctx, client.Request{Method: "POST", Path: "/api/v1/policy/apply",
		JSON: server.ApplyRequest{Files: []server.ApplyFile{{Name: "enforce.yaml", Content: enforcePolicy + quarantine}}}}, nil); err != nil {
		t.Fatalf("apply: %v", err)
	}
	// The agents themselves enforce here: `palisade agent --enforce`.
	e.restartAgents(t, agentOpts{conv: convInterval, drain: drainEvery, detach: true, enforce: true})
	for _, scope := range []string{"cluster-lab", "sock-shop"} {
		if err := admin.Do(ctx, client.Request{Method: "POST", Path: "/api/v1/enforcement/scopes/" + scope,
			JSON: ruleset.ModeRequest{Mode: ruleset.Enforce, Version: "v1"}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "every agent in sync", func() bool { return agentsInSync(e, admin) })
	ext := e.st.External[0]
	payment := func() (lab.PodInfo, bool) {
		ps := e.lab.Status().PodsOf("sock-shop", "payment")
		if len(ps) != 1 { // none or two while a roll-out runs
			return lab.PodInfo{}, false
		}
		return ps[0], true
	}
	reach := func() (ext666, db bool) {
		p, ok := payment()
		if !ok {
			return false, false
		}
		db1 := e.lab.Status().PodsOf("sock-shop", "user-db")[0]
		return reaches(p.NetNSPath, hostPort(ext.IP, 666)), reaches(p.NetNSPath, hostPort(db1.IP, 27017))
	}
	if a, b := reach(); !a || !b {
		t.Fatalf("before the vulnerable image: payment → external:666 %v, → user-db:27017 %v; want both", a, b)
	}
	deploys := e.lab.Client().AppsV1().Deployments("sock-shop")
	d, err := deploys.Get(ctx, "payment", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	clean := d.Spec.Template.Spec.Containers[0].Image
	// The Go vulnerability database has no CVSS of its own: a finding's
	// severity comes from a GitHub-format record aliasing it. This one
	// (GitHub's OSV export format, written here: no real advisory for the
	// payment image's modules is critical) scores CVE-2026-97045, the
	// alias of GO-2026-6866 in golang.org/x/net before 0.62.0, critical.
	ghsa := t.TempDir()
	if err := os.WriteFile(filepath.Join(ghsa, "GHSA-9p4w-quar-crit.json"), []byte(criticalGHSA), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Vuln.ImportDB(ctx, ghsa, nil); err != nil {
		t.Fatal(err)
	}
	rollVulnerablePayment(t, e.lab, e.server())
	vulnerable, _ := filter.Parse(`namespace = "sock-shop" and label.app = "payment" and vuln.critical > 0`, inventory.Schema)
	waitFor(t, 3*time.Minute, "the scan result on the new payment pod", func() bool {
		return len(srv.Inventory.Search(vulnerable, inventory.SearchOptions{})) == 1
	})
	scanned := time.Now()
	waitFor(t, 30*time.Second, "payment isolated within 30 s of the scan result", func() bool {
		a, b := reach()
		return !a && !b
	})
	t.Logf("payment isolated %v after its scan result", time.Since(scanned).Round(time.Millisecond))

	// The deployment controller updates the object too: retry on a
	// conflict with a fresh copy.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := deploys.Get(ctx, "payment", metav1.GetOptions{})
		if err != nil {
			return err
		}
		d.Spec.Template.Spec.Containers[0].Image = clean
		_, err = deploys.Update(ctx, d, metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	rolledBack := time.Now()
	waitFor(t, 2*time.Minute, "payment released after rolling back", func() bool {
		a, b := reach()
		return a && b
	})
	t.Logf("payment released %v after the roll-back", time.Since(rolledBack).Round(time.Millisecond))
}

// probeLoop calls try until stop is called, which returns how many tries
// succeeded.
func probeLoop(try func() bool) (stop func() int32) {
	var ok atomic.Int32
	done := make(chan struct{})
	loop := make(chan struct{})
	go func() {
		defer close(loop)
		for {
			select {
			case <-done:
				return
			default:
			}
			if try() {
				ok.Add(1)
			}
		}
	}()
	return func() int32 {
		close(done)
		<-loop
		return ok.Load()
	}
}
