package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/palisade-dev/palisade/internal/server"
)

const cliShop = `kind: Scope
name: cluster-lab
filter: cluster = "lab"
catchAll: ALLOW
---
kind: Scope
name: sock-shop
parent: cluster-lab
filter: namespace = "sock-shop"
catchAll: DENY
---
kind: InventoryFilter
name: lab-nodes
filter: kind = node and cluster = lab
---
kind: Policy
scope: sock-shop
consumer: label.app = "payment"
provider: label.app = "user-db"
action: ALLOW
ports: ["tcp/27017"]
---
kind: Policy
scope: sock-shop
consumer: label.app in (payment, front-end)
provider: cidr:203.0.113.10/32
action: ALLOW
ports: ["tcp/666"]
---
kind: Policy
scope: sock-shop
consumer: kind = node
provider: label.app = "front-end"
action: ALLOW
ports: ["tcp/8079", "tcp/9000-9010", "tcp/metrics"]
class: absolute
priority: 10
`

// TestPolicyCLI drives apply, get, delete and analyze against a real
// server: idempotence, round trips through -o yaml, and errors that name
// file:line:column and apply nothing.
func TestPolicyCLI(t *testing.T) {
	s, err := server.Start(context.Background(), server.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	run := func(stdin string, args ...string) (string, error) {
		var out bytes.Buffer
		root := newRootCmd()
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetIn(strings.NewReader(stdin))
		root.SetArgs(append(args, "--server", s.URL(), "--token", s.AdminToken()))
		err := root.Execute()
		return out.String(), err
	}
	shop := write("shop.yaml", cliShop)
	out, err := run("", "apply", "-f", shop)
	if err != nil || !strings.Contains(out, "Scope/sock-shop created") || !strings.Contains(out, "Policy/sock-shop@v1 created") {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	if out, err = run("", "apply", "-f", shop); err != nil || strings.TrimSpace(out) != "no change" {
		t.Fatalf("second apply: %v\n%s", err, out)
	}
	for _, what := range []string{"scopes", "policies", "versions"} {
		yml, err := run("", "get", what, "-o", "yaml")
		if err != nil || !strings.Contains(yml, "kind:") {
			t.Fatalf("get %s -o yaml: %v\n%s", what, err, yml)
		}
		if out, err = run(yml, "apply", "-f", "-"); err != nil || strings.TrimSpace(out) != "no change" {
			t.Fatalf("get %s -o yaml | apply -f -: %v\n%s\n%s", what, err, out, yml)
		}
	}
	out, err = run("", "get", "policies", "--scope", "sock-shop")
	if err != nil || strings.Count(out, "sock-shop") != 3 || !strings.Contains(out, "tcp/8079,tcp/9000-9010,tcp/metrics") {
		t.Fatalf("get policies: %v\n%s", err, out)
	}

	// Each bad file names its file:line:column and field, and applies
	// nothing, not even the good scope before the bad document.
	good := "kind: Scope\nname: extra\nfilter: kind = pod\n---\n"
	for _, c := range []struct{ name, doc, want string }{
		{"invalid YAML", "kind: Policy\nscope: [sock-shop\n", "bad.yaml:5:1: invalid YAML"},
		{"unknown field", "kind: Policy\nscope: sock-shop\nconsumer: any\nprovider: any\naction: ALLOW\nport: [tcp/80]\n", "bad.yaml:10:1: port: unknown field"},
		{"bad filter", "kind: Policy\nscope: sock-shop\nconsumer: label.app = \"x\" and or\nprovider: any\naction: ALLOW\n", "bad.yaml:7:31: consumer: filter column 21: expected a field name"},
		{"dangling scope", "kind: Policy\nscope: sock-shop\nconsumer: scope:nope\nprovider: any\naction: ALLOW\n", `bad.yaml:7:11: consumer: scope "nope" does not exist`},
		{"dangling service", "kind: Policy\nscope: sock-shop\nconsumer: any\nprovider: service:sock-shop/carts\naction: ALLOW\n", "bad.yaml:8:11: provider: service sock-shop/carts does not exist"},
	} {
		bad := write("bad.yaml", good+c.doc)
		out, err := run("", "apply", "-f", bad)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "nothing applied") {
			t.Errorf("%s: err = %v, want %q\n%s", c.name, err, c.want, out)
		}
	}
	if out, _ := run("", "get", "scopes"); strings.Contains(out, "extra") {
		t.Fatalf("a failing apply created a scope:\n%s", out)
	}

	// Analysis freezes v1; deleting an intent then makes v2.
	out, err = run("", "analyze", "--scope", "sock-shop", "--since", "1h")
	if err != nil || !strings.Contains(out, "permitted") || !strings.Contains(out, "sock-shop@v1") {
		t.Fatalf("analyze: %v\n%s", err, out)
	}
	one := write("one.yaml", "kind: Policy\nscope: sock-shop\nconsumer: label.app in (payment, front-end)\nprovider: cidr:203.0.113.10/32\naction: ALLOW\nports: [\"tcp/666\"]\n")
	out, err = run("", "delete", "-f", one)
	if err != nil || !strings.Contains(out, "Policy/sock-shop@v2 created") || !strings.Contains(out, "- label.app in") {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	out, err = run("", "get", "versions", "--scope", "sock-shop")
	if err != nil || !strings.Contains(out, "v1       analyzed") || !strings.Contains(out, "v2       draft") {
		t.Fatalf("get versions: %v\n%s", err, out)
	}
	if _, err := run("", "analyze", "--scope", "sock-shop"); err == nil || !strings.Contains(err.Error(), "--since") {
		t.Fatalf("analyze without a time range: %v", err)
	}
}
