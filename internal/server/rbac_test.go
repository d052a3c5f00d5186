package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/palisade-dev/palisade/internal/auth"
	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/httpapi"
	"github.com/palisade-dev/palisade/internal/vuln/vulntest"
	"github.com/palisade-dev/palisade/pkg/api"
	"github.com/palisade-dev/palisade/pkg/client"
)

// rbacMarkers name objects only scope B may see: the pod "bonly", its
// address, B's scope and intent names. No answer to a caller bound to
// scope A may contain one. (b1, also in B, is the other end of a flow
// from A, which A sees: a flow is visible when either end is.)
var rbacMarkers = []string{"bonly", "10.244.92.2", "scope-b", "b-intent"}

// rbacPolicy: scope A (namespace rbac-a) with a child, scope B (rbac-b).
const rbacPolicy = `kind: Scope
name: scope-a
filter: cluster = "lab" and namespace = "rbac-a"
catchAll: ALLOW
---
kind: Scope
name: scope-a-child
parent: scope-a
filter: label.app = "a2"
catchAll: ALLOW
---
kind: Scope
name: scope-b
filter: cluster = "lab" and namespace = "rbac-b"
catchAll: ALLOW
---
kind: Policy
scope: scope-a
name: a-intent
consumer: label.app = "a1"
provider: label.app = "a2"
action: ALLOW
ports: ["tcp/80"]
---
kind: Policy
scope: scope-b
name: b-intent
consumer: label.app = "b1"
provider: label.app = "bonly"
action: DENY
ports: ["tcp/80"]
`

