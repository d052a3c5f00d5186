package inventory

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/store"
)

// history applies two hours of churn from t0: pods relabelled, moved to
// other addresses, deleted, recreated under the same name (a new UID) and
// their addresses reused by others; services whose endpoints change. It
// returns the addresses used.
func history(inv *Inventory, seed uint64) []string {
	rng := rand.New(rand.NewPCG(seed, 1))
	ips := make([]string, 24)
	for i := range ips {
		ips[i] = fmt.Sprintf("10.244.7.%d", i+1)
	}
	alive := map[string]Workload{}
	for m := 0; m < 120; m++ {
		at := t0.Add(time.Duration(m) * time.Minute)
		for k := 0; k < 3; k++ {
			name := fmt.Sprintf("p%d", rng.IntN(12))
			id := "c1/pod/shop/" + name
			w, ok := alive[id]
			switch r := rng.IntN(10); {
			case !ok:
				w = pod(name, ips[rng.IntN(len(ips))], at, map[string]string{"app": name, "rev": "0"})
				w.UID = fmt.Sprintf("uid-%s-%d", name, m)
				inv.Apply(w)
				alive[id] = w
			case r < 5:
				w.Labels = map[string]string{"app": name, "rev": fmt.Sprint(m)}
				w.Updated = at
				inv.Apply(w)
				alive[id] = w
			case r < 7:
				w.IPs = []string{ips[rng.IntN(len(ips))]}
				w.Updated = at
				inv.Apply(w)
				alive[id] = w
			default:
				inv.Delete(id, at)
				delete(alive, id)
			}
		}
		if m%10 == 0 {
			svc := Workload{ID: "c1/service/shop/web", Cluster: "c1", Kind: KindService, Namespace: "shop", Name: "web",
				UID: "uid-web", IPs: []string{"10.96.0.10"}, Updated: at, Created: t0,
				Ports:     []ServicePort{{Port: 80, TargetPort: "8080", Protocol: "TCP"}},
				Endpoints: []Endpoint{{IP: ips[m/10], Ports: []int32{8080}}}}
			inv.Apply(svc)
		}
	}
	return ips
}

// answers are every question about the times from..to (each minute and
// half-minute) the inventory can be asked, as text: lookups of every
// address, services behind every endpoint, workloads by ID, searches.
func answers(inv *Inventory, ips []string, from, to time.Time) []string {
	fp := func(w *Workload, ok bool) string {
		if !ok || w == nil {
			return "-"
		}
		del := ""
		if w.Deleted != nil {
			del = w.Deleted.Format(time.RFC3339)
		}
		return fmt.Sprintf("%s %s %s %v %v %s", w.ID, w.UID, w.Updated.Format(time.RFC3339), w.Labels, w.IPs, del)
	}
	var out []string
	for t := from; !t.After(to); t = t.Add(30 * time.Second) {
		for _, ip := range ips {
			w, ok := inv.Lookup(netip.MustParseAddr(ip), t)
			s, sok := inv.ServiceFor(ip, 8080, "tcp", t)
			out = append(out, t.Format(time.TimeOnly)+" "+ip+" "+fp(w, ok)+" | "+fp(s, sok))
		}
		w, ok := inv.WorkloadAt("10.96.0.10", t)
		out = append(out, "svc "+fp(w, ok))
	}
	for _, w := range inv.Search(nil, SearchOptions{}) {
		got, _, ok := inv.Get(w.ID)
		out = append(out, "live "+fp(w, true)+" "+fp(got, ok))
	}
	return out
}

func logKeys(t *testing.T, kv store.KV) int {
	n := 0
	kv.View(func(tx store.Tx) error { //nolint:errcheck
		return tx.ForEach(bucketVersions, "", func(string, []byte) error { n++; return nil })
	})
	return n
}

