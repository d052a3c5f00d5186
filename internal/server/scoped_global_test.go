package server

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/store"
	"github.com/palisade-dev/palisade/pkg/api"
	"github.com/palisade-dev/palisade/pkg/client"
)

// globalPolicy: scope A (namespace glob-a) with a child, scope B (glob-b).
const globalPolicy = `kind: Scope
name: gscope-a
filter: cluster = "lab" and namespace = "glob-a"
---
kind: Scope
name: gscope-a-child
parent: gscope-a
filter: label.app = "ga2"
---
kind: Scope
name: gscope-b
filter: cluster = "lab" and namespace = "glob-b"
`

// TestScopedGlobalObjects: what used to be global reads (the status, the
// agent list, saved filters, the filter schema) show a caller bound to a
// scope only what that scope makes visible, against a running server
// with a real API server: pods of A and B on nodes of their own, agents
// of those nodes and of a third, saved filters of A, of B, global ones and
// one stored before filters had owners. The admin still sees everything.
func TestScopedGlobalObjects(t *testing.T) {
	ctx := context.Background()
	s, err := Start(ctx, Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", Clusters: []Cluster{{Name: "lab", Config: kube.Config}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	for _, p := range []struct{ ns, name, ip, node string }{
		{"glob-a", "ga1", "10.244.81.1", "gnode-a"},
		{"glob-a", "ga2", "10.244.81.2", "gnode-a"},
		{"glob-b", "gb1", "10.244.82.1", "gnode-b"},
	} {
		rbacPodOn(t, p.ns, p.name, p.ip, "busybox", p.node)
	}
	admin := s.Client("")
	waitFor(t, time.Minute, "the three pods with their addresses", func() bool {
		inv, _ := admin.SearchInventory(ctx, `namespace in (glob-a, glob-b) and ip exists`, client.SearchOptions{})
		return inv.Count == 3
	})
	if code, body := rbacCall(t, s, "", "POST", "/api/v1/policy/apply", applyBody(globalPolicy)); code != 200 {
		t.Fatalf("apply: %d %s", code, body)
	}
	for _, node := range []string{"gnode-a", "gnode-b", "gnode-c"} {
		if code, body := rbacCall(t, s, s.AgentToken(), "POST", "/api/v1/agents/"+node+"/heartbeat", `{"agent":"agent-`+node+`"}`); code != 200 {
			t.Fatalf("heartbeat of %s: %d %s", node, code, body)
		}
	}
	// Saved filters: a global one (the admin's), one B owns, and one
	// stored before filters had owners (no scope field at all).
	for _, body := range []string{
		`{"name":"everyone","filter":"namespace in (glob-a, glob-b)"}`,
		`{"name":"b-team","filter":"namespace = \"glob-b\"","scope":"gscope-b"}`,
	} {
		if code, resp := rbacCall(t, s, "", "POST", "/api/v1/filters", body); code != 201 {
			t.Fatalf("admin saves %s: %d %s", body, code, resp)
		}
	}
	if err := s.kv.Update(func(tx store.Tx) error {
		return tx.Put(bucketFilters, "old", []byte(`{"name":"old","filter":"namespace = \"glob-b\"","created":"2026-01-02T03:04:05Z"}`))
	}); err != nil {
		t.Fatal(err)
	}
	token := func(name, role, scope string) string {
		t.Helper()
		tok, err := admin.CreateTokenFor(ctx, api.TokenRequest{Name: name, Role: role, Scope: scope})
		if err != nil {
			t.Fatal(err)
		}
		return tok.Secret
	}
	viewer := token("g-viewer-a", "viewer", "gscope-a")
	operator := token("g-operator-a", "operator", "gscope-a")
	owner := token("g-owner-a", "owner", "gscope-a")
	ownerB := token("g-owner-b", "owner", "gscope-b")
	// markers of B and of the whole inventory: no answer to A may hold one.
	bMarkers := []string{"glob-b", "gb1", "gnode-b", "gnode-c", "10.244.82.1", "b-team", "everyone", `"old"`}

	t.Run("status", func(t *testing.T) {
		var all, a api.Status
		rbacGet(t, s, "", "/api/v1/status", &all)
		code, body := rbacCall(t, s, viewer, "GET", "/api/v1/status", "")
		if code != 200 {
			t.Fatalf("viewer's status: %d %s", code, body)
		}
		json.Unmarshal([]byte(body), &a) //nolint:errcheck // checked below
		var inv api.InventoryList
		rbacGet(t, s, viewer, "/api/v1/inventory", &inv)
		if a.Scope != "gscope-a" || a.Workloads != inv.Count || a.Workloads < 2 || a.Workloads >= all.Workloads {
			t.Errorf("viewer of A: scope %q, %d workloads (its inventory: %d, everyone's: %d)", a.Scope, a.Workloads, inv.Count, all.Workloads)
		}
		if a.FlowStore != nil || a.Scanner != nil || strings.Contains(body, "flowStore") {
			t.Errorf("viewer of A sees the whole flow store or scanner: %s", body)
		}
		if len(a.Connectors) != 1 || a.Connectors[0].Cluster != "lab" || a.Connectors[0].State == "" || a.Connectors[0].Server != "" {
			t.Errorf("viewer of A's connectors: %+v", a.Connectors)
		}
		if all.Scope != "" || all.FlowStore == nil || all.Workloads != s.Inventory.Len() || all.Connectors[0].Server == "" {
			t.Errorf("admin's status: %+v", all)
		}
	})

	t.Run("agents", func(t *testing.T) {
		nodes := func(token string) []string {
			var l api.AgentList
			if code := rbacGet(t, s, token, "/api/v1/agents", &l); code != 200 {
				t.Fatalf("agents: %d", code)
			}
			var out []string
			for _, a := range l.Agents {
				out = append(out, a.Node)
			}
			return out
		}
		if got := strings.Join(nodes(viewer), ","); got != "gnode-a" {
			t.Errorf("viewer of A's agents: %s, want gnode-a (it runs ga1 and ga2)", got)
		}
		if got := strings.Join(nodes(ownerB), ","); got != "gnode-b" {
			t.Errorf("owner of B's agents: %s, want gnode-b", got)
		}
		if got := strings.Join(nodes(""), ","); got != "gnode-a,gnode-b,gnode-c" {
			t.Errorf("admin's agents: %s", got)
		}
		for _, c := range []struct {
			token, node string
			want        int
		}{{viewer, "gnode-a", 200}, {viewer, "gnode-b", 404}, {viewer, "gnode-c", 404}, {"", "gnode-c", 200}} {
			if code := rbacGet(t, s, c.token, "/api/v1/agents/"+c.node+"/config", nil); code != c.want {
				t.Errorf("config of %s: %d, want %d", c.node, code, c.want)
			}
		}
	})

	t.Run("saved filters", func(t *testing.T) {
		for _, c := range []struct {
			who, token, method, path, body string
			want                           int
		}{
			{"viewer of A saves", viewer, "POST", "/api/v1/filters", `{"name":"v","filter":"kind = pod"}`, 403},
			{"operator of A saves", operator, "POST", "/api/v1/filters", `{"name":"o","filter":"kind = pod"}`, 403},
			{"owner of A saves", owner, "POST", "/api/v1/filters", `{"name":"a-web","filter":"label.app = \"ga1\""}`, 201},
			{"owner of A saves for its child", owner, "POST", "/api/v1/filters", `{"name":"a-child","filter":"label.app = \"ga2\"","scope":"gscope-a-child"}`, 201},
			{"owner of A saves for B", owner, "POST", "/api/v1/filters", `{"name":"sneaky","filter":"kind = pod","scope":"gscope-b"}`, 403},
			{"owner of A replaces B's", owner, "POST", "/api/v1/filters", `{"name":"b-team","filter":"kind = pod"}`, 409},
			{"owner of A replaces a global one", owner, "POST", "/api/v1/filters", `{"name":"everyone","filter":"kind = pod"}`, 409},
			{"owner of A replaces an old one", owner, "POST", "/api/v1/filters", `{"name":"old","filter":"kind = pod"}`, 409},
			{"owner of B replaces A's", ownerB, "POST", "/api/v1/filters", `{"name":"a-web","filter":"kind = pod"}`, 409},
			{"viewer of A reads A's", viewer, "GET", "/api/v1/filters/a-web", "", 200},
			{"viewer of A reads its child's", viewer, "GET", "/api/v1/filters/a-child", "", 200},
			{"viewer of A reads B's", viewer, "GET", "/api/v1/filters/b-team", "", 404},
			{"viewer of A reads a global one", viewer, "GET", "/api/v1/filters/everyone", "", 404},
			{"viewer of A reads an old one", viewer, "GET", "/api/v1/filters/old", "", 404},
			{"viewer of A searches with B's", viewer, "GET", "/api/v1/inventory?saved=b-team", "", 404},
			{"viewer of A deletes A's", viewer, "DELETE", "/api/v1/filters/a-web", "", 403},
			{"owner of A deletes B's", owner, "DELETE", "/api/v1/filters/b-team", "", 404},
			{"owner of A deletes an old one", owner, "DELETE", "/api/v1/filters/old", "", 404},
			{"admin reads the old one", "", "GET", "/api/v1/filters/old", "", 200},
		} {
			if code, body := rbacCall(t, s, c.token, c.method, c.path, c.body); code != c.want {
				t.Errorf("%s: %d %s, want %d", c.who, code, body, c.want)
			}
		}
		var sf api.SavedFilter
		if rbacGet(t, s, owner, "/api/v1/filters/a-web", &sf); sf.Scope != "gscope-a" || sf.Filter != `label.app = "ga1"` {
			t.Errorf("A's filter: %+v", sf)
		}
		var inv api.InventoryList
		if rbacGet(t, s, viewer, "/api/v1/inventory?saved=a-web", &inv); inv.Count != 1 || inv.Items[0].Name != "ga1" {
			t.Errorf("viewer of A searches with A's filter: %+v", inv)
		}
		names := func(token string) string {
			var l []api.SavedFilter
			if code := rbacGet(t, s, token, "/api/v1/filters", &l); code != 200 {
				t.Fatalf("filters: %d", code)
			}
			var out []string
			for _, f := range l {
				out = append(out, f.Name+"@"+f.Scope)
			}
			return strings.Join(out, ",")
		}
		if got := names(viewer); got != "a-child@gscope-a-child,a-web@gscope-a" {
			t.Errorf("viewer of A lists %s", got)
		}
		if got := names(ownerB); got != "b-team@gscope-b" {
			t.Errorf("owner of B lists %s", got)
		}
		if got := names(""); got != "a-child@gscope-a-child,a-web@gscope-a,b-team@gscope-b,everyone@,old@" {
			t.Errorf("admin lists %s", got)
		}
		// The old filter is global: the admin changes it, and it stays global.
		code, body := rbacCall(t, s, "", "POST", "/api/v1/filters", `{"name":"old","filter":"namespace = \"glob-a\""}`)
		var old api.SavedFilter
		json.Unmarshal([]byte(body), &old) //nolint:errcheck // checked below
		if code != 201 || old.Name != "old" || old.Scope != "" || old.Filter != `namespace = "glob-a"` {
			t.Errorf("admin replaces the old filter: %d %s", code, body)
		}
		if code, body := rbacCall(t, s, owner, "DELETE", "/api/v1/filters/a-web", ""); code != 204 {
			t.Errorf("owner of A deletes A's filter: %d %s", code, body)
		}
		if got := names(viewer); got != "a-child@gscope-a-child" {
			t.Errorf("after the delete, viewer of A lists %s", got)
		}
	})

	t.Run("schema", func(t *testing.T) {
		code, scoped := rbacCall(t, s, viewer, "GET", "/api/v1/schema", "")
		_, all := rbacCall(t, s, "", "GET", "/api/v1/schema", "")
		if code != 200 || scoped != all {
			t.Fatalf("viewer of A's schema (%d) differs from the admin's: it names fields only, nothing of the inventory:\n%s\n%s", code, scoped, all)
		}
		for _, m := range append(bMarkers, "glob-a", "ga1") {
			if strings.Contains(scoped, m) {
				t.Errorf("the schema names %q, an inventory value", m)
			}
		}
	})

	t.Run("no B in these reads", func(t *testing.T) {
		for _, path := range []string{"/api/v1/status", "/api/v1/agents", "/api/v1/agents/gnode-a/config", "/api/v1/filters", "/api/v1/schema",
			"/api/v1/inventory?saved=a-child", "/api/v1/filters/a-child"} {
			code, body := rbacCall(t, s, viewer, "GET", path, "")
			if code != 200 {
				t.Errorf("%s: %d %s", path, code, body)
			}
			for _, m := range bMarkers {
				if strings.Contains(body, m) {
					t.Errorf("%s as viewer of A shows %q: %.400s", path, m, body)
				}
			}
		}
		// The admin sees B in the same reads.
		for _, path := range []string{"/api/v1/agents", "/api/v1/filters"} {
			if _, body := rbacCall(t, s, "", "GET", path, ""); !strings.Contains(body, "gnode-b") && !strings.Contains(body, "b-team") {
				t.Errorf("the admin does not see B in %s: %s", path, body)
			}
		}
	})

	t.Run("server-wide ingest counters", func(t *testing.T) {
		if code, body := rbacCall(t, s, viewer, "GET", "/api/v1/flows/metrics", ""); code != 403 || !strings.Contains(body, "bound to no scope") {
			t.Errorf("viewer of A reads the flow ingest counters: %d %s, want 403", code, body)
		}
		if code, body := rbacCall(t, s, "", "GET", "/api/v1/flows/metrics", ""); code != 200 || !strings.Contains(body, "batches") {
			t.Errorf("admin reads the flow ingest counters: %d %s", code, body)
		}
	})

	t.Run("discovery pins", func(t *testing.T) {
		pins := func(scope string) string {
			ps, err := s.discoveryPins(scope)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, p := range ps {
				out = append(out, p.Name)
			}
			return strings.Join(out, ",")
		}
		if got := pins("gscope-a"); got != "a-child,everyone,old" {
			t.Errorf("pins of a discovery of A: %s (never B's)", got)
		}
		if got := pins("gscope-a-child"); got != "a-child,everyone,old" {
			t.Errorf("pins of a discovery of A's child: %s", got)
		}
		if got := pins("gscope-b"); got != "b-team,everyone,old" {
			t.Errorf("pins of a discovery of B: %s", got)
		}
	})
}
