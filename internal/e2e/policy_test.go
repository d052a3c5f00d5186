package e2e

import (
	"context"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/palisade-dev/palisade/internal/lab"
	"github.com/palisade-dev/palisade/internal/lab/app"
	"github.com/palisade-dev/palisade/internal/policy"
	"github.com/palisade-dev/palisade/internal/policy/analyze"
	"github.com/palisade-dev/palisade/internal/policy/compliance"
	"github.com/palisade-dev/palisade/internal/server"
	"github.com/palisade-dev/palisade/pkg/client"
)

// sockShopPolicy is the reference material's example policies for the lab's
// sock-shop, written as policy-as-code, plus intents for the rest of the
// lab's call graph so that every intended flow is allowed. The lab's
// front-end serves 8079 behind service port 80 and NodePort.
const sockShopPolicy = `# split scope design: the cluster in a parent, the application in a child
kind: Scope
name: lab
filter: cluster = "lab"
catchAll: DENY
---
kind: Scope
name: sock-shop
parent: lab
filter: namespace = "sock-shop"
catchAll: DENY
---
# reference: payment → user-db TCP 27017
kind: Policy
scope: sock-shop
consumer: label.app = "payment"
provider: label.app = "user-db"
action: ALLOW
ports: ["tcp/27017"]
---
# reference: front-end → carts service TCP 80
kind: Policy
scope: sock-shop
consumer: label.app = "front-end"
provider: service:sock-shop/carts
action: ALLOW
ports: ["tcp/80"]
---
# reference: Kubernetes health probes from node IPs → front-end
kind: Policy
scope: sock-shop
consumer: kind = node
provider: label.app = "front-end"
action: ALLOW
ports: ["tcp/8079"]
---
# reference: any → front-end NodePort, on both the parent (node addresses)
# and the child (the pods), as the reference material notes
kind: Policy
scope: sock-shop
consumer: any
provider: service:sock-shop/front-end
action: ALLOW
ports: ["tcp/80"]
---
kind: Policy
scope: lab
consumer: any
provider: service:sock-shop/front-end
action: ALLOW
ports: ["tcp/80"]
---
# reference: payment / front-end → external 203.0.113.10 TCP 666
kind: Policy
name: to-external-666
scope: sock-shop
consumer: label.app in (payment, front-end)
provider: cidr:203.0.113.10/32
action: ALLOW
ports: ["tcp/666"]
---
# allowed, but nothing listens there: Misdropped
kind: Policy
name: closed-port
scope: sock-shop
consumer: label.app = "front-end"
provider: cidr:203.0.113.10/32
action: ALLOW
ports: ["tcp/7777"]
---
# the rest of the lab's call graph
kind: PolicyVersion
scope: lab
policies:
  - consumer: any
    provider: service:sock-shop/front-end
    action: ALLOW
    ports: ["tcp/80"]
  - consumer: kind = node
    provider: namespace = "sock-shop"
    action: ALLOW
---
kind: Policy
scope: sock-shop
consumer: label.app = "front-end"
provider: service:sock-shop/catalogue
action: ALLOW
ports: ["tcp/80"]
---
kind: Policy
scope: sock-shop
consumer: label.app = "front-end"
provider: service:sock-shop/orders
action: ALLOW
ports: ["tcp/80"]
---
kind: Policy
scope: sock-shop
consumer: label.app = "front-end"
provider: service:sock-shop/user
action: ALLOW
ports: ["tcp/80"]
---
kind: Policy
scope: sock-shop
consumer: label.app = "orders"
provider: service:sock-shop/payment
action: ALLOW
ports: ["tcp/80"]
---
kind: Policy
scope: sock-shop
consumer: label.app = "orders"
provider: service:sock-shop/shipping
action: ALLOW
ports: ["tcp/80"]
---
kind: Policy
scope: sock-shop
consumer: label.app = "user"
provider: label.app = "user-db"
action: ALLOW
ports: ["tcp/27017"]
`

// without666 deletes the reference payment/front-end → 203.0.113.10 TCP 666 intent.
const without666 = `kind: Policy
name: to-external-666
scope: sock-shop
consumer: label.app in (payment, front-end)
provider: cidr:203.0.113.10/32
action: ALLOW
ports: ["tcp/666"]
`

func (e *env) api(t *testing.T, method, path string, q url.Values, body, out any) {
	t.Helper()
	if err := e.apiErr(method, path, q, body, out); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
}

