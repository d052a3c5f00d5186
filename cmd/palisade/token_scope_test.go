package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestScopedTokenCLI: `palisade token create --name N --role R --scope
// PARENT:CHILD` binds a token to a scope (named by its path, as the
// reference product writes Root:App), `token list` shows the binding, the
// bound owner edits below its scope and is refused above it, and a scope
// that does not exist or a global role on a scope are refused with a
// message naming the problem; saved filters belong to a scope
// (`inventory filters save --scope`) and each team lists its own.
func TestScopedTokenCLI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	p := startCLI(t, "server", "--data", dir, "--listen", "127.0.0.1:0", "--inventory-retention", "720h")
	defer p.stop(t, syscall.SIGTERM)
	l := p.line(t, "listening on", 60*time.Second)
	base := strings.TrimSpace(l[strings.LastIndex(l, " "):])
	adminFile := filepath.Join(dir, "admin-token")
	env := map[string]string{"PALISADE_SERVER": base, "PALISADE_TOKEN": "", "PALISADE_CA": filepath.Join(dir, "ca.crt")}
	yaml := filepath.Join(t.TempDir(), "scopes.yaml")
	os.WriteFile(yaml, []byte("kind: Scope\nname: Root\nfilter: cluster = \"lab\"\n---\nkind: Scope\nname: App\nparent: Root\nfilter: namespace = \"app\"\n---\nkind: Scope\nname: Other\nparent: Root\nfilter: namespace = \"other\"\n"), 0o600)
	if _, _, err := runCLI(t, env, "apply", "-f", yaml, "--token-file", adminFile); err != nil {
		t.Fatalf("apply: %v", err)
	}
	out, errOut, err := runCLI(t, env, "token", "create", "--name", "app-team", "--role", "owner", "--scope", "Root:App", "--token-file", adminFile)
	if err != nil || !strings.Contains(errOut, "on scope App") {
		t.Fatalf("token create --scope: %v\n%s", err, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	tok := lines[len(lines)-1]
	out, _, err = runCLI(t, env, "token", "list", "--token-file", adminFile)
	if err != nil || !strings.Contains(out, "SCOPE") || !strings.Contains(out, "app-team  owner  App") {
		t.Fatalf("token list: %v\n%s", err, out)
	}
	for _, c := range []struct{ scope, role, want string }{
		{"Nope", "viewer", `scope "Nope" does not exist`},
		{"Other:App", "viewer", "its path is Root:App"},
		{"App", "admin", "only owner, operator and viewer tokens"},
	} {
		if _, _, err := runCLI(t, env, "token", "create", "--name", "x", "--role", c.role, "--scope", c.scope, "--token-file", adminFile); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("--scope %s --role %s: %v, want %q", c.scope, c.role, err, c.want)
		}
	}
	child := filepath.Join(t.TempDir(), "child.yaml")
	os.WriteFile(child, []byte("kind: Scope\nname: App-web\nparent: App\nfilter: label.app = \"web\"\n"), 0o600)
	if _, _, err := runCLI(t, env, "apply", "-f", child, "--token", tok); err != nil {
		t.Fatalf("the owner of App creates a child: %v", err)
	}
	sibling := filepath.Join(t.TempDir(), "sibling.yaml")
	os.WriteFile(sibling, []byte("kind: Scope\nname: Other-web\nparent: Other\nfilter: label.app = \"web\"\n"), 0o600)
	if _, _, err := runCLI(t, env, "apply", "-f", sibling, "--token", tok); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("the owner of App creates a child of Other: %v", err)
	}
	out, _, err = runCLI(t, env, "get", "scopes", "--token", tok)
	if err != nil || !strings.Contains(out, "\nApp ") || !strings.Contains(out, "\nApp-web ") || strings.Contains(out, "Other") || strings.Contains(out, "\nRoot ") {
		t.Fatalf("get scopes as the owner of App: %v\n%s", err, out)
	}
	// Saved filters belong to a scope: the admin saves one for Other, the
	// owner of App one for App (its own, by default); each team lists
	// only its own, and App's owner cannot save for Other.
	if out, _, err = runCLI(t, env, "inventory", "filters", "save", "other-ns", `namespace = "other"`, "--scope", "Other", "--token-file", adminFile); err != nil || !strings.Contains(out, `"scope": "Other"`) {
		t.Fatalf("admin saves a filter of Other: %v\n%s", err, out)
	}
	if out, _, err = runCLI(t, env, "inventory", "filters", "save", "app-web", `label.app = "web"`, "--token", tok); err != nil || !strings.Contains(out, `"scope": "App"`) {
		t.Fatalf("the owner of App saves a filter: %v\n%s", err, out)
	}
	if _, _, err = runCLI(t, env, "inventory", "filters", "save", "sneaky", "kind = pod", "--scope", "Other", "--token", tok); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("the owner of App saves a filter of Other: %v", err)
	}
	if out, _, err = runCLI(t, env, "inventory", "filters", "list", "--token", tok); err != nil || !strings.Contains(out, "app-web") || strings.Contains(out, "other-ns") {
		t.Fatalf("filters list as the owner of App: %v\n%s", err, out)
	}
	if out, _, err = runCLI(t, env, "inventory", "filters", "list", "--token-file", adminFile); err != nil || !strings.Contains(out, "app-web") || !strings.Contains(out, "other-ns") {
		t.Fatalf("filters list as admin: %v\n%s", err, out)
	}
}
