package flowapi

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
)

func TestCheckClock(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	l := Limits{MaxAge: 48 * time.Hour}.withDefaults()
	obs := func(end time.Time) flow.Observation {
		return flow.Observation{Point: flow.ObservationPoint{Node: "n1", Interface: "veth1"},
			Tuple: flow.Tuple{Proto: "tcp", SrcIP: "10.0.0.1", SrcPort: 1, DstIP: "10.0.0.2", DstPort: 80}, Start: end.Add(-time.Second), End: end}
	}
	for _, c := range []struct {
		name string
		end  time.Time
		want string // "" accepted
	}{
		{"now", now, ""},
		{"4 min ahead", now.Add(4 * time.Minute), ""},
		{"6 min ahead", now.Add(6 * time.Minute), "6m0s ahead of the server's clock: more than the 5m0s allowed"},
		{"years ahead", now.AddDate(30, 0, 0), "more than the 5m0s allowed"},
		{"47 h old", now.Add(-47 * time.Hour), ""},
		{"49 h old", now.Add(-49 * time.Hour), "older than the flow retention of 48h0m0s"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := flow.Batch{Observations: []flow.Observation{obs(now), obs(c.end)}}
			e := l.checkClock(&b, now)
			switch {
			case c.want == "" && e != nil:
				t.Fatalf("refused: %v", e)
			case c.want != "" && (e == nil || !strings.Contains(e.Message, c.want) ||
				!strings.Contains(e.Message, "observations[1] (tcp 10.0.0.1:1 > 10.0.0.2:80 at n1/veth1)") || e.Field != "observations[1].end"):
				t.Fatalf("got %+v, want %q", e, c.want)
			}
		})
	}
	if e := (Limits{}).checkClock(&flow.Batch{Observations: []flow.Observation{obs(now.AddDate(9, 0, 0))}}, now); e != nil {
		t.Fatalf("no limits given, still refused: %v", e)
	}
}

func TestBatchLimiter(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	bl := newBatchLimiter(Limits{BatchRate: 2, BatchBurst: 3}.withDefaults())
	for i := range 3 {
		if _, ok := bl.allow("a", now); !ok {
			t.Fatalf("batch %d of the burst refused", i)
		}
	}
	wait, ok := bl.allow("a", now)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("past the burst: %v %v", wait, ok)
	}
	if _, ok := bl.allow("b", now); !ok {
		t.Fatal("another node is limited by a's batches")
	}
	if _, ok := bl.allow("a", now.Add(500*time.Millisecond)); !ok {
		t.Fatal("refused after the wait it was told")
	}
	rec := httptest.NewRecorder()
	e := bl.tooMany(rec, "a", 1200*time.Millisecond)
	if e.Status != 429 || rec.Header().Get("Retry-After") != "2" {
		t.Fatalf("%+v Retry-After %q", e, rec.Header().Get("Retry-After"))
	}
	// Idle nodes are forgotten once the map is full.
	for i := range maxLimited + 10 {
		bl.allow(string(rune('a'+i%26))+time.Duration(i).String(), now.Add(time.Hour))
	}
	if len(bl.by) > maxLimited {
		t.Fatalf("%d limiters kept", len(bl.by))
	}
	var none *batchLimiter
	if _, ok := none.allow("a", now); !ok {
		t.Fatal("no limiter refuses")
	}
}

// BenchmarkLimits: the per-batch cost of the agent limits (the node's
// token bucket and the clock check of 1,000 observations).
func BenchmarkLimits(b *testing.B) {
	now := time.Now()
	l := Limits{MaxAge: 7 * 24 * time.Hour, BatchRate: 1e9, BatchBurst: 1 << 30}.withDefaults()
	bl := newBatchLimiter(l)
	var bt flow.Batch
	for range 1000 {
		bt.Observations = append(bt.Observations, flow.Observation{Start: now.Add(-time.Second), End: now})
	}
	for b.Loop() {
		if _, ok := bl.allow("n1", now); !ok {
			b.Fatal("limited")
		}
		if e := l.checkClock(&bt, now); e != nil {
			b.Fatal(e)
		}
	}
}
