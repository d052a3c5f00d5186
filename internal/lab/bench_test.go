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

// BenchmarkReach times the full reachability matrix of the NetworkPolicy
// model (9 × 9 pods × ports 80, 81 × TCP, UDP = 324 probes) on a 2-node
// direct-mode lab with no policy, and with everything blocked at the pods
// (the worst case: every probe waits out its 1 s timeout); the peer in the
// same run is the open matrix probed one at a time.
func BenchmarkReach(b *testing.B) {
	requireRoot(b)
	kube := startAPI(b)
	name := testName(b, "r")
	l, err := Up(context.Background(), Config{Name: name, App: "netpol", RestConfig: kube.Config, ProbePeriod: -1,
		Logger: slog.New(slog.NewTextHandler(benchLog, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = l.Down() })
	for _, c := range []struct {
		name      string
		reachable int
		parallel  int
		rule      string
	}{
		{"open", 324, 0, ""},
		{"open-one-at-a-time", 324, 1, ""}, // the peer: the same probes, sequentially
		{"dropped", 0, 0, "-A INPUT -p tcp -m multiport --dports 80,81 -j DROP\n-A INPUT -p udp -m multiport --dports 80,81 -j DROP"},
	} {
		b.Run(c.name, func(b *testing.B) {
			if c.rule != "" {
				for _, p := range l.Status().Pods {
					if _, err := l.Exec(p.Namespace+"/"+p.Name, "sh", "-c", "printf '*filter\n"+c.rule+"\nCOMMIT\n' | iptables-restore"); err != nil {
						b.Fatal(err)
					}
				}
			}
			for b.Loop() {
				probes, err := l.Reach(context.Background(), ReachOptions{Parallel: c.parallel})
				if err != nil {
					b.Fatal(err)
				}
				ok := 0
				for _, p := range probes {
					if p.Reachable {
						ok++
					}
				}
				if len(probes) != 324 || ok != c.reachable {
					b.Fatalf("%d probes, %d reachable; want 324, %d", len(probes), ok, c.reachable)
				}
			}
		})
	}
}
