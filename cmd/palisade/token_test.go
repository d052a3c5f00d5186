package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runCLI runs palisade in this process with env set for the run.
func runCLI(t *testing.T, env map[string]string, args ...string) (string, string, error) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var out, errOut bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), errOut.String(), err
}

// TestTokensBlackBox: a `palisade server` process writes its admin token
// (0600) on first start; `palisade token create|list|revoke` manage
// tokens with it; every way of giving a token works (--token,
// --token-file, PALISADE_TOKEN, PALISADE_SERVER); a viewer reads but
// cannot write; a revoked token and no token are refused.
func TestTokensBlackBox(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	p := startCLI(t, "server", "--data", dir, "--listen", "127.0.0.1:0")
	defer p.stop(t, syscall.SIGTERM)
	l := p.line(t, "listening on", 60*time.Second)
	base := strings.TrimSpace(l[strings.LastIndex(l, " "):])
	adminFile := filepath.Join(dir, "admin-token")
	fi, err := os.Stat(adminFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin token file: %v %v", fi, err)
	}
	admin, _ := os.ReadFile(adminFile)
	adminTok := strings.TrimSpace(string(admin))

	none := map[string]string{"PALISADE_SERVER": base, "PALISADE_TOKEN": "", "PALISADE_CA": filepath.Join(dir, "ca.crt")}
	if _, _, err := runCLI(t, none, "inventory", "search"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("no token: %v", err)
	}
	out, _, err := runCLI(t, none, "token", "create", "alice", "--role", "viewer", "--token-file", adminFile)
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	alice := lines[len(lines)-1]
	if !strings.HasPrefix(alice, "pal_") {
		t.Fatalf("token create printed %q", out)
	}
	if _, _, err := runCLI(t, none, "token", "create", "alice", "--token", adminTok); err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("a second live token named alice: %v", err)
	}
	// A viewer reads (--token, PALISADE_TOKEN) and cannot write.
	if _, _, err := runCLI(t, none, "inventory", "search", "--token", alice); err != nil {
		t.Fatalf("viewer search: %v", err)
	}
	asAlice := map[string]string{"PALISADE_SERVER": base, "PALISADE_TOKEN": alice, "PALISADE_CA": filepath.Join(dir, "ca.crt")}
	if _, _, err := runCLI(t, asAlice, "inventory", "filters", "list"); err != nil {
		t.Fatalf("viewer via PALISADE_TOKEN: %v", err)
	}
	if _, _, err := runCLI(t, asAlice, "inventory", "filters", "save", "web", "kind = pod"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("viewer write: %v", err)
	}
	if _, _, err := runCLI(t, asAlice, "token", "list"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("viewer lists tokens: %v", err)
	}
	out, _, err = runCLI(t, none, "token", "list", "--token", adminTok)
	if err != nil || !strings.Contains(out, "alice") || !strings.Contains(out, "viewer") || strings.Contains(out, alice) || strings.Contains(out, adminTok) {
		t.Fatalf("token list: %v\n%s", err, out)
	}
	if _, _, err := runCLI(t, none, "token", "revoke", "alice", "--token", adminTok); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if _, _, err := runCLI(t, asAlice, "inventory", "search"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("revoked token: %v", err)
	}
	// The server keeps tokens across a restart, hashed.
	p.stop(t, syscall.SIGTERM)
	db, _ := os.ReadFile(filepath.Join(dir, "palisade.db"))
	secret := adminTok[strings.LastIndex(adminTok, "_")+1:]
	if bytes.Contains(db, []byte(secret)) {
		t.Fatal("the admin token's secret is stored in clear")
	}
	p = startCLI(t, "server", "--data", dir, "--listen", "127.0.0.1:0")
	l = p.line(t, "listening on", 60*time.Second)
	base = strings.TrimSpace(l[strings.LastIndex(l, " "):])
	again, _ := os.ReadFile(adminFile)
	if string(again) != string(admin) {
		t.Fatal("the admin token changed on restart")
	}
	if _, _, err := runCLI(t, map[string]string{"PALISADE_SERVER": base, "PALISADE_TOKEN": adminTok, "PALISADE_CA": filepath.Join(dir, "ca.crt")}, "inventory", "search"); err != nil {
		t.Fatalf("admin after restart: %v", err)
	}
	if _, _, err := runCLI(t, map[string]string{"PALISADE_SERVER": base, "PALISADE_TOKEN": alice, "PALISADE_CA": filepath.Join(dir, "ca.crt")}, "inventory", "search"); err == nil {
		t.Fatal("revoked token accepted after restart")
	}
}