// TestScopedRBAC is the acceptance test of per-scope RBAC, black-box
// against a running server with a real API server: pods in two namespaces
// (scopes A and B), flows between them, vulnerability findings from a real
// scan, policies, analysis, a compliance alert and a discovery job of B.
// A viewer bound to A gets 403 on every write and no B object in any read
// (the route table is walked, so a new route is covered); an owner bound
// to A edits A's child scope and policies but not A itself nor B; an
// operator bound to A enforces A, not B, and edits nothing.
func TestScopedRBAC(t *testing.T) {
	ctx := context.Background()
	reg := vulntest.Registry(t, "", "")
	img := vulntest.Image(t, vulntest.Layer(t, vulntest.File{Path: "app/server", Data: string(vulntest.GoBinary(t)), Mode: 0o755}))
	vulntest.Push(t, img, reg+"/rbac/app:1.0", nil)

	s, err := Start(ctx, Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", Clusters: []Cluster{{Name: "lab", Config: kube.Config}},
		ScanRegistries: []string{"127.0.0.1"}, FlowWindow: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if _, err := s.Vuln.ImportDB(ctx, vulntest.GoVulnDB(t), nil); err != nil {
		t.Fatal(err)
	}
	pods := []struct{ ns, name, ip, image string }{
		{"rbac-a", "a1", "10.244.91.1", reg + "/rbac/app:1.0"},
		{"rbac-a", "a2", "10.244.91.2", "busybox"},
		{"rbac-b", "b1", "10.244.92.1", "busybox"},
		{"rbac-b", "bonly", "10.244.92.2", reg + "/rbac/app:1.0"},
	}
	for _, p := range pods {
		rbacPod(t, p.ns, p.name, p.ip, p.image)
	}
	admin := s.Client("")
	var inv api.InventoryList
	waitFor(t, time.Minute, "the four pods with their addresses", func() bool {
		inv, _ = admin.SearchInventory(ctx, `namespace in (rbac-a, rbac-b) and ip exists`, client.SearchOptions{})
		return inv.Count == 4
	})
	if code, body := rbacCall(t, s, "", "POST", "/api/v1/policy/apply", applyBody(rbacPolicy)); code != 200 {
		t.Fatalf("apply: %d %s", code, body)
	}
	// B's version is enforced, so B's flows raise compliance alerts.
	if code, body := rbacCall(t, s, "", "POST", "/api/v1/scopes/scope-b/versions/v1/enforce", "{}"); code != 200 {
		t.Fatalf("enforce B: %d %s", code, body)
	}
	now := time.Now().UTC()
	obs := func(seq uint64, src, dst string) flow.Observation {
		return flow.Observation{Agent: "n1", Seq: seq, Mode: flow.DetailedMode,
			Point: flow.ObservationPoint{Node: "n1", Interface: "eth0", Kind: "node"},
			Tuple: flow.Tuple{Proto: "tcp", SrcIP: src, DstIP: dst, SrcPort: uint16(40000 + seq), DstPort: 80},
			Start: now, End: now.Add(time.Second), FwdPackets: 3, FwdBytes: 300, RevPackets: 2, RevBytes: 200,
			Flags: []string{flow.FlagSYN, flow.FlagSYNACK}, Conns: 1, NewConns: 1}
	}
	batch, _ := json.Marshal(flow.Batch{Agent: "n1", Node: "n1", Observations: []flow.Observation{
		obs(1, "10.244.91.1", "10.244.91.2"), // within A
		obs(2, "10.244.91.1", "10.244.92.1"), // A → B: A sees it
		obs(3, "10.244.92.1", "10.244.92.2"), // within B (denied by b-intent: an alert)
		obs(4, "203.0.113.5", "10.244.92.2"), // outside → B
	}})
	if code, body := rbacCall(t, s, s.AgentToken(), "POST", "/api/v1/agents/n1/flows", string(batch)); code != 200 {
		t.Fatalf("flows: %d %s", code, body)
	}
	var flows api.FlowList
	waitFor(t, time.Minute, "the four flows stored", func() bool {
		flows, _ = admin.SearchFlows(ctx, client.FlowQuery{})
		return len(flows.Flows) == 4
	})
	bOnlyFlow := ""
	for _, f := range flows.Flows {
		if f.Src.IP == "203.0.113.5" {
			bOnlyFlow = f.ID
		}
	}
	var findings struct {
		Items []struct {
			Workloads []string `json:"workloads"`
		} `json:"items"`
	}
	waitFor(t, 2*time.Minute, "findings on the image of a1 and bonly", func() bool {
		rbacGet(t, s, "", "/api/v1/vulnerabilities", &findings)
		return len(findings.Items) > 0 && len(findings.Items[0].Workloads) == 2
	})
	var alerts []map[string]any
	waitFor(t, time.Minute, "a compliance alert of B", func() bool {
		rbacGet(t, s, "", "/api/v1/compliance/alerts?all=true", &alerts)
		return len(alerts) > 0
	})
	var job DiscoveryJob
	if code := rbacGet(t, s, "", "/api/v1/analysis?scope=scope-b&since=1h", nil); code != 200 {
		t.Fatalf("admin analysis of B: %d", code)
	}
	resp := do(t, s, "", "POST", "/api/v1/scopes/scope-b/discover", `{"since":"1h"}`)
	json.NewDecoder(resp.Body).Decode(&job) //nolint:errcheck
	resp.Body.Close()
	var images []map[string]any
	rbacGet(t, s, "", "/api/v1/images", &images)
	digest := ""
	for _, im := range images {
		if d, _ := im["digest"].(string); d != "" {
			digest = d
		}
	}
	// The admin sees B's objects: the markers are meaningful.
	for _, path := range []string{"/api/v1/inventory", "/api/v1/flows", "/api/v1/vulnerabilities", "/api/v1/scopes", "/api/v1/compliance/alerts?all=true"} {
		_, body := rbacCall(t, s, "", "GET", path, "")
		if !strings.Contains(body, "bonly") && !strings.Contains(body, "10.244.92.2") && !strings.Contains(body, "scope-b") {
			t.Fatalf("the admin does not see B in %s: %s", path, body)
		}
	}

	token := func(name, role, scope string) string {
		t.Helper()
		tok, err := admin.CreateTokenFor(ctx, api.TokenRequest{Name: name, Role: role, Scope: scope})
		if err != nil {
			t.Fatal(err)
		}
		if tok.Scope != "scope-a" {
			t.Fatalf("token scope %q", tok.Scope)
		}
		return tok.Secret
	}
	viewer := token("viewer-a", "viewer", "scope-a")
	owner := token("owner-a", "owner", "scope-a")
	operator := token("operator-a", "operator", "scope-a")
	for _, bad := range []api.TokenRequest{
		{Name: "x1", Role: "viewer", Scope: "nope"},
		{Name: "x2", Role: "viewer", Scope: "scope-b:scope-a"},
		{Name: "x3", Role: "admin", Scope: "scope-a"},
		{Name: "x4", Role: "metrics-reader", Scope: "scope-a"},
	} {
		if _, err := admin.CreateTokenFor(ctx, bad); err == nil || !strings.Contains(err.Error(), "400") {
			t.Errorf("token %+v: %v, want 400", bad, err)
		}
	}
	if _, err := admin.CreateTokenFor(ctx, api.TokenRequest{Name: "path", Role: "viewer", Scope: "scope-a:scope-a-child"}); err != nil {
		t.Errorf("a scope by its path: %v", err)
	}

	t.Run("viewer walks the route table", func(t *testing.T) {
		for _, rt := range s.Routes() {
			if rt.Perm == auth.Public {
				continue
			}
			path := rbacPath(rt, bOnlyFlow, job.ID, digest)
			code, body := rbacCall(t, s, viewer, rt.Method, path, rbacBodyFor(rt))
			if rt.Method != "GET" {
				if code != http.StatusForbidden {
					t.Errorf("%s as viewer of A: %d %s, want 403", rt, code, body)
				}
				continue
			}
			roleMay := auth.Viewer.Allows(rt.Perm) && rt.Scope.Kind != httpapi.ScopeServerWide
			if !roleMay {
				if code != http.StatusForbidden {
					t.Errorf("%s as viewer of A: %d, want 403", rt, code)
				}
				continue
			}
			if code == http.StatusForbidden || code == http.StatusUnauthorized {
				t.Errorf("%s as viewer of A: %d %s", rt, code, body)
			}
			if code == http.StatusOK {
				for _, m := range rbacMarkers {
					if strings.Contains(body, m) {
						t.Errorf("%s as viewer of A shows %q (an object of B): %.600s", rt, m, body)
					}
				}
			}
		}
	})

	t.Run("viewer sees A", func(t *testing.T) {
		var got api.InventoryList
		rbacGet(t, s, viewer, "/api/v1/inventory?filter="+url.QueryEscape("kind = pod and namespace in (rbac-a, rbac-b)"), &got)
		if got.Count != 2 || got.Items[0].Name != "a1" || got.Items[1].Name != "a2" {
			t.Errorf("inventory: %+v", got)
		}
		if code := rbacGet(t, s, viewer, "/api/v1/inventory/lab/pod/rbac-b/b1", nil); code != 404 {
			t.Errorf("B's workload by ID: %d, want 404", code)
		}
		if code := rbacGet(t, s, viewer, "/api/v1/inventory/lab/pod/rbac-a/a1", nil); code != 200 {
			t.Errorf("A's workload by ID: %d", code)
		}
		if code := rbacGet(t, s, viewer, "/api/v1/inventory/lookup?ip=10.244.92.1", nil); code != 404 {
			t.Errorf("lookup of B's address: %d, want 404", code)
		}
		if code := rbacGet(t, s, viewer, "/api/v1/inventory/lookup?ip=10.244.91.1", nil); code != 200 {
			t.Errorf("lookup of A's address: %d", code)
		}
		var fl api.FlowList
		rbacGet(t, s, viewer, "/api/v1/flows?limit=1", &fl)
		if len(fl.Flows) != 1 {
			t.Errorf("flows, limit 1: %d", len(fl.Flows))
		}
		rbacGet(t, s, viewer, "/api/v1/flows", &fl)
		if len(fl.Flows) != 2 {
			t.Errorf("flows: %d, want a1→a2 and a1→b1", len(fl.Flows))
		}
		for _, f := range fl.Flows {
			if f.Src.IP != "10.244.91.1" {
				t.Errorf("flow %s → %s", f.Src.IP, f.Dst.IP)
			}
		}
		var top api.TopList
		rbacGet(t, s, viewer, "/api/v1/flows/top?by=dst.namespace", &top)
		if len(top.Entries) != 2 {
			t.Errorf("top: %+v", top)
		}
		rbacGet(t, s, viewer, "/api/v1/vulnerabilities", &findings)
		if len(findings.Items) == 0 {
			t.Error("no findings of A's image")
		}
		for _, f := range findings.Items {
			if len(f.Workloads) != 1 || f.Workloads[0] != "lab/pod/rbac-a/a1" {
				t.Errorf("finding workloads %v", f.Workloads)
			}
		}
		var scopes []ScopeView
		rbacGet(t, s, viewer, "/api/v1/scopes", &scopes)
		if len(scopes) != 2 || scopes[0].Name != "scope-a" || scopes[1].Name != "scope-a-child" {
			t.Errorf("scopes: %+v", scopes)
		}
		if code := rbacGet(t, s, viewer, "/api/v1/analysis?since=1h", nil); code != 403 {
			t.Errorf("analysis without a scope: %d, want 403", code)
		}
		if code := rbacGet(t, s, viewer, "/api/v1/analysis?scope=scope-b&since=1h", nil); code != 403 {
			t.Errorf("analysis of B: %d, want 403", code)
		}
		if code := rbacGet(t, s, viewer, "/api/v1/scopes/scope-b/policies", nil); code != 403 {
			t.Errorf("B's policies: %d, want 403", code)
		}
		if code := rbacGet(t, s, viewer, "/api/v1/flows/"+bOnlyFlow, nil); code != 404 {
			t.Errorf("B's flow by ID: %d, want 404", code)
		}
		if code := rbacGet(t, s, viewer, "/api/v1/discovery/"+job.ID, nil); code != 404 {
			t.Errorf("B's discovery job: %d, want 404", code)
		}
		var who api.Whoami
		rbacGet(t, s, viewer, "/api/v1/whoami", &who)
		if who.Scope != "scope-a" || who.Role != "viewer" {
			t.Errorf("whoami: %+v", who)
		}
	})

	t.Run("viewer follows A's flows only", func(t *testing.T) {
		fctx, stop := context.WithTimeout(ctx, time.Minute)
		defer stop()
		got := make(chan api.Flow, 16)
		done := make(chan error, 1)
		go func() {
			done <- s.Client(viewer).FollowFlows(fctx, "", func(f *api.Flow) error {
				got <- *f
				return nil
			})
		}()
		time.Sleep(time.Second) // the stream is open
		later := time.Now().UTC()
		mk := func(seq uint64, src, dst string) flow.Observation {
			o := obs(seq, src, dst)
			o.Start, o.End = later, later.Add(time.Second)
			return o
		}
		b, _ := json.Marshal(flow.Batch{Agent: "n1", Node: "n1", Observations: []flow.Observation{
			mk(10, "10.244.92.1", "10.244.92.2"), mk(11, "203.0.113.5", "10.244.92.2"), mk(12, "10.244.91.1", "10.244.91.2")}})
		if code, body := rbacCall(t, s, s.AgentToken(), "POST", "/api/v1/agents/n1/flows", string(b)); code != 200 {
			t.Fatalf("flows: %d %s", code, body)
		}
		// A's flow comes; B's two, sent before it, never do.
		for {
			select {
			case f := <-got:
				if f.Src.IP != "10.244.91.1" {
					t.Fatalf("the viewer of A follows a flow %s → %s", f.Src.IP, f.Dst.IP)
				}
				if f.Start.Equal(later) {
					return
				}
			case err := <-done:
				t.Fatalf("follow ended: %v", err)
			case <-fctx.Done():
				t.Fatal("A's new flow never came")
			}
		}
	})

	t.Run("owner edits below its scope", func(t *testing.T) {
		for _, c := range []struct {
			what, method, path, body string
			want                     int
		}{
			{"a policy of A", "POST", "/api/v1/scopes/scope-a/policies", `{"name":"more","consumer":"any","provider":"label.app = \"a2\"","action":"ALLOW","ports":["tcp/8080"]}`, 200},
			{"a policy of A's child", "POST", "/api/v1/scopes/scope-a-child/policies", `{"name":"c","consumer":"any","provider":"any","action":"ALLOW","ports":["tcp/81"]}`, 200},
			{"a policy of B", "POST", "/api/v1/scopes/scope-b/policies", `{"name":"x","consumer":"any","provider":"any","action":"ALLOW","ports":["tcp/81"]}`, 403},
			{"A's child redefined", "POST", "/api/v1/policy/apply", applyBody("kind: Scope\nname: scope-a-child\nparent: scope-a\nfilter: label.app in (a1, a2)\n"), 200},
			{"a new child of A", "POST", "/api/v1/scopes", `{"name":"scope-a-new","parent":"scope-a","filter":"label.app = \"a1\""}`, 200},
			{"A itself widened", "POST", "/api/v1/policy/apply", applyBody("kind: Scope\nname: scope-a\nfilter: cluster = \"lab\"\n"), 403},
			{"B's child created", "POST", "/api/v1/scopes", `{"name":"scope-b-new","parent":"scope-b","filter":"label.app = \"b1\""}`, 403},
			{"a top scope created", "POST", "/api/v1/scopes", `{"name":"scope-top","filter":"cluster = \"lab\""}`, 403},
			{"A's child moved under B", "POST", "/api/v1/policy/apply", applyBody("kind: Scope\nname: scope-a-new\nparent: scope-b\nfilter: label.app = \"b1\"\n"), 403},
			{"B's intent in a mixed apply", "POST", "/api/v1/policy/apply", applyBody("kind: Policy\nscope: scope-a\nname: ok\nconsumer: any\nprovider: any\naction: ALLOW\nports: [\"tcp/82\"]\n---\nkind: Policy\nscope: scope-b\nname: sneaky\nconsumer: any\nprovider: any\naction: ALLOW\nports: [\"tcp/82\"]\n"), 403},
			{"a saved filter of A", "POST", "/api/v1/filters", `{"name":"f","filter":"kind = pod"}`, 201},
			{"a saved filter of B", "POST", "/api/v1/filters", `{"name":"fb","filter":"kind = pod","scope":"scope-b"}`, 403},
			{"B deleted", "DELETE", "/api/v1/scopes/scope-b", "", 403},
			{"A deleted", "DELETE", "/api/v1/scopes/scope-a", "", 403},
			{"A's new child deleted", "DELETE", "/api/v1/scopes/scope-a-new", "", 200},
			{"a token", "POST", "/api/v1/tokens", `{"name":"mine","role":"viewer"}`, 403},
			{"B enforced", "POST", "/api/v1/enforcement/scopes/scope-b", `{"mode":"analyze"}`, 403},
		} {
			if code, body := rbacCall(t, s, owner, c.method, c.path, c.body); code != c.want {
				t.Errorf("owner of A, %s: %d %s, want %d", c.what, code, body, c.want)
			}
		}
		// Nothing of B changed.
		if v, err := s.policy.repo.Version("scope-b", ""); err != nil || len(v.Policies) != 1 {
			t.Errorf("B's newest version: %+v %v", v, err)
		}
		if _, ok := s.policy.repo.Scope("scope-b-new"); ok {
			t.Error("the owner of A created a child of B")
		}
	})

	t.Run("operator operates its scope", func(t *testing.T) {
		for _, c := range []struct {
			what, method, path, body string
			want                     int
		}{
			{"A's policies edited", "POST", "/api/v1/scopes/scope-a/policies", `{"name":"op","consumer":"any","provider":"any","action":"ALLOW","ports":["tcp/83"]}`, 403},
			{"A analyzed", "GET", "/api/v1/analysis?scope=scope-a&since=1h", "", 200},
			{"A back to analyze mode", "POST", "/api/v1/enforcement/scopes/scope-a", `{"mode":"analyze"}`, 200},
			{"B back to analyze mode", "POST", "/api/v1/enforcement/scopes/scope-b", `{"mode":"analyze"}`, 403},
			{"A discovered", "POST", "/api/v1/scopes/scope-a/discover", `{"since":"1h"}`, 202},
			{"A discovered as a version", "POST", "/api/v1/scopes/scope-a/discover", `{"since":"1h","asVersion":true}`, 403},
			{"B discovered", "POST", "/api/v1/scopes/scope-b/discover", `{"since":"1h"}`, 403},
			{"B's alert acknowledged", "POST", "/api/v1/compliance/alerts/" + fmt.Sprint(alerts[0]["id"]) + "/ack", "{}", 404},
			{"an agent's mode", "PUT", "/api/v1/agents/n1/config", `{"mode":"detailed"}`, 403},
		} {
			if code, body := rbacCall(t, s, operator, c.method, c.path, c.body); code != c.want {
				t.Errorf("operator of A, %s: %d %s, want %d", c.what, code, body, c.want)
			}
		}
	})
}

// rbacPod runs a pod with an address (the status a kubelet would write).
func rbacPod(t *testing.T, ns, name, ip, image string) { rbacPodOn(t, ns, name, ip, image, "") }

// rbacPodOn is rbacPod on a node ("": none).
func rbacPodOn(t *testing.T, ns, name, ip, image, node string) {
	t.Helper()
	ctx := context.Background()
	cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}) //nolint:errcheck // exists
	cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{})                                                           //nolint:errcheck // a previous run's
	var p *corev1.Pod
	var err error
	waitFor(t, 30*time.Second, "pod "+name+" created", func() bool {
		p, err = cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
			Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: image}}},
		}, metav1.CreateOptions{})
		return err == nil
	})
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}
	if _, err := cs.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		zero := int64(0)
		cs.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero}) //nolint:errcheck
	})
}