func (e *env) apiErr(method, path string, q url.Values, body, out any) error {
	c, err := client.New(client.Options{Server: e.server().URL(), Token: e.server().AdminToken()})
	if err != nil {
		return err
	}
	return c.Do(context.Background(), client.Request{Method: method, Path: "/api/v1" + path, Query: q, JSON: body}, out)
}

func (e *env) applyYAML(t *testing.T, name, src string, del bool) policy.Result {
	t.Helper()
	path := "/policy/apply"
	if del {
		path = "/policy/delete"
	}
	var res policy.Result
	e.api(t, "POST", path, nil, server.ApplyRequest{Files: []server.ApplyFile{{Name: name, Content: src}}}, &res)
	return res
}

func (e *env) analysis(t *testing.T, scope, version string, from, to time.Time) analyze.Report {
	t.Helper()
	var rep analyze.Report
	e.api(t, "GET", "/analysis", url.Values{"scope": {scope}, "version": {version},
		"from": {from.UTC().Format(time.RFC3339Nano)}, "to": {to.UTC().Format(time.RFC3339Nano)}}, nil, &rep)
	return rep
}

func (e *env) analysisFlows(t *testing.T, scope, version, verdict string, from, to time.Time) []analyze.FlowVerdict {
	t.Helper()
	var out []analyze.FlowVerdict
	e.api(t, "GET", "/analysis/flows", url.Values{"scope": {scope}, "version": {version}, "verdict": {verdict}, "limit": {"10000"},
		"from": {from.UTC().Format(time.RFC3339Nano)}, "to": {to.UTC().Format(time.RFC3339Nano)}}, nil, &out)
	return out
}

// dial opens and closes n TCP connections from a pod.
func (e *env) dial(t *testing.T, from, addr string, n int, mustConnect bool) {
	t.Helper()
	for range n {
		c, err := e.lab.Dial(from, addr)
		if err == nil {
			c.Close()
		} else if mustConnect {
			t.Fatalf("dial %s from %s: %v", addr, from, err)
		}
	}
}

