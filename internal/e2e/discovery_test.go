package e2e

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/discovery"
	"github.com/palisade-dev/palisade/internal/lab"
	"github.com/palisade-dev/palisade/internal/lab/app"
	"github.com/palisade-dev/palisade/internal/policy"
	"github.com/palisade-dev/palisade/internal/ruleset"
	"github.com/palisade-dev/palisade/internal/server"
	"github.com/palisade-dev/palisade/pkg/client"
)

const discoveryScopes = `kind: Scope
name: lab
filter: cluster = "lab"
catchAll: ALLOW
---
kind: Scope
name: sock-shop
parent: lab
filter: namespace = "sock-shop"
catchAll: DENY
`

// discover runs a discovery job to its end.
func (e *env) discover(t *testing.T, req server.DiscoverRequest) server.DiscoveryJob {
	t.Helper()
	var job server.DiscoveryJob
	e.api(t, "POST", "/scopes/sock-shop/discover", nil, req, &job)
	waitFor(t, time.Minute, "discovery job "+job.ID+" done", func() bool {
		e.api(t, "GET", "/discovery/"+job.ID, nil, nil, &job)
		return job.State != "running"
	})
	if job.State != "done" || job.Result == nil {
		t.Fatalf("discovery job: %+v", job)
	}
	return job
}

func (e *env) traffic(t *testing.T, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := lab.Traffic(ctx, e.st, app.SockShop(), lab.TrafficOptions{Duration: d, Rate: 30})
	if err != nil {
		t.Fatal(err)
	}
	for _, edge := range rep.Edges {
		if edge.OK == 0 {
			t.Fatalf("traffic edge %s->%s made no successful connection: %s", edge.From, edge.To, edge.LastError)
		}
	}
}

