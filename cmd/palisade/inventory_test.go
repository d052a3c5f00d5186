package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/palisade-dev/palisade/internal/server"
	"github.com/palisade-dev/palisade/pkg/api"
)

// TestInventoryCLI drives `palisade inventory` against a real server (no
// cluster: user-defined external workloads are inventory too).
func TestInventoryCLI(t *testing.T) {
	s, err := server.Start(context.Background(), server.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if _, err := s.Client("").PutExternal(context.Background(), api.External{Name: "payments-psp", CIDRs: []string{"203.0.113.0/28"}, Labels: map[string]string{"zone": "internet"}}); err != nil {
		t.Fatalf("create external: %v", err)
	}
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		root := newRootCmd()
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append(args, "--server", s.URL(), "--token", s.AdminToken()))
		err := root.Execute()
		return out.String(), err
	}
	out, err := run("inventory", "search", "kind = external and label.zone = internet")
	if err != nil || !strings.Contains(out, "payments-psp") || !strings.Contains(out, "203.0.113.0/28") {
		t.Fatalf("search: %v\n%s", err, out)
	}
	out, err = run("inventory", "lookup", "203.0.113.5", "-o", "json")
	if err != nil || !strings.Contains(out, `"name": "payments-psp"`) {
		t.Fatalf("lookup: %v\n%s", err, out)
	}
	out, err = run("inventory", "get", "external/payments-psp")
	if err != nil || !strings.Contains(out, `"history"`) {
		t.Fatalf("get: %v\n%s", err, out)
	}
	// A bad filter points at the column at fault.
	_, err = run("inventory", "search", "kind = external and lable.zone = x")
	if err == nil || !strings.Contains(err.Error(), "column 21") || !strings.Contains(err.Error(), "\n  "+strings.Repeat(" ", 20)+"^") {
		t.Fatalf("bad filter error = %v", err)
	}
	if _, err := run("inventory", "filters", "save", "internet", "label.zone = internet"); err != nil {
		t.Fatal(err)
	}
	out, err = run("inventory", "filters", "list")
	if err != nil || !strings.Contains(out, `"internet"`) {
		t.Fatalf("filters list: %v\n%s", err, out)
	}
}
