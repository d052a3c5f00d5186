package auth

import (
	"context"
	"errors"
	"testing"

	"github.com/palisade-dev/palisade/internal/store"
)

func TestRoleAllows(t *testing.T) {
	perms := []Permission{InventoryRead, InventoryWrite, "policy.read", "policy.write", AdminTokens, AuditRead, MetricsScrape, AgentReport, AgentsRead, Public, "scope.own"}
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

func TestAuthorizeScopeHook(t *testing.T) {
	var asked []string
	a := &Authorizer{Scopes: func(_ context.Context, p Principal, perm Permission, scope string) error {
		asked = append(asked, scope)
		if scope == "b" {
			return errors.New("not granted on scope b")
		}
		return nil
	}}
	v := Principal{Name: "v", Role: Viewer}
	ctx := context.Background()
	if err := a.Authorize(ctx, v, InventoryRead, "a"); err != nil {
		t.Fatal(err)
	}
	if err := a.Authorize(ctx, v, InventoryRead, "b"); !errors.Is(err, ErrForbidden) {
		t.Fatal(err)
	}
	if err := a.Authorize(ctx, v, InventoryWrite, "a"); !errors.Is(err, ErrForbidden) {
		t.Fatal(err)
	}
	if err := a.Authorize(ctx, Principal{Name: "root", Role: Admin}, InventoryWrite, "b"); err != nil {
		t.Fatal(err)
	}
	if len(asked) != 2 {
		t.Fatalf("scope hook asked for %v", asked)
	}
}
