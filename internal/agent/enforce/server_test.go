package enforce

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/agent/agenttest"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/ruleset"
	"github.com/palisade-dev/palisade/internal/server"
	"github.com/palisade-dev/palisade/internal/testutil"
	"github.com/palisade-dev/palisade/pkg/client"
)

type apiError struct {
	Error string `json:"error"`
}

const token = "enforce-test-token"

// call sends a request as the server's admin and returns the HTTP status
// (out gets the answer, or the error message in an *apiError).
func call(t *testing.T, s *server.Server, method, path string, body, out any) int {
	t.Helper()
	err := s.Client("").Do(context.Background(), client.Request{Method: method, Path: path, JSON: body}, out)
	if err == nil {
		return http.StatusOK
	}
	ae, ok := client.AsError(err)
	if !ok {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if e, ok := out.(*apiError); ok {
		e.Error = ae.Message
	}
	return ae.Status
}

// TestEnforcementEndToEnd runs the server's enforcement channel against a
// real agent-side enforcer on real namespaces: `enforce` programs the
// node, a server outage and restart leave the rules in force, a pod that
// appears while enforced never gets an unallowed connection, status shows
// every agent in sync, and `disable` restores the namespaces exactly.
func TestEnforcementEndToEnd(t *testing.T) {
	l := agenttest.New(t)
	c := l.TwoNodes("direct")
	n1 := c.Nodes[0]
	p1, p2, p3 := c.Pod("p1"), c.Pod("p2"), c.Pod("p3")
	for _, p := range []*agenttest.Pod{p1, p2, p3} {
		listen4(t, p.NS, p.IP+":8080")
		listen4(t, p.NS, p.IP+":9090")
	}
	before := map[string]string{}
	for _, ns := range []string{n1.NS, p1.NS, p2.NS} {
		s, err := SaveAll(agenttest.Path(ns))
		if err != nil {
			t.Fatal(err)
		}
		before[ns] = s
	}

	// A fixed port, so the agent finds the restarted server.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	start := func() *server.Server {
		s, err := server.Start(context.Background(), server.Config{DataDir: dir, Listen: addr, AgentToken: token})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := start()
	stopped := false
	defer func() {
		if !stopped {
			s.Stop()
		}
	}()
	pod := func(name, node, ip, app string) inventory.Workload {
		return inventory.Workload{ID: "lab/pod/app/" + name, Cluster: "lab", Kind: inventory.KindPod, Namespace: "app", Name: name,
			IPs: []string{ip}, Node: node, Labels: map[string]string{"app": app}, Phase: "Running"}
	}
	for _, w := range []inventory.Workload{
		{ID: "lab/node/node1", Cluster: "lab", Kind: inventory.KindNode, Name: "node1", IPs: []string{n1.IP}, CIDRs: []string{"10.244.1.0/24"}},
		{ID: "lab/node/node2", Cluster: "lab", Kind: inventory.KindNode, Name: "node2", IPs: []string{c.Nodes[1].IP}, CIDRs: []string{"10.244.2.0/24"}},
		pod("p1", "node1", p1.IP, "client"), pod("p2", "node1", p2.IP, "server"), pod("p3", "node2", p3.IP, "other"),
	} {
		s.Inventory.Apply(w)
	}
	yaml := `kind: Scope
name: app
filter: namespace = "app"
catchAll: DENY
---
kind: Policy
scope: app
consumer: label.app = "client"
provider: label.app = "server"
action: ALLOW
ports: ["tcp/8080"]
`
	var applied map[string]any
	if code := call(t, s, "POST", "/api/v1/policy/apply", server.ApplyRequest{Files: []server.ApplyFile{{Name: "app.yaml", Content: yaml}}}, &applied); code != http.StatusOK {
		t.Fatalf("apply: %d %v", code, applied)
	}

	// The agent side: an enforcer for node1 following the server.
	e, err := New(Config{Node: "node1", NetNS: agenttest.Path(n1.NS), Pods: &NetNSDir{Prefix: l.Prefix + "-p"},
		StateFile: t.TempDir() + "/json", CheckInterval: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Follow(ctx, e, FollowConfig{Server: s.URL(), Node: "node1", Token: token, Wait: 2 * time.Second, StatusInterval: 300 * time.Millisecond,
			FailOpenAfter: 2 * time.Second})
	}()
	defer func() { cancel(); <-done }()

	if !connects(p1.NS, p2.IP+":9090") {
		t.Fatal("before enforcement p1 → p2:9090 must connect")
	}
	// Without an analyzed version and without --version: a clear refusal.
	var apiErr apiError
	if code := call(t, s, "POST", "/api/v1/enforcement/scopes/app", ruleset.ModeRequest{Mode: ruleset.Enforce}, &apiErr); code != http.StatusUnprocessableEntity || !strings.Contains(apiErr.Error, "no analyzed version") {
		t.Fatalf("enforce without an analyzed version: %d %q", code, apiErr.Error)
	}
	if code := call(t, s, "POST", "/api/v1/enforcement/scopes/nope", ruleset.ModeRequest{Mode: ruleset.Enforce}, &apiErr); code != http.StatusNotFound {
		t.Fatalf("unknown scope: %d %q", code, apiErr.Error)
	}
	enforcedAt := time.Now()
	var m ruleset.ScopeMode
	if code := call(t, s, "POST", "/api/v1/enforcement/scopes/app", ruleset.ModeRequest{Mode: ruleset.Enforce, Version: "v1"}, &m); code != http.StatusOK || m.Version != "v1" {
		t.Fatalf("enforce: %d %+v", code, m)
	}
	testutil.Eventually(t, 5*time.Second, "p1 → p2:9090 refused once enforced", func() bool { return !connects(p1.NS, p2.IP+":9090") })
	testutil.Eventually(t, 5*time.Second, "node1 in sync in GET /api/v1/enforcement", func() bool {
		var st ruleset.Enforcement
		call(t, s, "GET", "/api/v1/enforcement", nil, &st)
		for _, a := range st.Agents {
			if a.Node == "node1" && a.InSync && len(a.Namespaces) == 3 {
				return true
			}
		}
		return false
	})

	t.Logf("enforced in %v", time.Since(enforcedAt))
	if !connects(p1.NS, p2.IP+":8080") {
		t.Error("p1 → p2:8080 is allowed but does not connect")
	}
	if connects(p3.NS, p2.IP+":8080") {
		t.Error("p3 → p2:8080 connects, but only app=client may")
	}

	// Server outage and restart: the rules stay in force throughout.
	var leaks atomic.Int32
	stopProbe := probeLoop(p1.NS, p2.IP+":9090", func() { leaks.Add(1) })
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped = true
	time.Sleep(time.Second)
	testutil.Eventually(t, 3*time.Second, "server loss in the agent status", func() bool { return e.Status().ServerLost })
	s = start()
	stopped = false
	testutil.Eventually(t, 10*time.Second, "agent back in sync after the server restart", func() bool {
		var st ruleset.Enforcement
		call(t, s, "GET", "/api/v1/enforcement", nil, &st)
		return len(st.Agents) > 0 && st.Agents[0].InSync && len(st.Scopes) == 1 && st.Scopes[0].Mode == ruleset.Enforce
	})

	// A pod that appears while enforced: a probe loop started before it
	// exists never connects.
	var p4leaks atomic.Int32
	stop4 := probeLoop(p3.NS, "10.244.1.13:9090", func() { p4leaks.Add(1) })
	p4 := l.AddPod(n1, "p4", 13)
	listen4(t, p4.NS, p4.IP+":9090")
	listen4(t, p4.NS, p4.IP+":8080")
	s.Inventory.Apply(pod("p4", "node1", p4.IP, "server"))
	testutil.Eventually(t, 5*time.Second, "p1 → p4:8080 allowed once p4 is programmed", func() bool { return connects(p1.NS, p4.IP+":8080") })
	time.Sleep(300 * time.Millisecond)
	stop4()
	stopProbe()
	if n := leaks.Load(); n != 0 {
		t.Errorf("a blocked connection succeeded %d times during the server outage", n)
	}
	if n := p4leaks.Load(); n != 0 {
		t.Errorf("the probe loop reached the new pod %d times", n)
	}

	// Disable: back to analyze, and every namespace as before.
	if code := call(t, s, "POST", "/api/v1/enforcement/scopes/app", ruleset.ModeRequest{Mode: ruleset.Analyze}, &m); code != http.StatusOK {
		t.Fatalf("disable: %d", code)
	}
	testutil.Eventually(t, 5*time.Second, "rules removed after disable", func() bool { return connects(p1.NS, p2.IP+":9090") })
	testutil.Eventually(t, 3*time.Second, "namespaces exactly as before", func() bool {
		for _, ns := range []string{n1.NS, p1.NS, p2.NS} {
			if now, _ := SaveAll(agenttest.Path(ns)); now != before[ns] {
				return false
			}
		}
		return true
	})
	for _, ns := range []string{n1.NS, p1.NS, p2.NS} {
		if now, _ := SaveAll(agenttest.Path(ns)); now != before[ns] {
			t.Errorf("%s after disable:\n%s\nwant\n%s", ns, now, before[ns])
		}
	}

	// --fail-open: an agent that loses the server removes the rules after
	// its grace period (2 s here), and takes them again when it is back.
	if code := call(t, s, "POST", "/api/v1/enforcement/scopes/app", ruleset.ModeRequest{Mode: ruleset.Enforce, Version: "v1", FailOpen: true}, &m); code != http.StatusOK || !m.FailOpen {
		t.Fatalf("enforce --fail-open: %d %+v", code, m)
	}
	testutil.Eventually(t, 5*time.Second, "enforced again", func() bool { return !connects(p1.NS, p2.IP+":9090") })
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped = true
	lost := time.Now()
	testutil.Eventually(t, 10*time.Second, "rules removed after losing the server (fail-open)", func() bool { return connects(p1.NS, p2.IP+":9090") })
	if d := time.Since(lost); d < 2*time.Second {
		t.Errorf("fail-open removed the rules after %v, before the 2 s grace", d)
	}
	s = start()
	stopped = false
	testutil.Eventually(t, 10*time.Second, "rules back with the server", func() bool { return !connects(p1.NS, p2.IP+":9090") })
}

// listen4 serves "ADDRESS:PORT" in ns.
func listen4(t *testing.T, ns, addr string) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	listen(t, ns, host, n)
}

func connects(ns, addr string) bool { return dial(ns, addr) == nil }
