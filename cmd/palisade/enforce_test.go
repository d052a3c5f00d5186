package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/palisade-dev/palisade/internal/ruleset"
	"github.com/palisade-dev/palisade/internal/server"
)

// TestEnforceCLI: `palisade enforce --scope S [--version V]`,
// `enforce status [-o json]` and `enforce disable --scope S` against a real
// server, and their errors.
func TestEnforceCLI(t *testing.T) {
	s, err := server.Start(context.Background(), server.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		root := newRootCmd()
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append(args, "--server", s.URL(), "--token", s.AdminToken()))
		err := root.Execute()
		return out.String(), err
	}
	p := filepath.Join(t.TempDir(), "shop.yaml")
	if err := os.WriteFile(p, []byte(cliShop), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run("apply", "-f", p); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	if _, err := run("enforce"); err == nil || !strings.Contains(err.Error(), "--scope is required") {
		t.Fatalf("enforce without --scope: %v", err)
	}
	if _, err := run("enforce", "--scope", "sock-shop"); err == nil || !strings.Contains(err.Error(), "no analyzed version") {
		t.Fatalf("enforce without an analyzed version: %v", err)
	}
	if _, err := run("enforce", "--scope", "nope", "--version", "v1"); err == nil || !strings.Contains(err.Error(), `scope "nope" does not exist`) {
		t.Fatalf("enforce an unknown scope: %v", err)
	}
	out, err := run("enforce", "--scope", "sock-shop", "--version", "v1")
	if err != nil || strings.TrimSpace(out) != "scope sock-shop: enforcing v1" {
		t.Fatalf("enforce: %v\n%s", err, out)
	}
	out, err = run("enforce", "status", "-o", "json")
	var st ruleset.Enforcement
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || len(st.Scopes) != 1 || st.Scopes[0].Mode != ruleset.Enforce || st.Scopes[0].Version != "v1" {
		t.Fatalf("enforce status -o json: %v\n%s", err, out)
	}
	if out, err = run("enforce", "status"); err != nil || !strings.Contains(out, "sock-shop") || !strings.Contains(out, "enforce") || !strings.Contains(out, "IN SYNC") {
		t.Fatalf("enforce status: %v\n%s", err, out)
	}
	if out, err = run("enforce", "disable", "--scope", "sock-shop"); err != nil || !strings.Contains(out, "scope sock-shop: analyze") {
		t.Fatalf("enforce disable: %v\n%s", err, out)
	}
	out, _ = run("enforce", "status", "-o", "json")
	if json.Unmarshal([]byte(out), &st) != nil || st.Scopes[0].Mode != ruleset.Analyze {
		t.Fatalf("status after disable:\n%s", out)
	}
	if _, err := run("enforce", "status", "-o", "yaml"); err == nil {
		t.Fatal("-o yaml accepted")
	}
}
