package main

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/agent/report"
	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/pkg/api"
	"github.com/palisade-dev/palisade/pkg/client"
)

// TestAgentLimitsBlackBox: against a `palisade server` process, an
// enrolled agent's flows stamped too far ahead of the server's clock or
// older than the retention are refused with the observation and the limit
// named; batches past the node's rate get 429 with Retry-After, other
// nodes are not slowed, and the agent's reporter waits as told and
// delivers everything.
func TestAgentLimitsBlackBox(t *testing.T) {
	p, base, dir := startTLSServer(t, "--agent-batch-rate", "1", "--agent-batch-burst", "2", "--flow-retention", "48h")
	defer p.stop(t, syscall.SIGTERM)
	c, _ := enrolledAgent(t, base, dir, "lim")
	other, _ := enrolledAgent(t, base, dir, "other")
	ctx := context.Background()

	t.Run("clock skew", func(t *testing.T) {
		for _, c2 := range []struct {
			name  string
			shift time.Duration
			want  []string
		}{
			{"a year ahead", 365 * 24 * time.Hour, []string{"observations[1]", "ahead of the server's clock", "5m0s"}},
			{"an hour ahead", time.Hour, []string{"observations[1]", "5m0s"}},
			{"older than retention", -72 * time.Hour, []string{"observations[1]", "older than the flow retention of 48h0m0s"}},
		} {
			t.Run(c2.name, func(t *testing.T) {
				time.Sleep(1100 * time.Millisecond) // a batch of the node's rate
				b := oneFlow("other", 1)
				bad := b.Observations[0]
				bad.Seq, bad.Start, bad.End = 2, bad.Start.Add(c2.shift), bad.End.Add(c2.shift)
				b.Observations = append(b.Observations, bad)
				st, err := postStatus(other, "other", b)
				if st != 400 {
					t.Fatalf("%d %v", st, err)
				}
				e, _ := client.AsError(err)
				for _, w := range c2.want {
					if !strings.Contains(e.Message, w) {
						t.Errorf("%q does not say %q", e.Message, w)
					}
				}
				if e.Field != "observations[1].end" {
					t.Errorf("field %q", e.Field)
				}
			})
		}
		// A little ahead (a node's clock drifting) is fine.
		b := oneFlow("other", 10)
		b.Observations[0].End = time.Now().Add(time.Minute)
		time.Sleep(1100 * time.Millisecond)
		if st, err := postStatus(other, "other", b); st != 200 {
			t.Fatalf("a minute ahead: %d %v", st, err)
		}
	})

	t.Run("batch rate", func(t *testing.T) {
		var codes []int
		var limited *api.Error
		for i := range 8 {
			st, err := postStatus(c, "lim", oneFlow("lim", uint64(100+i)))
			codes = append(codes, st)
			if st == http.StatusTooManyRequests {
				limited, _ = client.AsError(err)
			}
		}
		if codes[0] != 200 || codes[1] != 200 || limited == nil {
			t.Fatalf("statuses %v", codes)
		}
		if limited.RetryAfter < time.Second || !strings.Contains(limited.Message, "per second") {
			t.Fatalf("429: %+v", limited)
		}
		// Another node has its own budget.
		if st, err := postStatus(other, "other", oneFlow("other", 50)); st != 200 {
			t.Fatalf("another node while lim is limited: %d %v", st, err)
		}
	})

	t.Run("the reporter backs off and delivers", func(t *testing.T) {
		var logs logLines
		rep, err := report.Open(report.Config{API: c, Node: "lim", SpoolDir: t.TempDir(), MaxBatch: 1,
			RetryMin: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond, Log: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		var obs []flow.Observation
		for i := range 6 {
			o := oneFlow("lim", 0).Observations[0]
			o.Tuple.SrcPort = uint16(41000 + i)
			o.Start, o.End = now.Add(-time.Second), now
			obs = append(obs, o)
		}
		if err := rep.Submit(obs, nil); err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		go rep.Run(rctx)
		for rep.Pending() > 0 && rctx.Err() == nil {
			time.Sleep(50 * time.Millisecond)
		}
		if rep.Pending() > 0 {
			t.Fatalf("%d batches not delivered:\n%s", rep.Pending(), strings.Join(logs.lines, ""))
		}
		n := logs.count("rate-limits")
		if n == 0 || n > 12 {
			// Retry-After (1 s) is honoured over the 20 ms backoff: a
			// handful of waits, not hundreds of retries.
			t.Fatalf("%d rate-limit waits logged:\n%s", n, strings.Join(logs.lines, ""))
		}
		if c := rep.Counters(); c.ObservationsSent != 6 || c.ObservationsDropped != 0 {
			t.Fatalf("counters %+v", c)
		}
	})
}