// rbacPath fills a route's wildcards with objects of A where a read of
// one exists, and of B where only B has one (a flow, a discovery job).
func rbacPath(rt Route, bFlow, bJob, digest string) string {
	path := wildcard.ReplaceAllStringFunc(rt.Pattern, func(w string) string {
		switch w {
		case "{id...}":
			return "lab/pod/rbac-a/a1"
		case "{name}", "{scope}":
			if strings.HasPrefix(rt.Pattern, "/api/v1/scopes/") || strings.HasPrefix(rt.Pattern, "/api/v1/enforcement/") {
				return "scope-a"
			}
			return "x"
		case "{version}":
			return "v1"
		case "{ref}":
			return "0"
		case "{node}":
			return "n1"
		case "{digest}":
			return digest
		case "{id}":
			switch {
			case strings.HasPrefix(rt.Pattern, "/api/v1/flows/"):
				return bFlow
			case strings.HasPrefix(rt.Pattern, "/api/v1/discovery/"):
				return bJob
			}
		}
		return "x"
	})
	q := url.Values{"since": {"1h"}, "all": {"true"}, "include_deleted": {"true"}}
	switch {
	case strings.HasSuffix(rt.Pattern, "/diff"):
		q.Set("to", "v1")
	case strings.HasPrefix(rt.Pattern, "/api/v1/analysis"):
		q.Set("scope", "scope-a")
	case rt.Pattern == "/api/v1/flows/top":
		q.Set("by", "dst.namespace")
	}
	return path + "?" + q.Encode()
}

