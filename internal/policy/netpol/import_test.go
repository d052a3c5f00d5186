package netpol

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/palisade-dev/palisade/internal/policy"
	"github.com/palisade-dev/palisade/internal/store"
)

func openRepo(t *testing.T) *policy.Repo {
	t.Helper()
	kv, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close() })
	repo, err := policy.OpenRepo(kv)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := policy.ParseDocuments("scope.yaml", strings.NewReader("kind: Scope\nname: lab\nfilter: cluster = lab\ncatchAll: DENY\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Apply(docs, policy.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	return repo
}

func readTestFiles(t *testing.T, names ...string) []File {
	t.Helper()
	var out []File
	for _, n := range names {
		b, err := os.ReadFile("testdata/" + n)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, File{Name: n, Content: string(b)})
	}
	return out
}

// An import makes a new version of the scope holding the translation;
// importing the same again changes nothing; importing other policies makes
// the next version, whose diff names the intents added and removed; a dry
// run writes nothing; a missing scope is refused by name.
func TestImportMakesVersions(t *testing.T) {
	repo := openRepo(t)
	pols, skipped, err := ReadFiles(readTestFiles(t, "default-deny-ingress.yaml", "multiple.yaml"), "")
	if err != nil || len(skipped) != 0 {
		t.Fatal(err, skipped)
	}
	res, err := Import(repo, "lab", pols, ImportOptions{Options: Options{Source: "networkpolicy import: test"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != "v1" || res.Unchanged || res.Policies != 4 || len(res.Changes) != 1 || res.Changes[0].Op != "created" {
		t.Fatalf("first import = %+v", res)
	}
	v, err := repo.Version("lab", "v1")
	if err != nil {
		t.Fatal(err)
	}
	if v.CatchAll != policy.Allow || len(v.Policies) != res.Intents || v.Source != "networkpolicy import: test" {
		t.Fatalf("v1 = catch-all %s, %d intents (import said %d), source %q", v.CatchAll, len(v.Policies), res.Intents, v.Source)
	}

	again, err := Import(repo, "lab", pols, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !again.Unchanged || again.Version != "v1" || len(repo.Versions("lab")) != 1 {
		t.Fatalf("second import = %+v, versions %d", again, len(repo.Versions("lab")))
	}

	fewer, _, err := ReadFiles(readTestFiles(t, "multiple.yaml"), "")
	if err != nil {
		t.Fatal(err)
	}
	dry, err := Import(repo, "lab", fewer, ImportOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if !dry.DryRun || dry.Version != "v2" || len(repo.Versions("lab")) != 1 {
		t.Fatalf("dry run = %+v, versions %d", dry, len(repo.Versions("lab")))
	}
	next, err := Import(repo, "lab", fewer, ImportOptions{Who: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if next.Version != "v2" || next.Previous != "v1" || len(next.Changes) != 1 || next.Changes[0].Op != "created" {
		t.Fatalf("third import = %+v", next)
	}
	diff := strings.Join(next.Diff, "\n")
	if !strings.Contains(diff, "- ") || !strings.Contains(diff, "netpol.x.default-deny-ingress.isolate-ingress") || strings.Contains(diff, "+ ") {
		t.Fatalf("v1 → v2 diff should remove default-deny-ingress only:\n%s", diff)
	}
	if v2, _ := repo.Version("lab", "v2"); v2.CreatedBy != "alice" {
		t.Fatalf("v2 created by %q", v2.CreatedBy)
	}
	if _, err := Import(repo, "nope", fewer, ImportOptions{}); !errors.Is(err, ErrScopeNotFound) || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("missing scope: %v", err)
	}
}

func TestReadFilesRefusesDuplicates(t *testing.T) {
	f := readTestFiles(t, "allow-pod-label.yaml")
	f = append(f, File{Name: "again.yaml", Content: f[0].Content})
	_, _, err := ReadFiles(f, "")
	if err == nil || !strings.Contains(err.Error(), "again.yaml:") || !strings.Contains(err.Error(), "x/allow-from-b is also defined at allow-pod-label.yaml:2:1") {
		t.Fatalf("err = %v", err)
	}
}
