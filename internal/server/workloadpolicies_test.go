package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/pkg/api"
)

// TestWorkloadPolicies: the intents of a workload's scopes that select it,
// on which side, and none of another scope's.
func TestWorkloadPolicies(t *testing.T) {
	s, err := Start(context.Background(), Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	now := time.Now()
	carts := inventory.Workload{ID: "c1/pod/shop/carts-1", Cluster: "c1", Kind: inventory.KindPod, Namespace: "shop", Name: "carts-1",
		IPs: []string{"10.1.0.5"}, Labels: map[string]string{"app": "carts", "tier": "api"}, Phase: "Running", Created: now}
	svc := inventory.Workload{ID: "c1/service/shop/carts", Cluster: "c1", Kind: inventory.KindService, Namespace: "shop", Name: "carts",
		Selector: map[string]string{"app": "carts"}, Created: now}
	s.Inventory.Apply(carts)
	s.Inventory.Apply(svc)
	for _, c := range []struct{ path, body string }{
		{"/api/v1/scopes", `{"name":"shop","filter":"namespace = shop"}`},
		{"/api/v1/scopes", `{"name":"shop-api","parent":"shop","filter":"label.tier = api"}`},
		{"/api/v1/scopes", `{"name":"other","filter":"namespace = other"}`},
		{"/api/v1/scopes/shop/versions", `{"version":"v1","policies":[
			{"consumer":"label.app = front-end","provider":"label.app = carts","action":"ALLOW","ports":["tcp/80"]},
			{"consumer":"label.app = orders","provider":"label.app = payment","action":"ALLOW"}]}`},
		{"/api/v1/scopes/shop-api/versions", `{"version":"v1","policies":[
			{"consumer":"label.app = carts","provider":"cidr:203.0.113.0/24","action":"ALLOW","ports":["tcp/443"]},
			{"consumer":"any","provider":"service:shop/carts","action":"ALLOW","ports":["tcp/80"]},
			{"consumer":"scope:shop","provider":"scope:shop-api","action":"DENY","ports":["tcp/22"]},
			{"consumer":"cidr:10.1.0.0/16","provider":"label.app = db","action":"ALLOW"}]}`},
		{"/api/v1/scopes/other/versions", `{"version":"v1","policies":[{"consumer":"any","provider":"any","action":"ALLOW"}]}`},
	} {
		if got := status(t, s, "", "POST", c.path, c.body); got != http.StatusOK {
			t.Fatalf("POST %s %s: %d", c.path, c.body, got)
		}
	}
	var got WorkloadPolicies
	if code := get(t, s, "/api/v1/workload-policies?id="+url.QueryEscape(carts.ID), &got); code != http.StatusOK {
		t.Fatalf("GET: %d", code)
	}
	if want := []string{"shop", "shop-api"}; len(got.Scopes) != 2 || got.Scopes[0] != want[0] || got.Scopes[1] != want[1] {
		t.Errorf("scopes %v, want %v", got.Scopes, want)
	}
	want := map[string]string{ // rule → side (via)
		"shop@v1#0":     "provider",
		"shop-api@v1#0": "consumer",
		"shop-api@v1#1": "both (service shop/carts)", // consumer any
		"shop-api@v1#2": "both",
		"shop-api@v1#3": "consumer",
	}
	have := map[string]string{}
	for _, p := range got.Policies {
		side := p.Side
		if p.Via != "" {
			side += " (" + p.Via + ")"
		}
		have[p.Rule] = side
		if p.Scope == "other" {
			t.Errorf("an intent of a scope the workload is not in: %+v", p)
		}
	}
	for rule, side := range want {
		if have[rule] != side {
			t.Errorf("%s: side %q, want %q", rule, have[rule], side)
		}
	}
	if len(have) != len(want) {
		t.Errorf("policies %v, want %v", have, want)
	}
	// The service itself is selected by service:shop/carts directly.
	var sv WorkloadPolicies
	get(t, s, "/api/v1/workload-policies?id="+url.QueryEscape(svc.ID), &sv)
	for _, p := range sv.Policies {
		if p.Rule == "shop-api@v1#1" {
			t.Errorf("the service is not in shop-api (its labels are not tier=api), yet %s is listed", p.Rule)
		}
	}
	// A viewer bound to shop-api sees that scope's intents, not its
	// parent's.
	tok, err := s.Client("").CreateTokenFor(context.Background(), api.TokenRequest{Name: "api-viewer", Role: "viewer", Scope: "shop-api"})
	if err != nil {
		t.Fatal(err)
	}
	resp := do(t, s, tok.Secret, "GET", "/api/v1/workload-policies?id="+url.QueryEscape(carts.ID), "")
	var scoped WorkloadPolicies
	json.NewDecoder(resp.Body).Decode(&scoped) //nolint:errcheck // checked below
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(scoped.Policies) != 4 {
		t.Errorf("scoped viewer: %s, %d policies, want shop-api's 4", resp.Status, len(scoped.Policies))
	}
	for _, p := range scoped.Policies {
		if p.Scope != "shop-api" {
			t.Errorf("scoped viewer sees %s", p.Rule)
		}
	}
	if _, ok := scoped.Versions["shop"]; ok {
		t.Errorf("scoped viewer sees the parent's version: %v", scoped.Versions)
	}
	for path, code := range map[string]int{
		"/api/v1/workload-policies":               http.StatusBadRequest,
		"/api/v1/workload-policies?id=c1/pod/x/y": http.StatusNotFound,
	} {
		resp := do(t, s, "", "GET", path, "")
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct{ Error string }
		json.Unmarshal(b, &e) //nolint:errcheck // checked below
		if resp.StatusCode != code || e.Error == "" {
			t.Errorf("GET %s: %d %s, want %d with an error", path, resp.StatusCode, b, code)
		}
	}
}
