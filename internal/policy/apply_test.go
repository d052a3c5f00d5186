package policy

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/palisade-dev/palisade/internal/store"
)

const sockShop = `kind: Scope
name: cluster-lab
filter: cluster = "lab"
catchAll: ALLOW
---
kind: Scope
name: sock-shop
parent: cluster-lab              # optional; omitted = under the root scope
filter: namespace = "sock-shop"
catchAll: DENY                   # or ALLOW
---
kind: InventoryFilter
name: lab-nodes
filter: kind = node and cluster = lab
---
kind: Policy
scope: sock-shop
consumer: label.app = "user"
provider: label.app = "user-db"
action: ALLOW
ports: ["tcp/27017"]
class: default
priority: 100
---
kind: Policy
scope: sock-shop
consumer: label.name = "front-end"
provider: service:sock-shop/carts
action: ALLOW
ports: ["tcp/80"]
---
kind: Policy
scope: sock-shop
consumer: label.name = "orders"
provider: service:sock-shop/carts
action: ALLOW
ports: ["tcp/80"]
---
kind: Policy
scope: cluster-lab
consumer: kind = node
provider: label.name = "front-end"
action: ALLOW
ports: [tcp/8079, "tcp/80"]
class: absolute
`

func openRepo(t *testing.T) (*Repo, store.KV) {
	t.Helper()
	kv, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close() })
	r, err := OpenRepo(kv)
	if err != nil {
		t.Fatal(err)
	}
	return r, kv
}

func apply(t *testing.T, r *Repo, file, src string, opts ApplyOptions) (*Result, error) {
	t.Helper()
	docs, err := ParseDocuments(file, strings.NewReader(src))
	if err != nil {
		return nil, err
	}
	return r.Apply(docs, opts)
}

func services(ns, name string) bool {
	return ns == "sock-shop" && (name == "carts" || name == "front-end")
}

func TestApplyIdempotentAndRoundTrip(t *testing.T) {
	r, kv := openRepo(t)
	res, err := apply(t, r, "shop.yaml", sockShop, ApplyOptions{ServiceExists: services})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Changes) != 5 { // 2 scopes, 1 filter, 2 versions (sock-shop v1, cluster-lab v1)
		t.Fatalf("first apply: %d changes, want 5: %+v", len(res.Changes), res.Changes)
	}
	res, err = apply(t, r, "shop.yaml", sockShop, ApplyOptions{ServiceExists: services})
	if err != nil || len(res.Changes) != 0 {
		t.Fatalf("second apply: %+v, %v; want no change", res, err)
	}
	v, err := r.Version("sock-shop", "")
	if err != nil || v.Name != "v1" || len(v.Policies) != 3 || v.CreatedBy != "local" {
		t.Fatalf("sock-shop newest = %+v, %v", v, err)
	}
	// get -o yaml | apply -f - changes nothing.
	var out bytes.Buffer
	var docs []any
	for _, s := range r.Scopes() {
		docs = append(docs, ScopeDoc(s.Scope))
	}
	for _, f := range r.Filters() {
		docs = append(docs, FilterDoc(f))
	}
	for _, s := range r.Scopes() {
		for _, v := range r.Versions(s.Name) {
			docs = append(docs, VersionDoc(v))
			for _, p := range v.Policies {
				docs = append(docs, PolicyDoc(p, ""))
			}
		}
	}
	if err := Marshal(&out, docs); err != nil {
		t.Fatal(err)
	}
	res, err = apply(t, r, "-", out.String(), ApplyOptions{ServiceExists: services})
	if err != nil || len(res.Changes) != 0 {
		t.Fatalf("round trip: %+v, %v; want no change\n%s", res, err, out.String())
	}
	// A reopened repository holds the same.
	r2, err := OpenRepo(kv)
	if err != nil {
		t.Fatal(err)
	}
	if len(r2.Scopes()) != 2 || len(r2.Versions("sock-shop")) != 1 || len(r2.Filters()) != 1 {
		t.Fatalf("reopened: %d scopes, %d versions, %d filters", len(r2.Scopes()), len(r2.Versions("sock-shop")), len(r2.Filters()))
	}
}

