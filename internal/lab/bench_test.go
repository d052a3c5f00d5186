package lab

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"
)

// BenchmarkLabUp times `lab up` of 4 nodes × 100 pods (sock-shop with 50
// replicas of each of its 8 deployments) until every pod runs and every
// service's endpoints are programmed, and `lab down` until nothing is left.
// Results go to docs/BENCHMARKS.md under "## Lab".
var benchLog io.Writer = io.Discard

func BenchmarkLabUp(b *testing.B) {
	if testing.Verbose() {
		benchLog = os.Stderr
	}
	requireRoot(b)
	kube := startAPI(b)
	name := testName(b, "b")
	b.Cleanup(func() { _ = Remove(name, "", time.Second) }) // after a failed iteration
	var up, down time.Duration
	n := 0
	for b.Loop() {
		start := time.Now()
		l, err := Up(context.Background(), Config{Name: name, Nodes: 4, App: "sockshop", Replicas: 50,
			RestConfig: kube.Config, Logger: slog.New(slog.NewTextHandler(benchLog, nil))})
		if err != nil {
			b.Fatal(err)
		}
		up += time.Since(start)
		if got := len(l.Status().Pods); got != 400 {
			b.Fatalf("pods: %d, want 400", got)
		}
		if _, bad := l.Probes(); bad != 0 {
			b.Errorf("%d kubelet-style probes failed", bad)
		}
		start = time.Now()
		if err := l.Down(); err != nil {
			b.Fatal(err)
		}
		down += time.Since(start)
		if left, _ := Leftovers(name); len(left) != 0 {
			b.Fatalf("left after down: %d namespaces", len(left))
		}
		n++
	}
	b.ReportMetric(up.Seconds()/float64(n), "up-s")
	b.ReportMetric(down.Seconds()/float64(n), "down-s")
}