// rbacBodyFor is a write's body: valid where it matters (an apply of a B
// object must be refused for its scope, not its syntax).
func rbacBodyFor(rt Route) string {
	switch rt.Method {
	case "GET", "DELETE":
		return ""
	}
	if rt.Pattern == "/api/v1/policy/apply" || rt.Pattern == "/api/v1/policy/delete" {
		return applyBody("kind: Policy\nscope: scope-b\nname: b-intent\nconsumer: any\nprovider: any\naction: ALLOW\nports: [\"tcp/80\"]\n")
	}
	return "{}"
}

func applyBody(yaml string) string {
	b, _ := json.Marshal(ApplyRequest{Files: []ApplyFile{{Name: "rbac.yaml", Content: yaml}}})
	return string(b)
}

// rbacCall sends a request as token ("" admin) and returns its status and
// body (streams are read for a moment).
func rbacCall(t testing.TB, s *Server, token, method, path, body string) (int, string) {
	t.Helper()
	wait := time.Minute
	if strings.Contains(path, "/follow") {
		wait = 2 * time.Second // a stream: what comes within a moment
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.URL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token == "" {
		token = s.AdminToken()
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := rbacClient(s).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body) // a stream ends with the context
	return resp.StatusCode, string(b)
}

// rbacClients keep one HTTP client (one connection pool) per server:
// Server.HTTPClient makes a new one each call.
var rbacClients sync.Map

func rbacClient(s *Server) *http.Client {
	c, _ := rbacClients.LoadOrStore(s, s.HTTPClient())
	return c.(*http.Client)
}

func rbacGet(t *testing.T, s *Server, token, path string, out any) int {
	t.Helper()
	code, body := rbacCall(t, s, token, "GET", path, "")
	if out != nil && code == 200 {
		if err := json.Unmarshal([]byte(body), out); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, body)
		}
	}
	return code
}

// TestRoutesDeclareScoping: every route a person can call says how it
// honours a caller bound to a scope (httpapi.Scoping); admin-only, agent,
// metrics and public routes need not. A new route that does not is refused
// to scoped callers by the guard, and fails here.
func TestRoutesDeclareScoping(t *testing.T) {
	s, err := Start(context.Background(), Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	for _, rt := range s.Routes() {
		exempt := rt.Perm == auth.Public || rt.Perm.Area() == "admin" || rt.Perm == auth.AgentReport || rt.Perm == auth.MetricsScrape
		if !exempt && rt.Scope.Kind == httpapi.ScopeUndeclared {
			t.Errorf("%s (%s) does not declare its scoping (Route.Scope)", rt, rt.Perm)
		}
		if (rt.Scope.Kind == httpapi.ScopeNamed || rt.Scope.Kind == httpapi.ScopeChild) && rt.Scope.Param == "" {
			t.Errorf("%s: a named scope without its parameter", rt)
		}
		if rt.Scope.Kind == httpapi.ScopeGlobal && rt.Perm.Verb() != "read" && rt.Method == "GET" {
			t.Errorf("%s: a global GET with permission %s", rt, rt.Perm)
		}
	}
}
