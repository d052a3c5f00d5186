package audit

import (
	"strings"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/store"
)

func TestLogKeepsTheNewestAndFilters(t *testing.T) {
	kv, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	l, err := Open(kv, 5)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().UTC()
	for i := range 8 {
		who := "alice"
		if i%2 == 1 {
			who = "bob"
		}
		if err := l.Append(Record{Time: t0.Add(time.Duration(i) * time.Second), Who: who, Action: "POST /api/v1/filters", Path: "/api/v1/filters", Status: 201}); err != nil {
			t.Fatal(err)
		}
	}
	all, _ := l.List(Query{Limit: 100})
	if len(all) != 5 || all[0].Seq != 4 || all[4].Seq != 8 {
		t.Fatalf("kept %d records: %+v", len(all), all)
	}
	bob, _ := l.List(Query{Who: "bob", Since: t0.Add(4 * time.Second)})
	if len(bob) != 2 || bob[0].Seq != 6 {
		t.Fatalf("bob since t0+4s: %+v", bob)
	}
	// Sequence numbers go on after a reopen.
	l, _ = Open(kv, 5)
	l.Append(Record{Who: "carol"})
	last, _ := l.List(Query{Limit: 1})
	if last[0].Seq != 9 || last[0].Time.IsZero() {
		t.Fatalf("after reopen: %+v", last)
	}
}

func TestRedact(t *testing.T) {
	got := string(Redact([]byte(`{"name":"ci","token":"pal_x_secret","nested":{"password":"p","ok":[{"secret":"s"}]}}`), 1<<10))
	for _, leak := range []string{"pal_x_secret", `"p"`, `"s"`} {
		if strings.Contains(got, leak) {
			t.Fatalf("%s leaks %s", got, leak)
		}
	}
	if !strings.Contains(got, `"ci"`) || strings.Count(got, "[redacted]") != 3 {
		t.Fatalf("redacted: %s", got)
	}
	if got := string(Redact([]byte(strings.Repeat("x", 1000)), 1<<10)); len(got) > 300 {
		t.Fatalf("non-JSON kept whole: %d bytes", len(got))
	}
	if got := string(Redact([]byte(`["`+strings.Repeat("x", 2000)+`"]`), 1<<10)); !strings.Contains(got, "not kept") {
		t.Fatalf("oversized JSON kept: %.80s", got)
	}
}