// TestDiscoveryAcceptance is issue 10's lab acceptance: discovery over a
// window of sock-shop traffic gives one rule per call-graph edge (plus the
// node probes), which analyzed over a second window of normal traffic is
// 100 % Permitted, and under which unusual connections are Escaped, and
// blocked once the version is enforced; the output is byte-identical for
// the same window.
func TestDiscoveryAcceptance(t *testing.T) {
	e := newPolicyEnv(t, "e2edisc")
	e.applyYAML(t, "scopes.yaml", discoveryScopes, false)
	ext := e.st.External[0].IP

	from1 := time.Now().Add(-time.Second)
	e.traffic(t, 6*time.Second)
	end1 := time.Now()
	sleepUntil(e.settled(end1))
	to1 := time.Now()

	job := e.discover(t, server.DiscoverRequest{From: from1, To: to1, AsVersion: true})
	res := job.Result
	if job.Version == "" {
		t.Fatal("asVersion made no version")
	}
	t.Logf("discovered %s from %+v:\n%s", job.Version, res.Stats, job.YAML)

	// Every call-graph edge has exactly one rule; the rest are probes.
	rulesOf := map[string][]discovery.Rule{}
	for _, r := range res.Rules {
		from := strings.TrimPrefix(r.ConsumerCluster, "sock-shop.")
		if r.Consumer == "any" {
			from = app.External
		}
		to := strings.TrimPrefix(r.ProviderCluster, "sock-shop.")
		switch {
		case strings.HasPrefix(r.Provider, "service:sock-shop/"):
			to = strings.TrimPrefix(r.Provider, "service:sock-shop/")
		case r.Provider == "cidr:"+ext+"/32":
			to = app.External
		}
		if r.Kind == "probe" {
			from = "probe"
		}
		rulesOf[from+"->"+to] = append(rulesOf[from+"->"+to], r)
		if r.Consumer == "any" && r.Kind != "nodeport" {
			t.Errorf("rule %s uses any where a cluster or service fits", r.Edge())
		}
	}
	for _, edge := range app.SockShop().Edges {
		rs := rulesOf[edge.String()]
		if len(rs) != 1 {
			t.Errorf("call-graph edge %s has %d rules, want exactly one", edge, len(rs))
			continue
		}
		want := map[app.Via]string{app.ViaNodePort: "nodeport", app.ViaClusterIP: "service", app.ViaPodIP: "pod", app.ViaExternal: "external"}[edge.Via]
		if rs[0].Kind != want || rs[0].Flows == 0 || len(rs[0].Samples) == 0 {
			t.Errorf("edge %s: rule %s kind %s with %d flows, want kind %s with evidence", edge, rs[0].Edge(), rs[0].Kind, rs[0].Flows, want)
		}
		delete(rulesOf, edge.String())
	}
	probes := 0
	for k, rs := range rulesOf {
		if strings.HasPrefix(k, "probe->") {
			probes += len(rs)
			continue
		}
		for _, r := range rs {
			t.Errorf("rule outside the call graph: %s %v (%s, samples %v)", r.Edge(), r.Ports, r.Kind, r.Samples)
		}
	}
	if probes == 0 {
		t.Error("no node probe rule")
	}

	// Same window, same output.
	a := e.discover(t, server.DiscoverRequest{From: from1, To: to1})
	b := e.discover(t, server.DiscoverRequest{From: from1, To: to1})
	if a.YAML != b.YAML {
		t.Fatalf("two runs over the same window differ:\n%s\n---\n%s", a.YAML, b.YAML)
	}

	// A second window: normal traffic is all Permitted; unusual traffic
	// (catalogue → user-db:27017, front-end → payment:80, a pod to an
	// external address:port it never used) is Escaped.
	from2 := time.Now()
	e.traffic(t, 6*time.Second)
	end2 := time.Now()
	sleepUntil(e.settled(end2))
	to2 := time.Now()
	rep := e.analysis(t, "sock-shop", job.Version, from2, to2)
	t.Logf("normal window: %+v", rep.Counts)
	if rep.Counts.Permitted == 0 || rep.Counts.Escaped != 0 || rep.Counts.Rejected != 0 || rep.Counts.Misdropped != 0 {
		for _, fv := range e.analysisFlows(t, "sock-shop", job.Version, "escaped", from2, to2) {
			t.Logf("  escaped %s:%d → %s:%d (%s)", fv.Flow.Src.IP, fv.Flow.Src.Port, fv.Flow.Dst.IP, fv.Flow.Dst.Port, fv.Rule)
		}
		t.Fatalf("normal traffic under the discovered version: %+v, want only Permitted", rep.Counts)
	}

	from3 := time.Now()
	userDB := e.st.PodsOf("sock-shop", "user-db")[0]
	payment := e.st.PodsOf("sock-shop", "payment")[0]
	e.dial(t, "catalogue", net.JoinHostPort(userDB.IP, "27017"), 2, true)
	e.dial(t, "front-end", net.JoinHostPort(payment.IP, "80"), 2, true)
	e.dial(t, "front-end", net.JoinHostPort(ext, "80"), 2, true)
	end3 := time.Now()
	sleepUntil(e.settled(end3))
	esc := e.analysisFlows(t, "sock-shop", job.Version, "escaped", from3, time.Now())
	seen := map[string]bool{}
	for _, fv := range esc {
		seen[net.JoinHostPort(fv.Flow.Dst.IP, strconv.Itoa(int(fv.Flow.Dst.Port)))] = true
	}
	for _, want := range []string{net.JoinHostPort(userDB.IP, "27017"), net.JoinHostPort(payment.IP, "80"), net.JoinHostPort(ext, "80")} {
		if !seen[want] {
			t.Errorf("unusual connection to %s is not Escaped under the discovered version (escaped: %v)", want, seen)
		}
	}

	// The version is the YAML's intents; the YAML applies as is.
	var v policy.Version
	e.api(t, "GET", "/scopes/sock-shop/versions/"+job.Version, nil, nil, &v)
	if len(v.Policies) != len(res.Rules) {
		t.Fatalf("version %s has %d intents, discovery found %d rules", job.Version, len(v.Policies), len(res.Rules))
	}
	if r := e.applyYAML(t, "discovered.yaml", a.YAML, false); len(r.Changes) == 0 {
		t.Fatal("applying the discovered YAML changed nothing")
	}

	// Enforced (the agents program it), the discovered version blocks the
	// unusual connections while the application's traffic still flows.
	e.restartAgents(t, agentOpts{conv: convInterval, drain: drainEvery, detach: true, enforce: true})
	admin := e.server().Client("")
	if err := admin.Do(context.Background(), client.Request{Method: "POST", Path: "/api/v1/enforcement/scopes/sock-shop",
		JSON: ruleset.ModeRequest{Mode: ruleset.Enforce, Version: job.Version}}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "every agent in sync", func() bool { return agentsInSync(e, admin) })
	catalogue := e.st.PodsOf("sock-shop", "catalogue")[0]
	front := e.st.PodsOf("sock-shop", "front-end")[0]
	for _, c := range []struct{ from, to string }{
		{catalogue.NetNSPath, net.JoinHostPort(userDB.IP, "27017")},
		{front.NetNSPath, net.JoinHostPort(payment.IP, "80")},
		{front.NetNSPath, net.JoinHostPort(ext, "80")},
	} {
		if reaches(c.from, c.to) {
			t.Errorf("enforced discovered version: %s reaches %s", c.from, c.to)
		}
	}
	e.traffic(t, 4*time.Second) // fails if any call-graph edge is blocked
}