func TestFrozenVersionForks(t *testing.T) {
	r, _ := openRepo(t)
	changes := 0
	r.OnChange(func() { changes++ })
	if _, err := apply(t, r, "shop.yaml", sockShop, ApplyOptions{ServiceExists: services, DryRun: true}); err != nil || changes != 0 {
		t.Fatalf("dry run: %v, %d change notifications", err, changes)
	}
	if _, err := apply(t, r, "shop.yaml", sockShop, ApplyOptions{ServiceExists: services}); err != nil {
		t.Fatal(err)
	}
	if _, err := apply(t, r, "shop.yaml", sockShop, ApplyOptions{ServiceExists: services}); err != nil || changes != 1 {
		t.Fatalf("apply, apply again: %v, %d change notifications, want 1", err, changes)
	}
	if err := r.MarkAnalyzed("sock-shop", "v1"); err != nil || changes != 2 {
		t.Fatalf("analyzed: %v, %d change notifications, want 2", err, changes)
	}
	// Deleting one intent from an analyzed v1 makes v2 without it.
	one := `kind: Policy
scope: sock-shop
consumer: label.name = "front-end"
provider: service:sock-shop/carts
action: ALLOW
ports: ["tcp/80"]
`
	docs, err := ParseDocuments("del.yaml", strings.NewReader(one))
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Delete(docs, ApplyOptions{Who: "alice"})
	if err != nil || len(res.Changes) != 1 || res.Changes[0].Name != "sock-shop@v2" {
		t.Fatalf("delete: %+v, %v", res, err)
	}
	v1, _ := r.Version("sock-shop", "v1")
	v2, _ := r.Version("sock-shop", "v2")
	if len(v1.Policies) != 3 || len(v2.Policies) != 2 || v2.CreatedBy != "alice" || v2.State != Draft {
		t.Fatalf("v1 %d intents, v2 %d intents by %s (%s)", len(v1.Policies), len(v2.Policies), v2.CreatedBy, v2.State)
	}
	if d := DiffVersions(v1, v2); len(d) != 1 || !strings.HasPrefix(d[0], "- ") {
		t.Fatalf("diff v1 v2 = %v", d)
	}
	// Editing an analyzed version by name is refused.
	_, err = apply(t, r, "v1.yaml", "kind: Policy\nscope: sock-shop\nversion: v1\nconsumer: any\nprovider: any\naction: DENY\n", ApplyOptions{})
	if err == nil || !strings.Contains(err.Error(), "v1.yaml:3:10: version: version v1 of scope sock-shop is analyzed") {
		t.Fatalf("err = %v", err)
	}
}

