package auth

import (
	"context"
	"errors"
	"testing"

	"github.com/palisade-dev/palisade/internal/store"
)

func TestRoleAllows(t *testing.T) {
	perms := []Permission{InventoryRead, InventoryWrite, PolicyRead, PolicyWrite, AdminTokens, AuditRead, MetricsScrape, AgentReport, AgentsRead, Public, "scope.own"}
	// One letter per permission above: y allowed, . refused.
	want := map[Role]string{
		Admin:         "yyyyyyyyyyy",
		Owner:         "yyyy....yyy",
		Operator:      "yyyy....yy.",
		Viewer:        "y.y.....yy.",
		MetricsReader: "......y..y.",
		Agent:         ".......yyy.",
	}
	for role, w := range want {
		t.Run(string(role), func(t *testing.T) {
			for i, p := range perms {
				if got := role.Allows(p); got != (w[i] == 'y') {
					t.Errorf("%s allows %s = %v", role, p, got)
				}
			}
		})
	}
}

func TestTokens(t *testing.T) {
	kv, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	toks, err := OpenTokens(kv)
	if err != nil {
		t.Fatal(err)
	}
	tok, secret, err := toks.Create("ci", Viewer, "admin")
	if err != nil {
		t.Fatal(err)
	}
	p, err := toks.Check(secret)
	if err != nil || p.Name != "ci" || p.Role != Viewer || p.TokenID != tok.ID {
		t.Fatalf("check: %+v %v", p, err)
	}
	for _, bad := range []string{"", "pal_", secret + "x", secret[:len(secret)-1], "pal_0000000000000000_" + secret[len(secret)-43:], "Bearer " + secret} {
		if _, err := toks.Check(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, _, err := toks.Create("ci", Admin, "admin"); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate name: %v", err)
	}
	if _, _, err := toks.Create("bad name", Viewer, "admin"); err == nil {
		t.Fatal("bad name accepted")
	}
	if _, _, err := toks.Create("x", "root", "admin"); err == nil {
		t.Fatal("unknown role accepted")
	}
	for _, l := range toks.List() {
		if l.Hash != "" {
			t.Fatal("List shows hashes")
		}
	}
	if _, err := toks.Revoke("ci"); err != nil {
		t.Fatal(err)
	}
	if _, err := toks.Check(secret); !errors.Is(err, ErrInvalid) {
		t.Fatalf("revoked token: %v", err)
	}
	// Reloaded from the store: still revoked, the name free again.
	toks, _ = OpenTokens(kv)
	if _, err := toks.Check(secret); !errors.Is(err, ErrInvalid) {
		t.Fatalf("revoked token after reload: %v", err)
	}
	if _, _, err := toks.Create("ci", Viewer, "admin"); err != nil {
		t.Fatal(err)
	}
}

// A role bound to a scope holds on it and its descendants only: the tree
// is top ← a ← a1, top ← b.
func TestAuthorizeScoped(t *testing.T) {
	parents := map[string]string{"top": "", "a": "top", "a1": "a", "b": "top"}
	a := &Authorizer{Scopes: func(s string) ([]string, bool) {
		var path []string
		for ; s != ""; s = parents[s] {
			if _, ok := parents[s]; !ok {
				return nil, false
			}
			path = append([]string{s}, path...)
		}
		return path, true
	}}
	ctx := context.Background()
	for _, c := range []struct {
		p     Principal
		perm  Permission
		scope string
		ok    bool
	}{
		{Principal{Name: "v", Role: Viewer, Scope: "a"}, PolicyRead, "a", true},
		{Principal{Name: "v", Role: Viewer, Scope: "a"}, PolicyRead, "a1", true},
		{Principal{Name: "v", Role: Viewer, Scope: "a"}, PolicyRead, "b", false},
		{Principal{Name: "v", Role: Viewer, Scope: "a"}, PolicyRead, "top", false},
		{Principal{Name: "v", Role: Viewer, Scope: "a"}, PolicyRead, "gone", false},
		{Principal{Name: "v", Role: Viewer, Scope: "a"}, PolicyRead, "", true},
		{Principal{Name: "v", Role: Viewer, Scope: "a"}, PolicyWrite, "a", false},
		{Principal{Name: "o", Role: Owner, Scope: "a"}, PolicyEdit, "a1", true},
		{Principal{Name: "o", Role: Owner, Scope: "a"}, PolicyEdit, "b", false},
		{Principal{Name: "op", Role: Operator, Scope: "a"}, PolicyEdit, "a", false},
		{Principal{Name: "op", Role: Operator, Scope: "a"}, PolicyWrite, "a1", true},
		{Principal{Name: "v", Role: Viewer}, PolicyRead, "b", true},
		{Principal{Name: "root", Role: Admin}, PolicyEdit, "b", true},
	} {
		err := a.Authorize(ctx, c.p, c.perm, c.scope)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrForbidden)) {
			t.Errorf("%s (%s on %q) %s on %q: %v", c.p.Name, c.p.Role, c.p.Scope, c.perm, c.scope, err)
		}
	}
}

func TestScopedTokens(t *testing.T) {
	kv, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	toks, _ := OpenTokens(kv)
	tok, secret, err := toks.CreateScoped("app", Owner, "a", "admin")
	if err != nil || tok.Scope != "a" {
		t.Fatalf("%+v %v", tok, err)
	}
	if p, err := toks.Check(secret); err != nil || p.Scope != "a" || !p.Scoped() {
		t.Fatalf("%+v %v", p, err)
	}
	for _, r := range []Role{Admin, MetricsReader} {
		if _, _, err := toks.CreateScoped("x", r, "a", "admin"); !errors.Is(err, ErrScopedRole) {
			t.Errorf("%s on a scope: %v", r, err)
		}
	}
	toks, _ = OpenTokens(kv)
	if p, err := toks.Check(secret); err != nil || p.Scope != "a" {
		t.Fatalf("after reload: %+v %v", p, err)
	}
}