// newPolicyEnv is newEnv with kubelet-style probes on: probes from node
// addresses are one of the reference policies.
func newPolicyEnv(t *testing.T, name string) *env {
	t.Helper()
	mode := lab.ModeDirect
	e := &env{mode: mode, kube: kubes[mode], agents: map[string]*runAgent{}, byVeth: map[string]string{}}
	dir := t.TempDir()
	e.dataDir, e.spoolRoot = filepath.Join(dir, "server"), filepath.Join(dir, "agents")
	l, err := lab.Up(context.Background(), lab.Config{Name: name, Nodes: 2, Mode: mode, App: "sockshop",
		RestConfig: e.kube.Config, ProbePeriod: 3 * time.Second})
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	e.lab = l
	t.Cleanup(func() {
		e.stopAgents(t)
		if s := e.server(); s != nil {
			if err := s.Stop(); err != nil {
				t.Errorf("server stop: %v", err)
			}
		}
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	e.st = l.Status()
	for _, p := range e.st.Pods {
		e.byVeth[p.HostVeth] = p.Namespace + "/" + p.Name
	}
	if err := os.MkdirAll(e.dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	e.startServer(t, stablePort(t))
	e.listen = strings.TrimPrefix(e.server().URL(), "http://")
	waitFor(t, 60*time.Second, "inventory has every lab pod, node and service", func() bool {
		for _, p := range e.st.Pods {
			if _, ok := e.server().Inventory.WorkloadAt(p.IP, time.Now()); !ok {
				return false
			}
		}
		for _, n := range e.st.Nodes {
			if _, ok := e.server().Inventory.WorkloadAt(n.IP, time.Now()); !ok {
				return false
			}
		}
		for _, s := range e.st.Services {
			if _, _, ok := e.server().Inventory.Get("lab/service/" + s.Namespace + "/" + s.Name); !ok {
				return false
			}
		}
		return true
	})
	e.startAgents(t, agentOpts{conv: convInterval, drain: drainEvery, detach: true})
	return e
}

// TestPolicyAcceptance is issue 8's lab acceptance: the reference
// policies applied as YAML and analyzed against real traffic, a second
// version without one intent, a Misdropped closed port, a compliance alert
// on the enforced version that survives a restart, and scopes in the
// inventory API.
func TestPolicyAcceptance(t *testing.T) {
	e := newPolicyEnv(t, "e2epolicy")
	res := e.applyYAML(t, "sock-shop.yaml", sockShopPolicy, false)
	if len(res.Changes) == 0 {
		t.Fatal("apply made no change")
	}
	if again := e.applyYAML(t, "sock-shop.yaml", sockShopPolicy, false); len(again.Changes) != 0 {
		t.Fatalf("second apply changed %+v", again.Changes)
	}

	// Real traffic: the lab's call graph, the reference payment → user-db,
	// and a connection to a port the policy allows but nothing serves.
	ext := e.st.External[0].IP
	from := time.Now().Add(-time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	trep, err := lab.Traffic(ctx, e.st, app.SockShop(), lab.TrafficOptions{Duration: 6 * time.Second, Rate: 30})
	if err != nil {
		t.Fatal(err)
	}
	for _, edge := range trep.Edges {
		if edge.OK == 0 {
			t.Fatalf("traffic edge %s->%s made no successful connection: %s", edge.From, edge.To, edge.LastError)
		}
	}
	userDB := e.st.PodsOf("sock-shop", "user-db")[0]
	e.dial(t, "payment", net.JoinHostPort(userDB.IP, "27017"), 3, true)
	e.dial(t, "front-end", net.JoinHostPort(ext, "7777"), 2, false)
	// A pod through front-end's cluster IP, which only the intent any →
	// service:sock-shop/front-end decides: the NodePort's connections reach
	// front-end from a node's address (the node's own, or its bridge's,
	// which the inventory resolves to the node), where the probes' intent
	// (kind = node) decides first.
	for _, s := range e.st.Services {
		if s.Namespace == "sock-shop" && s.Name == "front-end" {
			e.dial(t, "orders", net.JoinHostPort(s.ClusterIP, "80"), 2, true)
		}
	}
	end := time.Now()
	sleepUntil(e.settled(end))
	to := time.Now()

	v1 := e.analysis(t, "sock-shop", "v1", from, to)
	t.Logf("v1: %d flows %+v, %d translated", v1.Flows, v1.Counts, v1.Translated)
	if v1.Counts.Escaped != 0 || v1.Counts.Rejected != 0 {
		for _, fv := range append(e.analysisFlows(t, "sock-shop", "v1", "escaped", from, to), e.analysisFlows(t, "sock-shop", "v1", "rejected", from, to)...) {
			t.Logf("  %s %s:%d → %s:%d %s (%s)", fv.Verdict, fv.Flow.Src.IP, fv.Flow.Src.Port, fv.Flow.Dst.IP, fv.Flow.Dst.Port, fv.Rule, fv.Flow.Related)
		}
		t.Fatalf("v1: every intended flow should be Permitted, got %+v", v1.Counts)
	}
	if v1.Counts.Permitted == 0 {
		t.Fatal("v1: no Permitted flow")
	}
	// Every intent decided real flows.
	v1Pol := e.versionPolicies(t, "sock-shop", "v1")
	for i, p := range v1Pol {
		if p.Name == "closed-port" {
			continue
		}
		if rc := ruleCounts(v1, "sock-shop@v1#"+strconv.Itoa(i)); rc.Permitted == 0 {
			t.Errorf("v1 intent #%d (%s) permitted no flow", i, policy.PolicyString(p))
		}
	}
	mis := e.analysisFlows(t, "sock-shop", "v1", "misdropped", from, to)
	if len(mis) == 0 {
		t.Fatal("v1: the connection to the closed port 7777 is not Misdropped")
	}
	for _, fv := range mis {
		if fv.Flow.Dst.IP != ext || fv.Flow.Dst.Port != 7777 {
			t.Errorf("v1: Misdropped flow other than the closed port: %s:%d → %s:%d", fv.Flow.Src.IP, fv.Flow.Src.Port, fv.Flow.Dst.IP, fv.Flow.Dst.Port)
		}
	}
	permitted666 := ruleCounts(v1, "sock-shop@v1#"+strconv.Itoa(indexOfPolicy(v1Pol, "to-external-666"))).Permitted
	if permitted666 == 0 {
		t.Fatal("v1: no payment → 203.0.113.10:666 flow permitted")
	}

	// v1 is analyzed, so deleting an intent makes v2 without it.
	res = e.applyYAML(t, "without-666.yaml", without666, true)
	if len(res.Changes) != 1 || res.Changes[0].Name != "sock-shop@v2" {
		t.Fatalf("delete: %+v, want a new version sock-shop@v2", res.Changes)
	}
	v2 := e.analysis(t, "sock-shop", "v2", from, to)
	esc := e.analysisFlows(t, "sock-shop", "v2", "escaped", from, to)
	if len(esc) != permitted666 || v2.Counts.Escaped != permitted666 {
		t.Fatalf("v2: %d Escaped flows (counts %+v), want exactly the %d flows the removed intent permitted", len(esc), v2.Counts, permitted666)
	}
	for _, fv := range esc {
		if fv.Flow.Dst.IP != ext || fv.Flow.Dst.Port != 666 || fv.Rule.String() != "sock-shop@v2 catch-all" {
			t.Errorf("v2: unexpected Escaped flow %s → %s:%d by %s", fv.Flow.Src.IP, fv.Flow.Dst.IP, fv.Flow.Dst.Port, fv.Rule)
		}
	}
	if v2.Counts.Permitted != v1.Counts.Permitted-permitted666 || v2.Counts.Misdropped != v1.Counts.Misdropped {
		t.Fatalf("v2 counts %+v vs v1 %+v: only the 666 flows should move", v2.Counts, v1.Counts)
	}
	if again := e.analysis(t, "sock-shop", "v1", from, to); again.Counts != v1.Counts {
		t.Fatalf("v1 analysis changed after v2: %+v, was %+v", again.Counts, v1.Counts)
	}

	// The workload's scopes in the inventory API.
	var wl struct {
		Scopes []string `json:"scopes"`
	}
	e.api(t, "GET", "/inventory/lab/pod/sock-shop/"+e.st.PodsOf("sock-shop", "payment")[0].Name, nil, nil, &wl)
	if strings.Join(wl.Scopes, ",") != "lab,sock-shop" {
		t.Fatalf("payment pod scopes = %v, want [lab sock-shop]", wl.Scopes)
	}

	// Compliance: v2 (without the 666 intent) and lab v1 enforced; a
	// payment → 203.0.113.10:666 connection raises exactly one alert.
	e.api(t, "POST", "/scopes/lab/versions/v1/enforce", nil, nil, nil)
	e.api(t, "POST", "/scopes/sock-shop/versions/v2/enforce", nil, nil, nil)
	enforcedAt := time.Now()
	sleepUntil(e.settled(enforcedAt)) // flows from before enforcement are out of the way
	var before []compliance.Alert
	e.api(t, "GET", "/compliance/alerts", url.Values{"all": {"true"}}, nil, &before)
	if len(before) != 0 {
		t.Fatalf("alerts before the escaping connection: %+v", before)
	}
	sent := time.Now()
	e.dial(t, "payment", net.JoinHostPort(ext, "666"), 3, true)
	var alerts []compliance.Alert
	deadline := convInterval + drainEvery + flowWindow + 3*time.Second // report interval + window + flush
	waitFor(t, deadline, "one compliance alert", func() bool {
		alerts = nil
		return e.apiErr("GET", "/compliance/alerts", nil, nil, &alerts) == nil && len(alerts) > 0
	})
	t.Logf("alert after %s: %+v", time.Since(sent).Round(time.Millisecond), alerts)
	time.Sleep(2 * time.Second) // nothing else may follow
	e.api(t, "GET", "/compliance/alerts", nil, nil, &alerts)
	if len(alerts) != 1 || alerts[0].Verdict != policy.Escaped || !strings.Contains(alerts[0].Edge, ext+" tcp/666") || alerts[0].Rule.String() != "sock-shop@v2 catch-all" {
		t.Fatalf("alerts = %+v, want exactly one Escaped alert for payment → %s tcp/666", alerts, ext)
	}

	// The alert survives a server restart.
	e.stopAgents(t)
	e.stopServer(t)
	e.startServer(t, e.listen)
	var after []compliance.Alert
	e.api(t, "GET", "/compliance/alerts", nil, nil, &after)
	if len(after) != 1 || after[0].ID != alerts[0].ID || after[0].Count != alerts[0].Count {
		t.Fatalf("after restart: %+v, want the alert %+v", after, alerts[0])
	}
	var ack compliance.Alert
	e.api(t, "POST", "/compliance/alerts/"+after[0].ID+"/ack", nil, nil, &ack)
	// Who changed and acknowledged what is the caller's identity.
	var v2v policy.Version
	e.api(t, "GET", "/scopes/sock-shop/versions/v2", nil, nil, &v2v)
	if !ack.Acked || ack.AckedBy == "" || ack.AckedBy != v2v.CreatedBy {
		t.Fatalf("ack = %+v, v2 created by %q: want both by the admin token's name", ack, v2v.CreatedBy)
	}
}

func (e *env) versionPolicies(t *testing.T, scope, version string) []policy.Policy {
	var ps []policy.Policy
	e.api(t, "GET", "/scopes/"+scope+"/policies", url.Values{"version": {version}}, nil, &ps)
	return ps
}

func indexOfPolicy(ps []policy.Policy, name string) int {
	for i, p := range ps {
		if p.Name == name {
			return i
		}
	}
	return -1
}

func ruleCounts(r analyze.Report, rule string) analyze.Counts {
	for _, rc := range r.ByRule {
		if rc.Rule.String() == rule {
			return rc.Counts
		}
	}
	return analyze.Counts{}
}

// TestPolicyIPReuse analyzes flows from before a pod was deleted and its
// address given to its replacement: each flow is attributed to the pod
// that held the address at the flow's time (an intent names the first pod
// by name, so only its flows are allowed).
func TestPolicyIPReuse(t *testing.T) {
	e := newPolicyEnv(t, "e2epolreuse")
	old := e.st.PodsOf("sock-shop", "payment")[0]
	ext := net.JoinHostPort(e.st.External[0].IP, "666")
	e.applyYAML(t, "reuse.yaml", `kind: Scope
name: sock-shop
filter: namespace = "sock-shop"
catchAll: DENY
---
kind: Policy
scope: sock-shop
consumer: name = "`+old.Name+`"
provider: cidr:203.0.113.10/32
action: ALLOW
ports: ["tcp/666"]
`, false)
	from := time.Now().Add(-time.Second)
	e.dial(t, old.Namespace+"/"+old.Name, ext, 2, true)
	sleepUntil(e.settled(time.Now()))

	// Scale the Deployment to 0 and back: the new pod is scheduled after
	// the old one's address was freed, and the lab gives the lowest free
	// address of the node with the fewest pods: the same one.
	deletedAt := time.Now()
	scale := func(n int32) {
		t.Helper()
		ctx := context.Background()
		sc, err := e.lab.Client().AppsV1().Deployments("sock-shop").GetScale(ctx, "payment", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sc.Spec.Replicas = n
		if _, err := e.lab.Client().AppsV1().Deployments("sock-shop").UpdateScale(ctx, "payment", sc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	scale(0)
	waitFor(t, 60*time.Second, "the payment pod gone from the lab and the inventory", func() bool {
		if len(e.lab.Status().PodsOf("sock-shop", "payment")) > 0 {
			return false
		}
		w, _, ok := e.server().Inventory.Get("lab/pod/sock-shop/" + old.Name)
		if _, err := os.Stat(old.NetNSPath); err == nil || !ok || w.Deleted == nil {
			return false // the lab frees the address right after removing the namespace
		}
		return true
	})
	time.Sleep(500 * time.Millisecond)
	scale(1)
	var repl lab.PodInfo
	waitFor(t, 60*time.Second, "a new payment pod", func() bool {
		for _, p := range e.lab.Status().PodsOf("sock-shop", "payment") {
			if p.Name != old.Name && p.IP != "" {
				repl = p
				return true
			}
		}
		return false
	})
	if repl.IP != old.IP {
		t.Fatalf("the replacement %s got %s, not the freed %s: the lab did not reuse the address", repl.Name, repl.IP, old.IP)
	}
	waitFor(t, 30*time.Second, "the inventory attributes the address to the replacement", func() bool {
		w, ok := e.server().Inventory.WorkloadAt(repl.IP, time.Now())
		return ok && w.Name == repl.Name
	})
	e.byVeth[repl.HostVeth] = repl.Namespace + "/" + repl.Name
	e.restartAgents(t, agentOpts{conv: convInterval, drain: drainEvery, detach: true}) // the new pod's veth
	e.dial(t, repl.Namespace+"/"+repl.Name, ext, 2, true)
	sleepUntil(e.settled(time.Now()))
	to := time.Now()

	fvs := e.analysisFlows(t, "sock-shop", "", "", from, to)
	var before, after int
	for _, fv := range fvs {
		if fv.Flow.Src.IP != old.IP || fv.Flow.Dst.Port != 666 {
			continue
		}
		switch {
		case fv.Flow.Start.Before(deletedAt) && fv.Verdict == policy.Permitted && fv.Rule.String() == "sock-shop@v1#0":
			before++
		case !fv.Flow.Start.Before(deletedAt) && fv.Verdict == policy.Escaped && fv.Rule.String() == "sock-shop@v1 catch-all":
			after++
		default:
			t.Errorf("flow from %s at %s: %s by %s", fv.Flow.Src.IP, fv.Flow.Start.Format(time.RFC3339Nano), fv.Verdict, fv.Rule)
		}
	}
	if before == 0 || after == 0 {
		t.Fatalf("flows from the reused address: %d Permitted from %s, %d Escaped from %s; want both", before, old.Name, after, repl.Name)
	}
}