func TestApplyErrors(t *testing.T) {
	cases := []struct {
		name, src, want string
	}{
		{"invalid YAML", "kind: Scope\nname: [a\n", "bad.yaml:1:1: invalid YAML"},
		{"unknown field", "kind: Scope\nname: a\nfilter: kind = pod\ncatchall: DENY\n", "bad.yaml:4:1: catchall: unknown field"},
		{"bad filter shows its column", "kind: Scope\nname: a\nfilter: namespace = \"x\" and\n", `bad.yaml:3:28: filter: filter column 20: expected a field name`},
		{"bad consumer filter", "kind: Scope\nname: a\nfilter: kind = pod\n---\nkind: Policy\nscope: a\nconsumer: \"label.app = \"\nprovider: any\naction: ALLOW\n", `bad.yaml:7:24: consumer: filter column 13: expected value`},
		{"dangling scope", "kind: Policy\nscope: nope\nconsumer: any\nprovider: any\naction: ALLOW\n", `bad.yaml:2:8: scope: scope "nope" does not exist`},
		{"dangling scope reference", "kind: Scope\nname: a\nfilter: kind = pod\n---\nkind: Policy\nscope: a\nconsumer: scope:zz\nprovider: any\naction: ALLOW\n", `bad.yaml:7:11: consumer: scope "zz" does not exist`},
		{"dangling service", "kind: Scope\nname: a\nfilter: kind = pod\n---\nkind: Policy\nscope: a\nconsumer: any\nprovider: service:sock-shop/nope\naction: ALLOW\n", `bad.yaml:8:11: provider: service sock-shop/nope does not exist`},
		{"dangling parent", "kind: Scope\nname: a\nparent: b\nfilter: kind = pod\n", `bad.yaml:3:9: parent: scope "b" does not exist`},
		{"bad port", "kind: Scope\nname: a\nfilter: kind = pod\n---\nkind: Policy\nscope: a\nconsumer: any\nprovider: any\naction: ALLOW\nports: [tcp/80, tcp/99999]\n", `bad.yaml:10:17: ports[1]: port "tcp/99999"`},
		{"bad action", "kind: Scope\nname: a\nfilter: kind = pod\ncatchAll: MAYBE\n", `bad.yaml:4:11: catchAll: action "MAYBE"`},
		{"missing field", "kind: Scope\nname: a\n", `bad.yaml:1:1: filter: missing (required)`},
		{"unknown kind", "kind: Secret\nname: a\n", `bad.yaml:1:7: kind: "Secret"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, kv := openRepo(t)
			// A valid document before the bad one: nothing may be applied.
			src := "kind: InventoryFilter\nname: first\nfilter: kind = pod\n---\n" + c.src
			src = strings.Replace(src, "bad.yaml", "", 0)
			_, err := apply(t, r, "bad.yaml", src, ApplyOptions{ServiceExists: services})
			if err == nil {
				t.Fatal("apply succeeded")
			}
			// Lines shift by the 4 lines prepended.
			want := shiftLine(c.want, 4)
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("err = %q, want it to contain %q", err, want)
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("err is %T, want Errors", err)
			}
			if len(r.Filters()) != 0 || len(r.Scopes()) != 0 {
				t.Fatal("a failing apply wrote something")
			}
			n := 0
			kv.View(func(tx store.Tx) error {
				return tx.ForEach(BucketFilters, "", func(string, []byte) error { n++; return nil })
			})
			if n != 0 {
				t.Fatal("a failing apply wrote a filter to the store")
			}
		})
	}
}

// shiftLine adds n to the line of a "bad.yaml:L:C" prefix.
func shiftLine(s string, n int) string {
	rest := strings.TrimPrefix(s, "bad.yaml:")
	i := strings.IndexByte(rest, ':')
	var line int
	for _, c := range rest[:i] {
		line = line*10 + int(c-'0')
	}
	return "bad.yaml:" + itoa(line+n) + rest[i:]
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

// A draft edited while it was analyzed is not frozen by that analysis:
// what was analyzed is not what the version holds.
func TestMarkAnalyzedAsRefusesAnEditedDraft(t *testing.T) {
	r, _ := openRepo(t)
	if _, err := apply(t, r, "shop.yaml", sockShop, ApplyOptions{ServiceExists: services}); err != nil {
		t.Fatal(err)
	}
	analyzed, err := r.Version("sock-shop", "v1")
	if err != nil {
		t.Fatal(err)
	}
	// Meanwhile an intent is added to the draft.
	if _, err := apply(t, r, "more.yaml", "kind: Policy\nscope: sock-shop\nconsumer: any\nprovider: label.app = \"x\"\naction: DENY\n", ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := r.MarkAnalyzedAs(analyzed); !errors.Is(err, ErrChangedDuringAnalysis) {
		t.Fatalf("MarkAnalyzedAs after an edit: %v, want ErrChangedDuringAnalysis", err)
	}
	if v, _ := r.Version("sock-shop", "v1"); v.State != Draft || len(v.Policies) != 4 {
		t.Fatalf("v1 is %s with %d intents, want a draft with 4", v.State, len(v.Policies))
	}
	// Unchanged since read: frozen.
	now, _ := r.Version("sock-shop", "v1")
	if err := r.MarkAnalyzedAs(now); err != nil {
		t.Fatal(err)
	}
	if v, _ := r.Version("sock-shop", "v1"); v.State != Analyzed {
		t.Fatalf("v1 is %s, want analyzed", v.State)
	}
}