// TestCompactKeepsAnswersInsideRetention: after compaction, and after a
// restart from the compacted log, every lookup, service resolution, get
// and search about a time at or after the cutoff answers as before; what
// only times before the cutoff could reach is gone, from memory and from
// the store.
func TestCompactKeepsAnswersInsideRetention(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			dir := t.TempDir()
			kv, err := store.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			inv, _ := Open(kv)
			ips := history(inv, seed)
			end := t0.Add(121 * time.Minute)
			cutoff := t0.Add(75*time.Minute + 15*time.Second)
			before := answers(inv, ips, cutoff, end)
			beforeOld := answers(inv, ips, t0, t0.Add(30*time.Minute))
			if err := inv.Flush(); err != nil {
				t.Fatal(err)
			}
			keys := logKeys(t, kv)

			st, err := inv.Compact(cutoff)
			if err != nil {
				t.Fatal(err)
			}
			if st.Versions == 0 || st.Incarnations == 0 || st.Leases == 0 || st.Events == 0 {
				t.Fatalf("nothing dropped: %+v", st)
			}
			if d := diffLines(before, answers(inv, ips, cutoff, end)); d != "" {
				t.Fatalf("answers inside retention changed by compaction:\n%s", d)
			}
			if diffLines(beforeOld, answers(inv, ips, t0, t0.Add(30*time.Minute))) == "" {
				t.Error("answers about times before the cutoff did not change: nothing was dropped that mattered")
			}
			if got := logKeys(t, kv); got != st.Kept || got >= keys {
				t.Errorf("version log: %d keys, was %d, kept %d", got, keys, st.Kept)
			}
			if again, _ := inv.Compact(cutoff); again.Versions+again.Incarnations+again.Leases != 0 {
				t.Errorf("a second compaction dropped more: %+v", again)
			}
			// A change after compaction is appended after the rewritten log.
			late := pod("late", "10.244.7.200", end, map[string]string{"app": "late"})
			inv.Apply(late)
			after := answers(inv, append(ips, "10.244.7.200"), cutoff, end)
			if err := inv.Close(); err != nil {
				t.Fatal(err)
			}
			kv.Close()

			kv, _ = store.Open(dir)
			defer kv.Close()
			re, err := Open(kv)
			if err != nil {
				t.Fatal(err)
			}
			defer re.Close()
			if d := diffLines(after, answers(re, append(ips, "10.244.7.200"), cutoff, end)); d != "" {
				t.Fatalf("answers inside retention changed across a restart from the compacted log:\n%s", d)
			}
		})
	}
}

// Compaction runs while the connectors apply changes: nothing applied is
// lost (run with -race).
func TestCompactConcurrentApply(t *testing.T) {
	kv, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	inv, _ := Open(kv)
	history(inv, 7)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 300; i++ {
			inv.Apply(pod(fmt.Sprintf("c%d", i), fmt.Sprintf("10.245.%d.%d", i/250, i%250+1), t0.Add(3*time.Hour), nil))
		}
	}()
	for i := 0; i < 20; i++ {
		if _, err := inv.Compact(t0.Add(time.Duration(i) * 5 * time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	now := t0.Add(3 * time.Hour)
	want := answers(inv, nil, now, now)
	inv.Close()
	re, err := Open(kv)
	if err != nil {
		t.Fatal(err)
	}
	defer re.Close()
	if d := diffLines(want, answers(re, nil, now, now)); d != "" {
		t.Fatalf("after reload:\n%s", d)
	}
	if n := len(re.Search(nil, SearchOptions{})); n < 300 {
		t.Fatalf("%d live workloads after reload", n)
	}
}

func diffLines(a, b []string) string {
	if slices.Equal(a, b) {
		return ""
	}
	var out []string
	for i := 0; i < max(len(a), len(b)) && len(out) < 10; i++ {
		var x, y string
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			out = append(out, "- "+x, "+ "+y)
		}
	}
	return fmt.Sprintf("%d vs %d lines\n%s", len(a), len(b), strings.Join(out, "\n"))
}

// A search stops with its context's error: before it starts when the
// context is done, and within searchCheckEvery workloads of a cancellation.
func TestSearchContextStops(t *testing.T) {
	inv, _ := Open(nil)
	defer inv.Close()
	for i := range 5000 {
		inv.Apply(pod(fmt.Sprintf("p%d", i), fmt.Sprintf("10.246.%d.%d", i/250, i%250+1), t0, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := inv.SearchContext(ctx, nil, SearchOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled search: %v", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	seen := 0
	_, err := inv.SearchContext(ctx, nil, SearchOptions{Keep: func(*Workload) bool {
		if seen++; seen == 100 {
			cancel()
		}
		return true
	}})
	if !errors.Is(err, context.Canceled) || seen > 100+searchCheckEvery {
		t.Fatalf("search cancelled after 100: %v, %d workloads looked at", err, seen)
	}
	ctx, cancel = context.WithTimeout(context.Background(), -time.Second)
	defer cancel()
	if _, err := inv.SearchContext(ctx, nil, SearchOptions{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("search past its deadline: %v", err)
	}
	if got := inv.Search(nil, SearchOptions{Limit: 10}); len(got) != 10 {
		t.Fatalf("search without a context: %d", len(got))
	}
}
